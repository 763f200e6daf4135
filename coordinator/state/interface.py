"""``CoordinatorState``: what the coordinator keeps, as one interface every implementation provides.

The servicer, the federated queries and the server assembly use only this; ``SqliteCoordinatorState`` is
today's implementation (one SQLite file), and a replicated one (PostgreSQL) is one more class. What "an
implementation" means is defined by ``tests/conformance/test_coordinator_state.py``, run against each.

Contract every implementation keeps (the conformance suite checks each):

* **Trust.** A proposal counts only when signed by the registered researcher key it names; a review only
  when signed by a committee member's key. k approvals issue the grant, signed by the committee signer the
  implementation was built with; one rejection rejects. Reviews cover the SHA-256 of the exact proposal
  bytes. Signed things are kept and returned as the exact bytes received.
* **Lifecycle.** PROPOSED -> APPROVED | REJECTED; APPROVED -> REVOKED | EXPIRED; nothing else. Expiry is
  derived from the clock at every call.
* **Idempotence.** Resending an identical proposal, review or registration changes nothing and returns the
  current value; other details under a taken key are refused (ALREADY_EXISTS).
* **Atomicity.** Each call is one transaction: it changes all or nothing, and calls from many threads (and,
  for a shared store, many processes) are serialised. Every refusal is a typed ``GenogateError``.
* **Registry changes.** A node's registration changes only through ``update_node`` (its version steps) and
  leaves through ``remove_node``, which refuses while an active study names the node unless forced.
* **Append-only.** Reviews, revocations, the revocation epoch, proposals, grants and query history are never
  changed or deleted.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Protocol, runtime_checkable

from coordinator.model import CommitteeMember, QueryRecord
from coordinator.preview import SiteCaps
from genogate.query import Kind
from genogate.studies import (
    NodeInfo,
    NodeUpdate,
    Researcher,
    Review,
    SignedProposal,
    SignedRevocationList,
    Study,
    StudyState,
)


@runtime_checkable
class CoordinatorState(Protocol):
    """The coordinator's durable state: registry, studies, revocations and query history."""

    # Registry ------------------------------------------------------------------------------------------------

    def register_node(self, node: NodeInfo) -> NodeInfo:
        """Register a node (its ``registered_unix_ms`` ignored) and return it as registered."""
        ...

    def list_nodes(self) -> builtins.list[NodeInfo]:
        """Registered nodes, by name."""
        ...

    def update_node(self, update: NodeUpdate) -> tuple[NodeInfo, NodeInfo]:
        """Change a registered node (``NodeUpdate.apply``); the registration before and after. A change steps
        ``version``; no change returns the registration twice. ``NotFound`` for an unregistered name."""
        ...

    def remove_node(self, name: str, force: bool = False) -> tuple[NodeInfo, builtins.list[str]]:
        """Remove a registered node: its registration and the active (PROPOSED or APPROVED) studies naming it;
        refused (FAILED_PRECONDITION) while there are any, unless ``force``. The name may be registered again."""
        ...

    def register_researcher(self, name: str, affiliation: str, public_key: bytes) -> Researcher:
        """Register a researcher's raw 32-byte Ed25519 key."""
        ...

    def researcher_key(self, fingerprint: str) -> bytes:
        """The registered raw public key with this fingerprint (``NotFound`` if none)."""
        ...

    def add_committee_member(self, name: str, public_key: bytes) -> CommitteeMember:
        """Add a reviewer key to the committee."""
        ...

    def committee(self) -> builtins.list[CommitteeMember]:
        """The committee's reviewers, by name."""
        ...

    # Studies -------------------------------------------------------------------------------------------------

    def propose(self, signed: SignedProposal) -> Study:
        """Record a researcher-signed proposal as a PROPOSED study (id ``S-`` + 12 hex digits of its SHA-256)."""
        ...

    def review(self, review: Review, caps: Mapping[str, SiteCaps] | None = None) -> Study:
        """A committee member's APPROVE or REJECT of a PROPOSED study; an APPROVE over a site's cap on ε per
        researcher (from ``caps``) is refused."""
        ...

    def revoke(self, review: Review) -> tuple[Study, int]:
        """A committee member's REVOKE of an APPROVED study; returns it and the epoch including the revocation."""
        ...

    def get(self, study_id: str) -> Study:
        """One study (``NotFound`` if unknown)."""
        ...

    def list(self, state: StudyState | None = None, researcher: str | None = None) -> builtins.list[Study]:
        """Studies, newest first, optionally of one state and one researcher key fingerprint."""
        ...

    def committed(self, fingerprint: str, caps: Mapping[str, SiteCaps] | None = None) -> dict[str, Decimal]:
        """Per site, the ε the researcher's APPROVED studies may spend there (capped by ``caps``' per-study cap)."""
        ...

    # Revocations ---------------------------------------------------------------------------------------------

    def revocations(self) -> SignedRevocationList:
        """Every revoked study id and the current epoch, signed now by the committee signer."""
        ...

    def epoch(self) -> int:
        """The current revocation epoch (the number of revocations so far)."""
        ...

    # Query history -------------------------------------------------------------------------------------------

    def record_query(
        self,
        query_id: str,
        study_id: str,
        kind: Kind,
        epsilon: Decimal,
        sites: Sequence[str],
        outcomes: Mapping[str, str],
        *,
        audit_seq: int = 0,
        created_ms: int | None = None,
    ) -> QueryRecord:
        """Append one federated query run (retries included) to the study's history; ``audit_seq`` is the
        position of the run's entry in the coordinator's audit log (0: none), ``created_ms`` the time to
        record (default: now). The audit entry is the durable record of the run: an implementation may commit
        this row without waiting for it to reach the disk, and ``coordinator.record.recover_history`` restores
        the rows a machine crash lost from the audit log (the runs after ``last_audit_seq``)."""
        ...

    def last_audit_seq(self) -> int:
        """The highest ``audit_seq`` any recorded run has (0 if none)."""
        ...

    def history(self, study_id: str) -> builtins.list[QueryRecord]:
        """The study's recorded query runs, oldest first (``NotFound`` if the study is unknown)."""
        ...

    def close(self) -> None:
        """Release the state (idempotent); later calls raise ``StoreError``."""
        ...
