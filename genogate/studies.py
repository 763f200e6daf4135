"""Studies and the registry as plain values: what the coordinator holds and what a researcher reads back.

A study's lifecycle state, its proposal (decoded for reading), and the registered nodes and researchers are
frozen dataclasses. What is *signed* stays the exact bytes that were signed (a proposal's payload, each
review, the committee's grant and revocation list), because a signature covers bytes, not values: the
``Signed*`` types and ``Review`` / ``StudyGrant`` below hold those bytes and the signature beside them.
``genogate.convert`` turns these into wire messages and back; nothing here imports the wire types.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from genogate.query import Kind


class ReviewDecision(enum.IntEnum):
    """A committee member's decision; values are the ``genogate.v1.ReviewDecision`` numbers. REVOKE is sent
    through RevokeStudy only."""

    APPROVE = 1
    REJECT = 2
    REVOKE = 3


class StudyState(enum.IntEnum):
    """Lifecycle state of a study; values are the ``genogate.v1.StudyState`` numbers.

    PROPOSED --k approvals--> APPROVED --revoke--> REVOKED; PROPOSED --one reject--> REJECTED;
    APPROVED --the grant's not_after passes--> EXPIRED."""

    PROPOSED = 1
    APPROVED = 2
    REJECTED = 3
    REVOKED = 4
    EXPIRED = 5


@dataclass(frozen=True)
class StudyProposal:
    """What a researcher asks the committee to approve (decoded from the signed payload, for reading).
    ``kinds`` are ``Kind`` members, or the bare number of a kind this version does not know (a proposal may
    name one; the coordinator's checks report it as a problem), so a proposal converts back exactly."""

    title: str
    purpose: str
    kinds: tuple[Kind | int, ...]
    sites: tuple[str, ...]
    epsilon_total_per_site: float
    epsilon_per_query_cap: float
    duration_days: int
    researcher_key_fingerprint: str
    description: str = ""
    per_site_breakdown: bool = False
    assembly: str = ""


@dataclass(frozen=True)
class SignedProposal:
    """A serialized ``StudyProposal`` exactly as the researcher signed it, and the signature."""

    payload: bytes
    researcher_signature: bytes


@dataclass(frozen=True)
class Review:
    """A committee member's signed decision: a serialized ``ReviewBody``, its signature and the signing key."""

    payload: bytes
    reviewer_signature: bytes
    reviewer_key_id: str


@dataclass(frozen=True)
class ReviewBody:
    """A review's signed payload read as values: which study and proposal hash it covers, the decision (a
    ``ReviewDecision``, or the bare number of one this version does not know), the comment and when."""

    study_id: str
    proposal_sha256: bytes
    decision: ReviewDecision | int
    comment: str
    reviewed_unix_ms: int


@dataclass(frozen=True)
class StudyGrant:
    """The committee-signed grant: a serialized ``GrantBody``, its signature and the committee key's id."""

    payload: bytes
    committee_signature: bytes
    committee_key_id: str


@dataclass(frozen=True)
class SignedRevocationList:
    """A serialized ``RevocationList`` (every revoked study and the epoch), signed by the committee."""

    payload: bytes
    committee_signature: bytes
    committee_key_id: str


@dataclass(frozen=True)
class Study:
    """A study as the coordinator holds it. ``grant`` is set once approved; ``reviews`` oldest first,
    revocations included; ``assembly`` is the genome build resolved from the proposal and its sites."""

    study_id: str
    proposal: StudyProposal
    signed_proposal: SignedProposal
    proposal_sha256: bytes
    state: StudyState
    reviews: tuple[Review, ...]
    approvals_required: int
    grant: StudyGrant | None
    created_unix_ms: int
    updated_unix_ms: int
    assembly: str


@dataclass(frozen=True)
class NodeInfo:
    """A registered node: its site name, ``host:port`` endpoint, its pinned TLS identity, the genome build it
    serves, when it was registered (0 before registration), its registration's version and last change.

    The pin is exactly one of ``cert_sha256`` (the SHA-256, lowercase hex, of the one certificate accepted) and
    ``ca_sha256`` (that of the CA certificate that issues the node's certificates: any certificate it issued
    for the node's name is accepted, so a renewal needs no registry change)."""

    name: str
    endpoint: str
    cert_sha256: str
    genome_build: str
    registered_unix_ms: int = 0
    ca_sha256: str = ""
    version: int = 0
    updated_unix_ms: int = 0

    @property
    def pin(self) -> str:
        """The pin in words: ``cert <sha256>`` or ``ca <sha256>``."""
        return f"ca {self.ca_sha256}" if self.ca_sha256 else f"cert {self.cert_sha256}"


