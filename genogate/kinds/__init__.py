"""The query kinds: one module per kind (``genogate.kinds.<kind label>``), each holding one ``QueryKind``
(``genogate.kinds.base``) as ``KIND``, and the registry (``genogate.kinds.registry``) that the node, the
coordinator, the SDK and the CLI look kinds up in, with the operations that dispatch on a query's kind (wire
conversion, canonical form, filters).

Adding a kind: its proto messages (query, result, combined result; each ``kind`` oneof field named by the
kind's label) and ``QueryKind`` enum value; its ``Kind`` member and query dataclass (``genogate.query``),
its sensitivity (the noise planning's table); then one module here implementing ``QueryKind``, listed in
``registry._MODULES``. tests/unit/test_kinds.py fails for a ``Kind`` without a module, a module outside the
registry, a part of the interface left out, or a per-kind branch outside this package.
"""

from genogate.kinds.base import QueryKind
from genogate.kinds.registry import (
    KINDS,
    canonical,
    canonical_bytes,
    filters_of,
    for_command,
    for_pb,
    for_result,
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
    "for_result",
    "kind_of",
    "query_from_pb",
    "query_to_pb",
]
