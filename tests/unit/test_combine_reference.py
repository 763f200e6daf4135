"""The fast combination (``genogate.noise``, ``coordinator.combine``) against the implementation it replaced
(``tests.reference_noise``, ``tests.reference_combine``: verbatim copies of the code before issue 16).

The contract: every interval is bit-equal to the reference's or contains it, never narrower; a standard
deviation is at least the reference's and at most a relative 1e-9 above it. That bound is the closed form's
round-up (a relative 1e-12) plus the reference's own rounding, whose ``1 - q`` loses up to a relative
scale x 2^-53 (1.1e-10 at the largest scale nodes plan, 1e6). The parameter sets come from a seeded grid (no
false failures: every run checks the same sets): discrete Laplace and Gaussian, ε from 0.001 to 10 at
sensitivities from 1 to 2,000 (scales 0.1 to 1e6, and below), 1 to 32 sites, one or two draws per site, the
same or mixed scales.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal, localcontext

import numpy as np
import pytest

from coordinator import combine as new_combine
from genogate import noise
from genogate.kinds.allele_frequency import AlleleCounts, AlleleFrequencyResult, CombinedAlleleFrequency
from genogate.kinds.case_control import CaseControlResult, CaseControlTable, CombinedCaseControl
from genogate.query import Variant
from genogate.results import CombinedValue, NoisyValue
from tests import reference_combine as ref_combine
from tests import reference_noise as ref

SD_TOLERANCE = 1e-9  # see the module docstring


def _scale(rng: np.random.Generator, mechanism: str) -> float:
    """A node's scale: sensitivity / ε (Laplace) or about sqrt(2 ln(1.25/δ)) x sensitivity / ε (Gaussian),
    capped at 1e6 as nodes cap it."""
    epsilon = 10 ** rng.uniform(-3, 1)
    sensitivity = float(rng.choice([1, 2, 20, 200, 2000]))
    factor = 1.0 if mechanism == "discrete_laplace" else float(rng.uniform(3, 6))
    return float(min(1e6, factor * sensitivity / epsilon))


def _parameter_sets(n: int, seed: int = 20261204) -> Iterator[list[list[noise.Component]]]:
    """``n`` combinations: per site, its draws' components."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        sites = int(min(32, math.floor(2 ** rng.uniform(0, 5.01))))  # 1..32, small counts most often
        draws = int(rng.choice([1, 2]))
        mixed = rng.random() < 0.4
        mechanisms: list[noise.Mechanism] = ["discrete_laplace", "discrete_gaussian"]
        m = mechanisms[int(rng.random() < 0.3)]
        s = _scale(rng, m)
        out = []
        for _ in range(sites):
            if mixed:
                m = mechanisms[int(rng.random() < 0.3)]
                s = _scale(rng, m)
            out.append([(m, s)] * draws)
        yield out


SETS = list(_parameter_sets(120))
EDGES: list[list[list[noise.Component]]] = [
    [[("discrete_laplace", 2000.0)]] * 3,  # the 1,000-variant vector at ε 1
    [[("discrete_laplace", 2000.0)] * 2] * 3,  # its allele numbers
    [[("discrete_laplace", 20000.0)]] * 3,  # at ε 0.1: beyond the support cap, Chebyshev
    [[("discrete_laplace", 26214.0)]],  # one site, just within the cap
    [[("discrete_laplace", 26215.0)]],  # just beyond it
    [[("discrete_laplace", 1e6)]] * 32,
    [[("discrete_laplace", 0.01)]],
    [[("discrete_laplace", 1e-9)]] * 2,
    [[("discrete_gaussian", 0.05)], [("discrete_gaussian", 3.99)], [("discrete_gaussian", 4.0)]],
    [[("discrete_gaussian", 200000.0)]],
    [[("discrete_laplace", 0.7)], [("discrete_gaussian", 3.0)], [("discrete_laplace", 5.0)]],
]