@dataclass(frozen=True)
class NodeUpdate:
    """A change to a registered node (``UpdateNode``); empty fields keep the registered value. Setting
    ``cert_sha256`` pins that certificate, setting ``ca_sha256`` pins the node's name and that CA (at most one
    of the two). ``from_node``: the genome build must be read from the node itself (refused if unreachable)."""

    name: str
    endpoint: str = ""
    cert_sha256: str = ""
    ca_sha256: str = ""
    genome_build: str = ""
    from_node: bool = False

    def apply(self, node: NodeInfo) -> NodeInfo:
        """``node`` as this update changes it (a new pin replaces the old one; nothing else is touched)."""
        pinned = bool(self.cert_sha256 or self.ca_sha256)
        return replace(
            node,
            endpoint=self.endpoint or node.endpoint,
            genome_build=self.genome_build or node.genome_build,
            cert_sha256=self.cert_sha256 if pinned else node.cert_sha256,
            ca_sha256=self.ca_sha256 if pinned else node.ca_sha256,
        )


@dataclass(frozen=True)
class Researcher:
    """A registered researcher: display name, institution, raw Ed25519 public key and its fingerprint."""

    name: str
    affiliation: str
    public_key: bytes
    key_fingerprint: str
    registered_unix_ms: int


# Previews: a dry run of a proposal (PreviewStudy) -----------------------------------------------------------


@dataclass(frozen=True)
class MembershipRisk:
    """What a study's total (ε, δ) at one site allows any membership attacker: the bound on the true-positive
    rate at ``false_positive_rate`` (``genogate.risk``), in words, and the attack suite's measured power at a
    comparable budget (``measured_true_positive_rate`` negative when none applies)."""

    epsilon: float
    delta: float
    false_positive_rate: float
    true_positive_rate_bound: float
    statement: str
    measured_true_positive_rate: float = -1.0
    measured_attack: str = ""


@dataclass(frozen=True)
class GrantTerms:
    """The terms a grant issues (a ``GrantBody`` read as values), as a preview shows what an approval now
    would issue. ``kinds`` are ``Kind`` members, or the bare number of a kind this version does not know (a
    previewed proposal may name one; the preview lists it as a problem)."""

    study_id: str
    researcher_key_fingerprint: str
    purpose: str
    kinds: tuple[Kind | int, ...]
    sites: tuple[str, ...]
    epsilon_total: float
    epsilon_per_query_cap: float
    not_before_unix_ms: int
    not_after_unix_ms: int
    revocation_epoch: int
    per_site_breakdown: bool
    researcher_public_key: bytes
    assembly: str
    risk: MembershipRisk | None = None


def halfwidth_text(hw: float) -> str:
    """How a preview prints a 95% half-width, in its per-site table and its notes alike (one number, one
    spelling); empty when there is none."""
    return f"±{hw:.3g}" if hw >= 0 and math.isfinite(hw) else ""


@dataclass(frozen=True)
class KindPolicy:
    """Whether a site answers one query kind for a study (``kind`` a ``Kind``, or the number of one this
    version does not know), the refusal a query of it would get (the ``genogate.errors.Reason`` number, 0 when
    allowed) and why, or the condition it is answered under."""

    kind: Kind | int
    allowed: bool
    refusal: int = 0
    note: str = ""


@dataclass(frozen=True)
class SitePolicy:
    """What a site's own policy makes of a proposed study (its answer to ``NodeService.DescribePolicy``):
    build, version, purpose, kinds, ε caps (0: not said) and the consenting participants' bucket
    (``participants_at_least`` <= n < ``participants_below``; both 0: the site publishes none)."""

    name: str
    genome_build: str
    version: str
    purpose_accepted: bool
    purpose_reason: str
    kinds: tuple[KindPolicy, ...]
    epsilon_per_query_cap: float
    epsilon_per_query_min: float
    epsilon_total_cap: float
    epsilon_per_researcher_cap: float
    epsilon_per_node_cap: float
    budget_period_days: int
    participants_at_least: int
    participants_below: int


@dataclass(frozen=True)
class SitePreview:
    """One proposed site in a preview: whether it is registered and answered, its caps and floor (0: the site
    does not say), the noise of one answer of the proposal's first kind at the per-query cap, and the proposing
    researcher's committed and spent ε there (spent negative: not known). What the site itself said: its
    build and version, per kind whether it answers it, its per-query cap and the participants' bucket (both 0:
    not published); ``note`` says why it refuses the purpose or could not be asked."""

    site: str
    registered: bool
    reachable: bool
    purpose_accepted: bool
    kinds_refused: tuple[Kind | int, ...]
    epsilon_total_cap: float
    count_ci95_half_width: float
    epsilon_per_researcher_cap: float
    researcher_epsilon_committed: float
    researcher_epsilon_spent: float
    budget_period_days: int
    epsilon_per_query_min: float
    genome_build: str = ""
    version: str = ""
    note: str = ""
    kinds: tuple[KindPolicy, ...] = ()
    epsilon_per_query_cap: float = 0.0
    participants_at_least: int = 0
    participants_below: int = 0


@dataclass(frozen=True)
class StudyPreview:
    """A dry run of a proposal: the grant terms an approval now would issue (study id empty), one entry per
    proposed site in the proposal's order, every problem (empty when none), and the membership risk. ``notes``
    is information, not problems: what the budget buys per kind and with what noise."""

    grant_body: GrantTerms
    sites: tuple[SitePreview, ...]
    problems: tuple[str, ...]
    risk: MembershipRisk | None
    notes: tuple[str, ...] = ()
