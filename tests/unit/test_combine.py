"""Combining noisy site releases (``coordinator.combine``) and the exact noise distributions behind the
intervals (``genogate.noise``).

The statistical tests draw real noise with OpenDP (the same measurements nodes use) and state their
false-failure rates; everything else is exact arithmetic.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest

from coordinator.combine import combine, combine_results, odds_ratio
from genogate import noise, privacy, results
from genogate.convert import noisy_from_pb
from genogate.kinds import KINDS, result_from_pb
from genogate.kinds.allele_frequency import CombinedAlleleFrequency
from genogate.kinds.case_control import CombinedCaseControl
from genogate.query import Kind
from genogate.wire.v1 import common_pb2 as pb
from node import dp
from tests.stats import max_misses

LAP, GAU = pb.NOISE_MECHANISM_DISCRETE_LAPLACE, pb.NOISE_MECHANISM_DISCRETE_GAUSSIAN


def value_pb(estimate: int, scale: float, *, mechanism: int = LAP, k: int = 0) -> pb.NoisyValue:
    v = pb.NoisyValue(noise_scale=scale, mechanism=mechanism, threshold=k)  # type: ignore[arg-type]
    if k > 0 and estimate < k:
        v.below_threshold = True
    else:
        v.estimate = estimate
    return v


def value(estimate: int, scale: float, *, mechanism: int = LAP, k: int = 0) -> results.NoisyValue:
    """A site's released value as the coordinator reads it: the wire message, converted."""
    return noisy_from_pb(value_pb(estimate, scale, mechanism=mechanism, k=k))


def _results(*bodies: pb.ReleaseBody) -> list[results.QueryResult | None]:
    return [result_from_pb(b.result) for b in bodies]


def _brute_two_sided(comps: list[noise.Component], alpha: float) -> int:
    """The two-sided quantile by direct convolution (np.convolve), to check the FFT path."""
    p = np.ones(1)
    for c in comps:
        p = np.convolve(p, noise.pmf(c))
    mid = len(p) // 2
    for h in range(mid + 1):
        if p[mid - h : mid + h + 1].sum() >= 1 - alpha - 1e-12:
            return h
    return mid


@pytest.mark.parametrize(
    "comps",
    [
        [("discrete_laplace", 2.0)],
        [("discrete_laplace", 2.0)] * 3,
        [("discrete_laplace", 0.7), ("discrete_gaussian", 3.0), ("discrete_laplace", 5.0)],
        [("discrete_gaussian", 0.4)],
    ],
)
def test_sum_quantiles_match_direct_convolution(comps: list[noise.Component]) -> None:
    assert noise.two_sided(comps, 0.05) == _brute_two_sided(comps, 0.05)


def test_one_laplace_quantile_is_the_closed_form() -> None:
    """Discrete Laplace with scale b: P(|X| <= h) = 1 - 2 e^{-(h+1)/b} / (1 + e^{-1/b})."""
    b = 4.0
    h = noise.two_sided([("discrete_laplace", b)], 0.05)
    mass = lambda t: 1 - 2 * math.exp(-(t + 1) / b) / (1 + math.exp(-1 / b))  # noqa: E731
    assert mass(h) >= 0.95 > mass(h - 1)
    assert math.isclose(noise.stddev([("discrete_laplace", b)]), privacy.discrete_laplace_stddev(b), rel_tol=1e-9)


def test_counts_sum_and_the_interval_is_the_sums_quantile() -> None:
    values = [value(100, 2.0), value(50, 2.0), value(7, 3.0, mechanism=GAU)]
    c = combine(values)
    h = noise.two_sided([("discrete_laplace", 2.0)] * 2 + [("discrete_gaussian", 3.0)], 0.05)
    assert (c.estimate, c.ci95_low, c.ci95_high) == (157, 157 - h, 157 + h)
    assert c.sites_below_threshold == 0
    assert math.isclose(c.noise_stddev, noise.stddev([("discrete_laplace", 2.0)] * 2 + [("discrete_gaussian", 3.0)]))