def test_the_grid_spans_what_it_claims() -> None:
    comps = [c for sites in SETS for site in sites for c in site]
    scales = [s for _, s in comps]
    assert min(scales) < 1 and max(scales) >= 1e5
    assert {len(sites) for sites in SETS} >= {1, 2, 3} and max(len(sites) for sites in SETS) >= 24
    assert {m for m, _ in comps} == {"discrete_laplace", "discrete_gaussian"}
    assert sum(not noise.exact(c for site in s for c in site) for s in SETS) >= 20  # the bounds' path too
    assert sum(noise.exact(c for site in s for c in site) for s in SETS) >= 40  # and the exact one


_QUANTILES: dict[str, list[tuple[int, int]]] = {}


def _quantiles(sites: list[list[noise.Component]]) -> list[tuple[int, int]]:
    """(new, reference) for each quantile the combination takes: two-sided at 95% and 97.5%, lower tails and
    positive parts at their halves (memoised: the reference is slow, and two tests read these)."""
    found = _QUANTILES.get(repr(sites))
    if found is None:
        comps = [c for site in sites for c in site]
        found = []
        for alpha in (0.05, 0.025):
            found.append((noise.two_sided(comps, alpha), ref.two_sided(comps, alpha)))
            found.append((noise.lower_tail(comps, alpha / 2), ref.lower_tail(comps, alpha / 2)))
            found.append((noise.positive_part_upper(sites, alpha / 2), ref.positive_part_upper(sites, alpha / 2)))
        _QUANTILES[repr(sites)] = found
    return found


@pytest.mark.parametrize("sites", SETS + EDGES, ids=lambda s: f"{len(s)}x{s[0][0][0][9:12]}{s[0][0][1]:.3g}")
def test_new_intervals_are_the_references_or_wider(sites: list[list[noise.Component]]) -> None:
    comps = [c for site in sites for c in site]
    for n, o in _quantiles(sites):
        assert n >= o
        if len(comps) > 1 and noise.exact(comps):  # a sum read off the FFT: no closed form involved
            assert n == o
    old, new = ref.stddev(comps), noise.stddev(comps)
    assert old <= new <= old * (1 + SD_TOLERANCE)


def test_almost_every_interval_is_bit_equal() -> None:
    """The closed forms and the round-ups may widen an interval by one where a tail lies within 1e-9 of the
    level; on the grid that is rare."""
    pairs = [p for sites in SETS + EDGES for p in _quantiles(sites)]
    same = sum(n == o for n, o in pairs)
    assert same >= 0.97 * len(pairs), f"{same} of {len(pairs)} quantiles bit-equal"


# The closed forms against exact arithmetic ------------------------------------------------------------------


