"""What a node releases (steps 7 and 8 of ``node.service``): the noise drawn on a charged query's exact counts,
the noisy values a kind shapes its result from, the signed ``ReleaseBody`` (the researcher's receipt) and a
study's budget status.

``Noiser`` is the node's ``genogate.kinds.base.Release`` for one charged query: every draw goes through
``node.dp`` (OpenDP in production) with the plan the ledger charged for; ``shape_result`` turns the kind's
noisy release into the wire's ``QueryResult`` (the one place a kind's result becomes what the ledger stores and
the ``ReleaseBody`` carries); ``release_body`` and ``sign`` make the signed release.

Invariants: nothing here is called before the charge is durable; every released number is noisy, or
post-processing of noisy numbers; the minimum-reportable-count rule looks at *noisy* values only (a value
below k is reported as "fewer than k", whatever the exact count). A release states what this request paid now,
the original charge and the consent epoch of its values, and is bound to the exact request bytes by their
SHA-256 (``query_sha256``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from genogate import privacy, results
from genogate.kinds import KINDS, result_to_pb
from genogate.query import Query, Variant
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from node import dp
from node.ledger import Answered, BudgetStatus, Charged, Pending
from node.reader import Exact


@dataclass(frozen=True)
class Noiser:
    """The node's noise for one charged query, as its kind shapes the release (``genogate.kinds.base.Release``):
    ``stage`` indexes the query's sensitivities and noise plans; ``k`` is the minimum reportable count."""

    noise: dp.Noise
    k: int
    sens: list[privacy.Sensitivity]
    plans: list[privacy.NoisePlan]

    def draw(self, exact: npt.NDArray[np.int64], stage: int = 0) -> npt.NDArray[np.int64]:
        return self.noise.draw(exact.astype(np.int64), self.plans[stage], self.sens[stage])

    def value(self, noisy: int | np.integer, stage: int = 0) -> results.NoisyValue:
        return noisy_value(noisy, self.plans[stage], self.k)

    def sum_value(self, a: int | np.integer, b: int | np.integer, stage: int = 0) -> results.NoisyValue:
        return sum_value(a, b, self.plans[stage], self.k)


def noisy_value(
    noisy: int | np.integer, p: privacy.NoisePlan, k: int, stddev: float | None = None
) -> results.NoisyValue:
    """One noisy count with its 95% interval, or "fewer than k" when the *noisy* value is below k."""
    sd = p.stddev if stddev is None else stddev
    if k > 0 and int(noisy) < k:  # k = 0: the node reports every value, negative noisy ones included
        return results.NoisyValue(
            noise_scale=p.scale, below_threshold=True, threshold=k, mechanism=p.mechanism, noise_stddev=sd
        )
    n = int(noisy)
    return results.NoisyValue(n, p.scale, n - p.ci95_halfwidth, n + p.ci95_halfwidth, False, k, p.mechanism, sd)


def sum_value(a: int | np.integer, b: int | np.integer, p: privacy.NoisePlan, k: int) -> results.NoisyValue:
    """The sum of two independently noised counts (AN = alt + ref): the interval is the union bound of
    two 97.5% intervals, so it covers the true sum at least 95% of the time."""
    n, sd = int(a) + int(b), p.stddev * 2**0.5
    if k > 0 and n < k:
        return noisy_value(n, p, k, sd)
    half = 2 * privacy.halfwidth(p, 0.025)
    return results.NoisyValue(n, p.scale, n - half, n + half, False, k, p.mechanism, sd)


def shape_result(q: Query, variants: list[Variant] | None, exact: Exact, noise: Noiser) -> pb.QueryResult:
    """Noise the exact counts (the charge is durable by now), let the kind shape its (domain) result, and
    convert it to the wire's ``QueryResult``: what the ledger stores (first completion wins) and the
    ``ReleaseBody`` carries. The one place a kind's result becomes wire."""
    return result_to_pb(KINDS[q.kind].release(q, variants, exact.counts, exact.data, noise))


def release_body(
    *,
    query_id: str,
    study_id: str,
    site: str,
    query_sha256: bytes,
    result: bytes,
    charged: tuple[Decimal, Decimal],
    from_store: bool,
    begun: Charged | Pending | Answered,
    budget_after: pb.BudgetStatus,
    released_unix_ms: int,
) -> pb.ReleaseBody:
    """The body a node signs: the stored ``result`` bytes (a serialized ``QueryResult``), what this request
    paid now (``charged``: ε, δ), the original charge, and the epoch of the values."""
    original = begun.original_query_id
    return pb.ReleaseBody(
        query_id=query_id,
        study_id=study_id,
        site=site,
        query_sha256=query_sha256,  # binds the release (the receipt) to exactly the researcher's request
        result=pb.QueryResult.FromString(result),
        epsilon_charged=float(charged[0]),
        delta_charged=float(charged[1]),
        from_store=from_store,
        cached_query_id=original if from_store else "",
        budget_after=budget_after,
        released_unix_ms=released_unix_ms,
        original_epsilon_charged=float(begun.original_epsilon),
        original_delta_charged=float(begun.original_delta),
        consent_epoch=begun.epoch,
    )


def sign(body: pb.ReleaseBody, signer: Signer) -> pb.Release:
    """The release as sent: the body's deterministic bytes and the node's signature over them."""
    payload = body.SerializeToString(deterministic=True)
    return pb.Release(
        payload=payload,
        node_signature=signer.sign("genogate.v1.ReleaseBody", payload),
        node_key_id=signer.key_id,
    )


def budget_status(
    b: BudgetStatus, *, study_id: str, site: str, researcher_cap: Decimal, period_days: int, epoch: int
) -> pb.BudgetStatus:
    """A study's budget at this node as released (in ``GetBudget`` and each release's ``budget_after``)."""
    return pb.BudgetStatus(
        study_id=study_id,
        site=site,
        epsilon_cap=float(b.epsilon_cap),
        epsilon_spent=float(b.epsilon_spent),
        epsilon_remaining=float(b.epsilon_remaining),
        queries_answered=b.queries_answered,
        researcher_epsilon_cap=float(researcher_cap),
        researcher_epsilon_spent=float(b.researcher_epsilon_spent),
        budget_period_days=period_days,
        consent_epoch=epoch,
    )
