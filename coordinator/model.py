"""The coordinator's own domain values (what only the coordinator keeps): committee members and the history
of federated query runs. Studies, nodes and researchers, which researchers read back too, are in
``genogate.studies``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from genogate.query import Kind


@dataclass(frozen=True)
class CommitteeMember:
    """A reviewer of the access committee (one of the n keys whose k approvals issue a grant)."""

    name: str
    public_key: bytes
    key_id: str
    added_ms: int


@dataclass(frozen=True)
class QueryRecord:
    """One federated query run as the coordinator recorded it; ``outcomes`` maps site name to outcome."""

    query_id: str
    study_id: str
    kind: Kind
    epsilon: Decimal
    sites: tuple[str, ...]
    outcomes: Mapping[str, str]
    created_ms: int


@dataclass(frozen=True)
class StateSummary:
    """What ``genogate-coordinator status`` shows of the state, read without changing or creating anything:
    studies per state (lower case, as last stored), counts, and the registered nodes as (name, endpoint)."""

    studies: Mapping[str, int]
    researchers: int
    queries: int
    nodes: tuple[tuple[str, str], ...]
