"""genogate: a federated query gateway for genomic data.

What both sides (node and coordinator) share: the wire code (``genogate.wire.v1``), the error hierarchy
(``genogate.errors``), the query model (``genogate.query``) and the filter language (``genogate.filter``).
Nothing here does I/O at import time.
"""

__version__ = "0.1.0"