def test_a_partly_suppressed_sum_has_no_estimate_and_a_bounds_interval() -> None:
    k = 10
    values = [value(200, 2.0, k=k), value(3, 2.0, k=k)]  # the second says only "fewer than 10"
    c = combine(values)
    lap = ("discrete_laplace", 2.0)
    u = noise.lower_tail([lap, lap], 0.025)  # the whole sum's noise, lower tail
    w = noise.positive_part_upper([[lap], [lap]], 0.025)  # Σ max(Z_i, 0), upper tail
    assert c.estimate is None  # no midpoint: a plausible wrong number
    assert (c.sites_below_threshold, c.sites, c.threshold, c.released) == (1, 2, k, 200)
    assert c.not_computed == "suppressed at 1 of 2 sites"
    assert (c.ci95_low, c.ci95_high) == (200 - w, 200 + (k - 1) + u)
    assert c.noise_stddev == 0


def test_an_everywhere_suppressed_sum_is_zero_to_a_bound() -> None:
    values = [value(1, 2.0, k=10), value(-4, 2.0, k=10), value(9, 3.0, k=20)]
    c = combine(values)
    u = noise.lower_tail([("discrete_laplace", 2.0)] * 2 + [("discrete_laplace", 3.0)], 0.025)
    assert c.estimate is None and c.not_computed == "suppressed at 3 of 3 sites"
    assert (c.ci95_low, c.ci95_high) == (0, 9 + 9 + 19 + u)
    assert (c.threshold, c.released, c.sites) == (20, 0, 3)


def test_a_fully_answered_sum_says_its_sites_and_is_released_as_is() -> None:
    c = combine([value(200, 2.0, k=10), value(30, 2.0, k=10)])
    assert c.estimate is not None and c.estimate == c.released == 230
    assert (c.sites, c.sites_below_threshold, c.threshold, c.not_computed) == (2, 0, 0, "")


def _brute_positive_part(sites: list[list[noise.Component]], alpha: float) -> int:
    """Σ max(Z_i, 0) by enumerating every combination of the sites' noise (small supports only)."""
    pmfs = [np.convolve(*[noise.pmf(c) for c in s]) if len(s) > 1 else noise.pmf(s[0]) for s in sites]
    dist: dict[int, float] = {0: 1.0}
    for p in pmfs:
        mid = len(p) // 2
        nxt: dict[int, float] = {}
        for total, q in dist.items():
            for i, pi in enumerate(p):
                key = total + max(i - mid, 0)
                nxt[key] = nxt.get(key, 0.0) + q * pi
        dist = nxt
    above = 1.0
    for w in sorted(dist):
        above -= dist[w]
        if above <= alpha * (1 + 1e-12):
            return w
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "sites",
    [
        [[("discrete_laplace", 1.0)]],
        [[("discrete_laplace", 2.0)], [("discrete_laplace", 2.0)]],
        [[("discrete_laplace", 1.5), ("discrete_laplace", 1.5)], [("discrete_gaussian", 2.0)]],
    ],
)
def test_positive_part_quantile_matches_enumeration(sites: list[list[noise.Component]]) -> None:
    assert noise.positive_part_upper(sites, 0.025) == _brute_positive_part(sites, 0.025)
    one = sites[0]
    if len(sites) == 1 and len(one) == 1:  # one site: the positive part's tail is the noise's own tail
        assert noise.positive_part_upper(sites, 0.025) == noise.lower_tail(one, 0.025)


def _af_body(ac: int, an: int, k: int) -> pb.ReleaseBody:
    row = pb.AlleleCounts(
        variant=pb.Variant(chrom="1", pos=100, ref="A", alt="G"),
        allele_count=value_pb(ac, 2.0, k=k),
        allele_number=value_pb(an, 2.0, k=k),
    )
    return pb.ReleaseBody(result=pb.QueryResult(allele_frequency=pb.AlleleFrequencyResult(variants=[row])))


