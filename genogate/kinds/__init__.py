"""The query kinds: one module per kind (``genogate.kinds.<kind label>``), each holding one ``QueryKind``
(``genogate.kinds.base``) as ``KIND``, and the registry the node, the coordinator, the SDK and the CLI look
kinds up in. Adding a kind is one module here (listed below) plus its proto messages; tests/unit/
test_kinds.py fails for a ``Kind`` without a module, or a module missing a part of the interface.

Also the operations on any query that dispatch on its kind: wire conversion, canonical form, filters.
"""

from genogate.kinds.base import QueryKind
from genogate.kinds.registry import (
    KINDS,
    canonical,
    canonical_bytes,
    filters_of,
    for_command,
    for_pb,
    kind_of,
    query_from_pb,
    query_to_pb,
)

__all__ = [
    "KINDS",
    "QueryKind",
    "canonical",
    "canonical_bytes",
    "filters_of",
    "for_command",
    "for_pb",
    "kind_of",
    "query_from_pb",
    "query_to_pb",
]
