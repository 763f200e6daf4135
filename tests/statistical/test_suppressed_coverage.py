"""The combined interval of a count that some or all sites reported only as "fewer than k" covers the true
total, whatever the true counts and whichever sites end up suppressed (``coordinator.combine``'s docstring
has the derivation).

* **Exact** (no randomness, so no false failures): the noise of two or three sites is enumerated on its whole
  support (all but < 1e-15 of the mass); for each truth on a grid around k the miss probability of what
  ``combine`` reports (the released form when every site answers, the bounds form otherwise) is summed
  exactly, and so is the bounds form's own miss probability had it been used for every pattern. The
  offsets of each pattern's interval are read from ``combine`` itself.
* **Simulated** with the production noise (OpenDP's samplers through ``node.dp.OpenDPNoise``): truths where
  partial suppression is common, every draw combined by ``combine``. False-failure rate: more misses than
  ``max_misses(n)`` happens with probability below 1e-7 per check when coverage is 95% (it is higher);
  4 checks, so below 1e-6 for the file.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from coordinator.combine import combine
from genogate import noise, privacy
from genogate.convert import noisy_from_pb
from genogate.kinds import KINDS
from genogate.query import Kind
from genogate.results import NoisyValue
from genogate.wire.v1 import common_pb2 as pb
from node import dp
from tests.stats import max_misses

MECH = {
    "discrete_laplace": pb.NOISE_MECHANISM_DISCRETE_LAPLACE,
    "discrete_gaussian": pb.NOISE_MECHANISM_DISCRETE_GAUSSIAN,
}


def _value(noisy: int, mechanism: str, scale: float, k: int) -> NoisyValue:
    """A site's released value as the coordinator reads it: the wire message, converted."""
    v = pb.NoisyValue(noise_scale=scale, mechanism=MECH[mechanism], threshold=k)  # type: ignore[arg-type]
    if noisy < k:
        v.below_threshold = True
    else:
        v.estimate = noisy
    return noisy_from_pb(v)


def _offsets(pattern: tuple[bool, ...], comp: noise.Component, k: int) -> tuple[float, float]:
    """(released - low, high - released) of ``combine``'s interval for a pattern of answered sites, read
    from ``combine`` with released values large enough that nothing is clamped at 0."""
    big = 10**6
    c = combine([_value(big if a else 0, comp[0], comp[1], k) for a in pattern])
    released = big * sum(pattern)
    return released - c.ci95_low, c.ci95_high - released


def _exact_misses(comp: noise.Component, m: int, k: int, truths: tuple[int, ...]) -> tuple[float, float, float]:
    """(P(miss) of what combine reports, P(miss) of the bounds form used always, P(some site suppressed))."""
    p = noise.pmf(comp)
    h = len(p) // 2
    z = np.arange(-h, h + 1)
    prob = np.ones([len(z)] * m)
    ys, answered = [], []
    for i, t in enumerate(truths):
        shape = [1] * m
        shape[i] = len(z)
        prob = prob * p.reshape(shape)
        ys.append((t + z).reshape(shape))
        answered.append(ys[-1] >= k)
    total = sum(truths)
    miss = np.zeros(prob.shape, dtype=bool)
    any_suppressed = np.zeros(prob.shape, dtype=bool)
    for pattern in itertools.product((True, False), repeat=m):
        where = np.ones(prob.shape, dtype=bool)
        for a, ans in zip(pattern, answered, strict=True):
            where &= ans if a else ~ans
        released = sum(y for a, y in zip(pattern, ys, strict=True) if a) + np.zeros(prob.shape)
        down, up = _offsets(pattern, comp, k)
        lo, hi = np.maximum(0, released - down), np.maximum(0, released + up)
        miss |= where & ((total < lo) | (total > hi))
        if not all(pattern):
            any_suppressed |= where
    # the bounds form for every pattern, the fully answered one included: [ΣA Y - w, ΣA Y + ΣS (k-1) + u]
    u = noise.lower_tail([comp] * m, 0.025)
    w = noise.positive_part_upper([[comp]] * m, 0.025)
    released_all = sum(np.where(a, y, 0) for a, y in zip(answered, ys, strict=True))
    bound_all = sum(np.where(a, 0, k - 1) for a in answered)
    own = (total < np.maximum(0, released_all - w)) | (total > released_all + bound_all + u)
    return float((prob * miss).sum()), float((prob * own).sum()), float((prob * any_suppressed).sum())