def test_allele_frequency_is_not_computed_from_a_suppressed_count() -> None:
    combined = combine_results(_results(_af_body(3, 2000, 10), _af_body(-2, 1500, 10), _af_body(40, 900, 10)))
    assert isinstance(combined, CombinedAlleleFrequency)
    a = combined.variants[0]
    assert a.allele_number.estimate is not None and a.allele_count.estimate is None
    af = a.allele_frequency
    assert af.estimate is None and af.noise_stddev == 0
    assert af.not_computed == "allele_count suppressed at 2 of 3 sites"
    # the interval is the bounds one: [AC low / AN high, AC high / AN low] of the 97.5% forms
    ac, an = a.allele_count, a.allele_number
    assert 0 <= af.ci95_low <= ac.ci95_low / an.ci95_high and af.ci95_high >= ac.ci95_high / an.ci95_low
    assert (af.sites_below_threshold, af.sites) == (2, 3)


def test_odds_ratio_is_not_computed_from_a_suppressed_cell() -> None:
    def table(case_alt: int) -> pb.ReleaseBody:
        t = pb.CaseControlTable(
            variant=pb.Variant(chrom="1", pos=100, ref="A", alt="G"),
            case_alt=value_pb(case_alt, 2.0, k=10),
            case_ref=value_pb(400, 2.0, k=10),
            control_alt=value_pb(60, 2.0, k=10),
            control_ref=value_pb(900, 2.0, k=10),
        )
        return pb.ReleaseBody(result=pb.QueryResult(case_control=pb.CaseControlResult(tables=[t])))

    combined = combine_results(_results(table(4), table(30)))
    assert isinstance(combined, CombinedCaseControl)
    o = combined.tables[0].odds_ratio
    assert o.not_computed == "case_alt suppressed at 1 of 2 sites"
    assert (o.estimate, o.ci95_low, o.ci95_high, o.log_se) == (0, 0, 0, 0)
    full = combine_results(_results(table(34), table(30)))
    assert isinstance(full, CombinedCaseControl) and full.tables[0].odds_ratio.not_computed == ""
    assert full.tables[0].odds_ratio.estimate > 0


def test_allele_number_counts_two_independent_draws_per_site() -> None:
    an = combine([value(1000, 4.0)], draws=2)
    assert an.ci95_high - 1000 == noise.two_sided([("discrete_laplace", 4.0)] * 2, 0.05)


def test_odds_ratio_of_a_known_table() -> None:
    cells = [results.CombinedValue(estimate=x, noise_stddev=0.0) for x in (20, 80, 10, 90)]
    o = odds_ratio(*cells)
    assert math.isclose(o.estimate, (20 / 80) / (10 / 90))
    se = math.sqrt(1 / 20 + 1 / 80 + 1 / 10 + 1 / 90)
    assert math.isclose(o.log_se, se) and math.isclose(o.ci95_low, o.estimate * math.exp(-1.959963984540054 * se))
    zero = odds_ratio(*[results.CombinedValue(estimate=x) for x in (0, 80, 10, 90)])
    assert math.isclose(zero.estimate, (0.5 / 80.5) / (10.5 / 90.5))  # continuity correction


def test_results_of_different_variants_are_not_combined() -> None:
    def body(pos: int) -> pb.ReleaseBody:
        af = pb.AlleleFrequencyResult(
            variants=[
                pb.AlleleCounts(
                    variant=pb.Variant(chrom="1", pos=pos, ref="A", alt="G"),
                    allele_count=value_pb(5, 2.0),
                    allele_number=value_pb(100, 2.0),
                )
            ]
        )
        return pb.ReleaseBody(result=pb.QueryResult(allele_frequency=af))

    with pytest.raises(ValueError, match="different variants"):
        combine_results(_results(body(100), body(101)))
    combined = combine_results(_results(body(100), body(100)))
    assert isinstance(combined, CombinedAlleleFrequency)
    a = combined.variants[0]
    assert (a.allele_count.estimate, a.allele_number.estimate) == (10, 200)
    assert a.allele_frequency.estimate is not None and math.isclose(a.allele_frequency.estimate, 0.05)
    assert a.allele_frequency.ci95_low <= 0.05 <= a.allele_frequency.ci95_high
    assert combine_results([]) is None


