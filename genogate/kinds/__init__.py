"""The query kinds: one module per kind (``genogate.kinds.<kind label>``), each defining its query dataclass (a
``genogate.query.Query``) and one ``QueryKind`` (``genogate.kinds.base``) exported as ``KIND``, and the
registry (``genogate.kinds.registry``) that the node, the coordinator, the SDK and the CLI look kinds up in,
with the operations that dispatch on a query's or a result's kind (wire conversion of queries, results,
combined results and release bodies; canonical form; filters).

Adding a kind is one module here plus its wire form: its proto messages (query, result, combined result;
each ``kind`` oneof field named by the kind's label) with its ``QueryKind`` enum value, and beside them its
``Kind`` member (``genogate.query``). ``Kind`` is written out rather than derived from the wire enum so that
type checkers see its members; tests/unit/test_kinds.py fails when the two differ. The module defines the
query dataclass and its result and combined result dataclasses (on ``genogate.results``' bases) with their
wire conversion, declares the sensitivity (``QueryKind.sensitivity``, from ``genogate.privacy``'s
constructors) and implements the rest of ``QueryKind``; the registry discovers it at import (no list to edit)
and everything else (wire conversion, the node's plans and release, the coordinator's combination, the SDK's
rows, the CLI's sub-command) finds it there. tests/unit/test_kinds.py fails for a ``Kind`` without a module, a
module without a ``KIND``, a part of the interface left out, or a per-kind branch outside this package, and
shows a new kind module picked up by the registry, the wire conversion and the CLI with no other edit.
"""

from genogate.kinds.base import QueryKind
from genogate.kinds.registry import (
    KINDS,
    canonical,
    canonical_bytes,
    combined_from_pb,
    combined_to_pb,
    filters_of,
    for_command,
    for_pb,
    for_result,
    kind_of,
    query_from_pb,
    query_to_pb,
    release_body_from_pb,
    release_body_to_pb,
    result_from_pb,
    result_to_pb,
)

__all__ = [
    "KINDS",
    "QueryKind",
    "canonical",
    "canonical_bytes",
    "combined_from_pb",
    "combined_to_pb",
    "filters_of",
    "for_command",
    "for_pb",
    "for_result",
    "kind_of",
    "query_from_pb",
    "query_to_pb",
    "release_body_from_pb",
    "release_body_to_pb",
    "result_from_pb",
    "result_to_pb",
]