@pytest.mark.parametrize(
    ("comp", "m", "grid"),
    [
        (("discrete_laplace", 1.0), 2, range(0, 25, 1)),
        (("discrete_laplace", 2.0), 2, range(0, 41, 2)),
        (("discrete_laplace", 4.0), 2, range(0, 61, 4)),
        (("discrete_gaussian", 3.0), 2, range(0, 31, 2)),
        (("discrete_laplace", 1.0), 3, (0, 9, 10, 11, 24)),
    ],
)
def test_exact_coverage_at_every_truth_near_the_threshold(comp: noise.Component, m: int, grid: Sequence[int]) -> None:
    k, worst, worst_own, suppressed_somewhere = 10, 0.0, 0.0, 0.0
    for truths in itertools.combinations_with_replacement(grid, m):
        miss, own, suppressed = _exact_misses(comp, m, k, truths)
        worst, worst_own = max(worst, miss), max(worst_own, own)
        suppressed_somewhere = max(suppressed_somewhere, min(suppressed, 1 - suppressed))
    assert suppressed_somewhere > 0.4  # the grid exercises both forms, often
    assert worst <= 0.05 + 1e-9, f"what combine reports misses with probability {worst}"
    assert worst_own <= 0.05 + 1e-9, f"the bounds form alone misses with probability {worst_own}"


def _draws(truth: int, plan: privacy.NoisePlan, n: int) -> list[int]:
    """n independent noisy values of ``truth`` from OpenDP, as a node draws them."""
    sens = privacy.Sensitivity(l1=1, l2=1.0, length=n)
    return [int(x) for x in dp.OpenDPNoise().draw(np.full(n, truth, dtype=np.int64), plan, sens)]


_LAPLACE_1 = privacy.plan(KINDS[Kind.COHORT_COUNT].sensitivity(1), Decimal("1"), Decimal(0))  # scale 1
_LAPLACE_05 = privacy.plan(KINDS[Kind.COHORT_COUNT].sensitivity(1), Decimal("0.5"), Decimal(0))  # scale 2
_GAUSSIAN = replace(_LAPLACE_1, mechanism="discrete_gaussian", scale=3.0)


@pytest.mark.parametrize(
    ("truths", "plans", "k"),
    [
        ((12, 3, 60), (_LAPLACE_05, _LAPLACE_1, _LAPLACE_05), 10),  # site 1 near k, site 2 below it
        ((9, 10, 11), (_LAPLACE_05,) * 3, 10),  # every pattern common
        ((4, 6, 2), (_LAPLACE_1, _LAPLACE_05, _LAPLACE_1), 10),  # mostly every site suppressed
        ((8, 25), (_GAUSSIAN, _GAUSSIAN), 10),
    ],
)
def test_simulated_coverage_with_opendp_noise(
    truths: tuple[int, ...], plans: tuple[privacy.NoisePlan, ...], k: int
) -> None:
    n = 4000
    draws = [_draws(t, p, n) for t, p in zip(truths, plans, strict=True)]
    misses = partial = 0
    for i in range(n):
        values = [_value(d[i], p.mechanism, p.scale, k) for d, p in zip(draws, plans, strict=True)]
        c = combine(values)
        partial += c.sites_below_threshold > 0
        misses += not (c.ci95_low <= sum(truths) <= c.ci95_high)
    assert partial > n // 4  # the suppressed form is what is being tested
    bound = max_misses(n)
    assert misses <= bound, (
        f"{misses} of {n} intervals missed the truth (bound {bound}); {partial} had suppressed sites"
    )