def _release(truth: int, plan: privacy.NoisePlan, k: int) -> results.NoisyValue:
    sens = KINDS[Kind.COHORT_COUNT].sensitivity(1)
    noisy = int(dp.OpenDPNoise().draw(np.array([truth], dtype=np.int64), plan, sens)[0])
    mechanism = LAP if plan.mechanism == "discrete_laplace" else GAU
    return value(noisy, plan.scale, mechanism=mechanism, k=k)


def test_combined_intervals_cover_the_truth_across_sites_with_real_opendp_noise() -> None:
    """Three sites with different ε (so different scales), one small enough that its noisy count often
    falls below the minimum reportable count of 5. Over 3,000 combinations at least 95% of intervals
    must cover the true total. False-failure rate: the binomial tail of more than the bound's misses at
    exactly 95% coverage is below 1e-7 (the intervals are conservative, so the real rate is lower)."""
    sens = KINDS[Kind.COHORT_COUNT].sensitivity(1)
    plans = [privacy.plan(sens, Decimal(e), Decimal(0)) for e in ("0.5", "1", "0.3")]
    truths, k, n = [40, 120, 3], 5, 3000
    misses = 0
    for _ in range(n):
        c = combine([_release(t, p, k) for t, p in zip(truths, plans, strict=True)])
        misses += not (c.ci95_low <= sum(truths) <= c.ci95_high)
    bound = max_misses(n)
    assert misses <= bound, f"{misses} of {n} intervals missed the truth (bound {bound})"


# Bounded work: beyond MAX_SUPPORT no distribution is built, and the bounds that replace it still cover.


