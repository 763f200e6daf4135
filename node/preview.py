"""What this node's policy makes of a proposed study: the answer to ``NodeService.DescribePolicy``, which the
coordinator's study preview asks of every site a proposal names.

``describe`` decides, for a purpose, a list of kinds, a planned ε per query and a genome build: whether the
policy accepts the purpose (the rule ``node.policy.Gate`` applies to every query, ``Policy.accepts``), which
kinds it answers and why not (the kind is not in ``[policy] allowed_kinds``; a kind that takes only a region,
such as carrier-count, while the node does not publish its site list), its ε caps, and how many participants'
consent admits the purpose, as a power-of-ten bucket (``bucket``) when ``[policy] preview_participants``
allows it.

**Read-only and bounded.** Only the coordinator may ask (``[grants] coordinator_common_name``, as for
budgets under a grant). Nothing here reads the genotype store, charges a ledger or writes the audit log: the
answer comes from the policy, the public catalogue (the build) and the participants' consent codes, which
the node loaded at start. Work is bounded by ``MAX_KINDS`` and the number of distinct consent-code sets.

**The participant bucket and its privacy argument** (docs/operations/preview.md says the same to operators).
The count is not noised, so it is not differentially private and is charged to no budget; it is made coarse
instead. It is the number of participants whose consent admits the purpose (no filter, no phenotype, no
genotype), reported only as the decade it falls in: fewer than 10, 10-99, 100-999, ... Adding or removing
one participant changes the answer only when the count sits exactly on a power of ten, and then by one
bucket, and the answer is deterministic, so asking again learns nothing new: across every purpose a node
publishes a handful of bits about its cohort's size, the kind of figure institutions publish anyway
("about 2,000 participants"). It is off by default (``[policy] preview_participants = false``): the
coordinator's preview is open to any federation client for any purpose, and polling it shows when a count
crosses a boundary; an institution opts in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genogate import duo
from genogate.errors import Reason
from genogate.kinds import KINDS
from genogate.query import Kind
from node.policy import Policy

Purpose = tuple[str, frozenset[str]]
"""A parsed study purpose (``genogate.duo.parse_purpose``): the DUO permission and the modifiers met."""
MAX_KINDS = 32
"""Most kinds one request is answered for (the v1 catalogue has five)."""


@dataclass(frozen=True)
class KindVerdict:
    """Whether the node answers one requested kind (a ``Kind``, or the number of one it does not know)."""

    kind: Kind | int
    allowed: bool
    refusal: Reason = Reason.UNSPECIFIED
    note: str = ""


@dataclass(frozen=True)
class PolicyView:
    """The node's answer to DescribePolicy, as values (the servicer converts it)."""

    name: str
    genome_build: str
    version: str
    purpose_accepted: bool
    purpose_reason: str
    kinds: tuple[KindVerdict, ...]
    policy: Policy
    participants: tuple[int, int]  # (at least, below); (0, 0): not published


def bucket(n: int) -> tuple[int, int]:
    """The decade ``n`` falls in, as (at least, below): (0, 10) under 10, else (10^k, 10^(k+1))."""
    if n < 10:
        return 0, 10
    low = 10 ** (len(str(n)) - 1)
    return low, low * 10


def kind_verdicts(policy: Policy, kinds: Sequence[int]) -> tuple[KindVerdict, ...]:
    """One verdict per distinct requested kind (at most ``MAX_KINDS``), in the request's order."""
    out = []
    for number in list(dict.fromkeys(int(k) for k in kinds))[:MAX_KINDS]:
        try:
            kind = Kind(number)
        except ValueError:
            out.append(KindVerdict(number, False, Reason.KIND_REFUSED, f"this node does not know query kind {number}"))
            continue
        label = KINDS[kind].command
        if kind not in policy.allowed_kinds:
            allowed = ", ".join(sorted(k.label for k in policy.allowed_kinds)) or "none"
            out.append(
                KindVerdict(
                    kind,
                    False,
                    Reason.KIND_REFUSED,
                    f"this node's policy does not answer {label} ([policy] allowed_kinds: {allowed})",
                )
            )
        elif KINDS[kind].takes_region == "only" and not policy.public_site_catalogue:
            out.append(
                KindVerdict(
                    kind,
                    False,
                    Reason.KIND_REFUSED,
                    f"{label} takes a region, and this node does not publish its site list "
                    "([policy] public_site_catalogue = false)",
                )
            )
        elif KINDS[kind].takes_region == "optional" and not policy.public_site_catalogue:
            out.append(KindVerdict(kind, True, note="named variants only: this node does not publish its site list"))
        else:
            out.append(KindVerdict(kind, True))
    return tuple(out)


def purpose_verdict(policy: Policy, text: str) -> tuple[Purpose | None, str]:
    """The parsed purpose when the policy accepts it, else None and why not."""
    try:
        purpose = duo.parse_purpose(text)
    except ValueError as exc:
        return None, f"the purpose {text[:100]!r} is not one: {exc}"
    if not policy.accepts(purpose[0]):
        accepted = ", ".join(sorted(policy.allowed_purposes)) or "none"
        return (
            None,
            f"this node's policy does not accept the purpose {purpose[0]} ([policy] allowed_purposes: {accepted})",
        )
    return purpose, ""


def describe(
    policy: Policy,
    *,
    name: str,
    genome_build: str,
    version: str,
    purpose: str,
    kinds: Sequence[int],
    consenting: Callable[[Purpose], int],
) -> PolicyView:
    """What the node's ``policy`` makes of a study with ``purpose`` asking ``kinds``; ``consenting`` counts the
    participants whose consent admits a purpose (called only when the purpose is accepted and the policy
    publishes the bucket)."""
    parsed, reason = purpose_verdict(policy, purpose)
    participants = (0, 0)
    if parsed is not None and policy.preview_participants:
        participants = bucket(consenting(parsed))
    return PolicyView(
        name=name,
        genome_build=genome_build,
        version=version,
        purpose_accepted=parsed is not None,
        purpose_reason=reason,
        kinds=kind_verdicts(policy, kinds),
        policy=policy,
        participants=participants,
    )
