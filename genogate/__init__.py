"""genogate: a federated query gateway for genomic data.

What both sides (node and coordinator) share: the wire code (``genogate.wire.v1``), the error hierarchy
(``genogate.errors``), the query model (``genogate.query``) and the filter language (``genogate.filter``);
and the researcher's SDK, ``genogate.Client`` (``genogate.client``). Nothing here does I/O at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from genogate.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":  # imported on first use: ``import genogate`` stays light
        from genogate.client import Client

        return Client
    raise AttributeError(f"module 'genogate' has no attribute {name!r}")