@pytest.mark.parametrize(
    "comps",
    [
        [("discrete_laplace", 40.0)],
        [("discrete_laplace", 30.0)] * 3,
        [("discrete_gaussian", 50.0), ("discrete_laplace", 20.0)],
    ],
)
def test_the_bounds_past_the_support_cap_are_never_narrower_than_the_exact_quantiles(
    comps: list[noise.Component], monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = (
        noise.two_sided(comps, 0.05),
        noise.lower_tail(comps, 0.025),
        noise.positive_part_upper([[c] for c in comps], 0.025),
    )
    monkeypatch.setattr(noise, "MAX_SUPPORT", 100)  # every one of these is now too wide to build
    assert not noise.exact(comps)
    bounded = (
        noise.two_sided(comps, 0.05),
        noise.lower_tail(comps, 0.025),
        noise.positive_part_upper([[c] for c in comps], 0.025),
    )
    for e, b in zip(exact, bounded, strict=True):
        assert e <= b <= 4 * e  # sound (Chebyshev / Cantelli), and not absurdly wide
    sd = math.sqrt(sum(noise.variance(c) for c in comps))
    assert bounded[0] == math.ceil(sd / math.sqrt(0.05))
    assert math.isclose(
        noise.stddev(comps), sd, rel_tol=1e-9 if all(m == "discrete_laplace" for m, _ in comps) else 1e-2
    )


def test_the_discrete_laplace_variance_is_exact() -> None:
    for b in (0.5, 2.0, 7.0):
        p = noise.pmf(("discrete_laplace", b))
        k = np.arange(len(p)) - len(p) // 2
        assert math.isclose(float((p * k * k).sum()), noise.variance(("discrete_laplace", b)), rel_tol=1e-9)


def test_a_tiny_epsilon_combines_without_building_its_support() -> None:
    """ε = 1e-9 at three sites: scale 1e9, an exact support of 2.4e11 points (1.9 TB). The combination takes
    the bound instead, and its interval is Chebyshev's."""
    import tracemalloc

    values = [value(100, 1e9), value(50, 1e9), value(7, 1e9)]
    tracemalloc.start()
    c = combine(values)
    suppressed = combine([value(100, 1e9, k=10), value(3, 1e9, k=10)])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20
    sd = math.sqrt(3 * noise.variance(("discrete_laplace", 1e9)))
    assert c.estimate == 157 and c.ci95_high == 157 + math.ceil(sd / math.sqrt(0.05))
    assert suppressed.estimate is None and suppressed.ci95_high > 1e9


def test_the_cache_of_distributions_stays_within_its_byte_budget() -> None:
    """40 distinct scales, 3.8 MB of distributions each (150 MB if all were kept), leave at most CACHE_BYTES."""
    noise.CACHE.clear()
    for i in range(40):
        noise.two_sided([("discrete_laplace", 2000.0 + i)] * 2, 0.05)
        assert noise.CACHE.nbytes <= noise.CACHE_BYTES
    assert noise.CACHE.nbytes > noise.CACHE_BYTES // 4  # it does cache


# Cost and edges (issue 16): one distribution per noise mix, overflow as inf, every failure a ValueError.


def test_a_vector_builds_each_sums_distribution_once_not_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 variants at 3 sites of one scale: allele counts share one mix (3 draws), allele numbers another (6);
    each sum's distribution is read once per level (95% and the frequency's 97.5%), and not at all again."""
    from coordinator import combine as module

    reads: list[tuple[noise.Component, ...]] = []
    real = noise._sum_pmf

    def counted(components: tuple[noise.Component, ...]) -> object:
        reads.append(components)
        return real(components)

    monkeypatch.setattr(noise, "_sum_pmf", counted)
    module.clear_caches()
    bodies = []
    for site in range(3):
        rows = [
            pb.AlleleCounts(
                variant=pb.Variant(chrom="1", pos=100 + i, ref="A", alt="G"),
                allele_count=value_pb(50 + i + site, 400.0),
                allele_number=value_pb(9000 + i, 400.0),
            )
            for i in range(200)
        ]
        bodies.append(pb.ReleaseBody(result=pb.QueryResult(allele_frequency=pb.AlleleFrequencyResult(variants=rows))))
    first = combine_results(_results(*bodies))
    lap = ("discrete_laplace", 400.0)
    assert sorted(reads) == sorted([(lap,) * 3] * 2 + [(lap,) * 6] * 2)
    reads.clear()
    assert combine_results(_results(*bodies)) == first and reads == []


def test_an_odds_ratio_whose_interval_overflows_is_unbounded_not_an_error() -> None:
    """Noise of stddev 1e4 on cells of 20 (ε far too small): exp(log OR + 1.96 se) overflows a float."""
    for sd in (1e4, 1e200, math.inf):
        cells = [results.CombinedValue(estimate=x, noise_stddev=sd) for x in (20, 80, 10, 90)]
        o = odds_ratio(*cells)
        assert math.isclose(o.estimate, (20 / 80) / (10 / 90))
        assert (o.ci95_low, o.ci95_high) == (0.0, math.inf) and o.log_se > 400


@pytest.mark.parametrize(
    ("scale", "mechanism"),
    [(1e200, LAP), (1e13, LAP), (math.inf, LAP), (math.nan, LAP), (0.0, LAP), (-2.0, GAU), (1e-200, GAU), (1e-10, LAP)],
)
def test_a_scale_out_of_range_is_a_value_error(scale: float, mechanism: int) -> None:
    """Outside noise.SCALES (no node plans such a scale) the combination refuses with ValueError, which the
    coordinator turns into FAILED_PRECONDITION: never a ZeroDivisionError, an OverflowError or a 0/0 pmf."""
    for values in (
        [value(5, scale, mechanism=mechanism)],
        [value(50, 2.0), value(3, scale, mechanism=mechanism, k=10)],
    ):
        with pytest.raises(ValueError, match="noise"):
            combine(values)