def _exact_laplace_quantile(scale: float, alpha: float, sides: int) -> int:
    """The smallest m with sides * q^(m+1) / (1 + q) <= alpha, in 60-digit decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 60
        q = (Decimal(-1) / Decimal(scale)).exp()
        m = 0
        step = 1 << 60
        while step:  # the tail falls with m: binary search for the last m whose tail is above alpha
            if sides * q ** (m + step) / (1 + q) > Decimal(alpha):
                m += step
            step >>= 1
        return m if sides * q ** (m + 1) / (1 + q) <= Decimal(alpha) else m + 1


@pytest.mark.parametrize("scale", [1e-9, 0.01, 0.3, 1.0, 2.0, 4.0, 17.3, 2000.0, 26214.0])
@pytest.mark.parametrize("alpha", [0.05, 0.025, 0.0125])
def test_one_laplace_sites_quantiles_are_the_closed_forms(scale: float, alpha: float) -> None:
    """Exact, but for the 1e-9 margin (at most one more where the exact tail lies that close to the level)."""
    two, low = (
        noise.two_sided([("discrete_laplace", scale)], alpha),
        noise.lower_tail([("discrete_laplace", scale)], alpha),
    )
    assert two - _exact_laplace_quantile(scale, alpha, 2) in (0, 1)
    assert low - _exact_laplace_quantile(scale, alpha, 1) in (0, 1)
    assert two == _exact_laplace_quantile(scale, alpha - 1e-9, 2)
    assert low == _exact_laplace_quantile(scale, alpha - 1e-9, 1)


@pytest.mark.parametrize("scale", [1e-9, 0.01, 0.5, 2.0, 2000.0, 20000.0, 1e6, 1e12])
def test_the_laplace_variance_bounds_the_exact_one_tightly(scale: float) -> None:
    with localcontext() as ctx:
        ctx.prec = 60
        q = (Decimal(-1) / Decimal(scale)).exp()
        exact = 2 * q / (1 - q) ** 2
    v = Decimal(noise.variance(("discrete_laplace", scale)))
    assert exact <= v
    if scale <= 1e6:  # the scales nodes plan: within 1e-12 plus the old formula's rounding (scale x 2^-53)
        assert v <= exact * Decimal(1 + 1e-12 + scale * 2.3e-16)


# Whole combinations ---------------------------------------------------------------------------------------------


def _value(rng: np.random.Generator, scale: float, k: int, mechanism: str) -> NoisyValue:
    x = int(rng.integers(-5, 60))
    if x < k:
        return NoisyValue(0, scale, below_threshold=True, threshold=k, mechanism=mechanism)
    return NoisyValue(x, scale, threshold=k, mechanism=mechanism)


def _contains(outer: CombinedValue, inner: CombinedValue) -> None:
    assert outer.estimate == inner.estimate and outer.not_computed == inner.not_computed
    assert outer.ci95_low <= inner.ci95_low and outer.ci95_high >= inner.ci95_high
    assert inner.noise_stddev <= outer.noise_stddev <= inner.noise_stddev * (1 + SD_TOLERANCE)


@pytest.mark.parametrize("seed", range(6))
def test_allele_frequencies_and_odds_ratios_are_the_references_or_wider(seed: int) -> None:
    """Random 40-variant results at 1 to 5 sites, some values suppressed, each site its own scale."""
    rng = np.random.default_rng(seed)
    sites = int(rng.integers(1, 6))
    mechanism = "discrete_laplace" if seed % 3 else "discrete_gaussian"
    scales = [float(rng.choice([0.5, 3.0, 40.0, 400.0])) for _ in range(sites)]
    variants = [Variant("1", 100 + i, "A", "G") for i in range(40)]

    def v(s: float) -> NoisyValue:
        return _value(rng, s, 10, mechanism)

    af = [AlleleFrequencyResult(tuple(AlleleCounts(x, v(s), v(s)) for x in variants)) for s in scales]
    cc = [CaseControlResult(tuple(CaseControlTable(x, v(s), v(s), v(s), v(s)) for x in variants)) for s in scales]
    new_af, old_af = new_combine.combine_results(af), ref_combine.combine_results(af)
    assert isinstance(new_af, CombinedAlleleFrequency) and isinstance(old_af, CombinedAlleleFrequency)
    for a, b in zip(new_af.variants, old_af.variants, strict=True):
        for f in ("allele_count", "allele_number", "allele_frequency"):
            _contains(getattr(a, f), getattr(b, f))
    new_cc, old_cc = new_combine.combine_results(cc), ref_combine.combine_results(cc)
    assert isinstance(new_cc, CombinedCaseControl) and isinstance(old_cc, CombinedCaseControl)
    computed = 0
    for x, y in zip(new_cc.tables, old_cc.tables, strict=True):
        o, p = x.odds_ratio, y.odds_ratio
        assert o.not_computed == p.not_computed and o.estimate == p.estimate
        assert o.ci95_low <= p.ci95_low and o.ci95_high >= p.ci95_high
        computed += not o.not_computed
    assert computed > 0 or sites > 2  # the odds-ratio path is exercised
