"""REFERENCE COPY, for tests only: ``coordinator/combine.py`` exactly as it was at commit 4411e11 (before issue
16), except that it computes with ``tests.reference_noise`` (the reference copy of ``genogate.noise``). Tests
and ``bench.combination`` compare the new combination against it. Do not change it.

The original docstring follows.

Combining the noisy releases of the answering sites into one answer with error bars.

Every combined count is the sum of the sites' noisy counts. Its 95% interval comes from the exact
distribution of the summed noise (``genogate.noise``: a convolution of the sites' declared discrete
Laplace or Gaussian noise), so it covers the true pooled count at least 95% of the time.

**Suppressed values.** A site whose *noisy* count ``Y_i = t_i + Z_i`` fell below its minimum reportable
count ``k_i`` says only "fewer than k_i" (so ``Y_i <= k_i - 1``). A sum with such sites has no estimate
(``estimate`` absent, ``not_computed`` says why): a midpoint would be a plausible wrong number. Its
interval, with ``A`` the sites that released and ``S`` those that did not (which sites land where depends
on the noise itself), is

    [ΣA Y_i - w,  ΣA Y_i + ΣS (k_i - 1) + u],  the low end clamped at 0, where

* the true total is ``T = Σ Y_i - Σ Z_i <= ΣA Y_i + ΣS (k_i - 1) - Σ Z_i``, so the high end holds when
  ``-Σ Z_i <= u``: ``u`` is the 2.5% lower-tail quantile of the *whole* sum of noise (all sites);
* ``T >= ΣA t_i = ΣA Y_i - ΣA Z_i`` (suppressed sites hold at least 0) and ``ΣA Z_i <= Σ max(Z_i, 0)``
  whichever sites released, so the low end holds when ``Σ max(Z_i, 0) <= w``: ``w`` is the 97.5%
  quantile of that sum of positive parts.

Both events are fixed before the noise is drawn, so the interval covers whatever the true counts and
whichever sites end up suppressed, with probability at least 95% by the union bound. Which of the two
forms (this one, or the released one when every site answers) a query gets depends on the noise too. Their
high-end misses lie in one event (``u`` is at most the released form's half-width), but their low-end
misses are two events of at most 2.5% each, so the union bound alone promises only 92.5% for the two forms
together; exact enumeration of two and three sites' noise over truths around k measures at least 95.1%
(the worst case is at large counts, where every site answers), in tests/statistical/
test_suppressed_coverage.py. A released count's interval is unchanged, and the work above is done only for
values with a suppressed site.

* **Allele frequency** = ΣAC / ΣAN, clamped to [0, 1]. Its interval is [AC_low / AN_high, AC_high / AN_low]
  from 97.5% intervals of ΣAC and ΣAN (union bound again, valid although AC and AN share noise). A node's
  AN is ALT + REF, two independent draws, and is combined as such. When a site suppressed AC or AN there
  is no frequency estimate ("not computed: allele_count suppressed at 2 of 3 sites"); the interval, from
  the bounds above, still covers (an absent variant gets [0, an upper bound]).
* **Odds ratio** (allelic, case/control): Woolf's interval on the combined 2x2 table, its log standard
  error adding the noise variance of each cell to the sampling variance (delta method); a 0.5 continuity
  correction when a cell's estimate is zero or negative. This interval is about the population odds ratio,
  so it is approximate, unlike the count intervals. Not computed at all (every number 0, ``not_computed``
  set) when a site suppressed any of the four cells.

Estimates are unbiased sums of unbiased noisy values; where a site reported "fewer than k" there is none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from genogate.kinds import for_result
from genogate.results import CombinedResult, CombinedValue, NoisyValue, OddsRatio, QueryResult
from tests import reference_noise as noise

ALPHA = 0.05
_Z = 1.959963984540054  # two-sided 95% normal quantile (odds-ratio interval only)
_MECHANISM: dict[str, noise.Mechanism] = {
    "discrete_laplace": "discrete_laplace",
    "discrete_gaussian": "discrete_gaussian",
}


def _components(v: NoisyValue, draws: int) -> list[noise.Component]:
    mechanism = _MECHANISM.get(v.mechanism)
    if mechanism is None or not v.noise_scale > 0:
        raise ValueError("a released value without a known noise mechanism and scale")
    return [(mechanism, float(v.noise_scale))] * draws


def combine(values: Sequence[NoisyValue], *, draws: int = 1, alpha: float = ALPHA) -> CombinedValue:
    """Σ of one value over the answering sites (``draws``: independent noise draws inside each value)."""
    below = [v for v in values if v.below_threshold]
    if below:
        return _with_suppressed(values, below, draws, alpha)
    comps = [c for v in values for c in _components(v, draws)]
    h = noise.two_sided(comps, alpha)
    estimate = float(sum(v.estimate for v in values))
    return CombinedValue(
        estimate=estimate,
        ci95_low=max(0.0, estimate - h),  # a count is never negative
        ci95_high=max(0.0, estimate + h),
        noise_stddev=noise.stddev(comps),
        sites=len(values),
        released=estimate,
    )


def _with_suppressed(
    values: Sequence[NoisyValue], below: Sequence[NoisyValue], draws: int, alpha: float
) -> CombinedValue:
    """A sum where some sites said only "fewer than k": no estimate, the interval of the module docstring."""
    per_site = [_components(v, draws) for v in values]
    u = noise.lower_tail([c for site in per_site for c in site], alpha / 2)
    w = noise.positive_part_upper(per_site, alpha / 2)
    released = float(sum(v.estimate for v in values if not v.below_threshold))
    answered = len(values) - len(below)
    return CombinedValue(
        ci95_low=max(0.0, released - w) if answered else 0.0,
        ci95_high=max(0.0, released + sum(max(0, int(v.threshold) - 1) for v in below) + u),
        sites_below_threshold=len(below),
        sites=len(values),
        threshold=max(int(v.threshold) for v in below),
        released=released,
        not_computed=f"suppressed at {len(below)} of {len(values)} site{'' if len(values) == 1 else 's'}",
    )


def _frequency(
    ac: Sequence[NoisyValue], an: Sequence[NoisyValue], sum_ac: CombinedValue, sum_an: CombinedValue
) -> CombinedValue:
    """ΣAC / ΣAN with an interval from 97.5% intervals of each (``sum_ac``/``sum_an``: their 95% forms)."""
    wide_ac, wide_an = combine(ac, alpha=ALPHA / 2), combine(an, draws=2, alpha=ALPHA / 2)
    lo = wide_ac.ci95_low / wide_an.ci95_high if wide_an.ci95_high > 0 else 0.0
    hi = wide_ac.ci95_high / wide_an.ci95_low if wide_an.ci95_low > 0 else 1.0
    ci95_low, ci95_high = min(1.0, max(0.0, lo)), min(1.0, max(0.0, hi))
    below = max(sum_ac.sites_below_threshold, sum_an.sites_below_threshold)
    missing = _suppressed_cells([("allele_count", sum_ac), ("allele_number", sum_an)])
    if missing or sum_ac.estimate is None or sum_an.estimate is None:
        return CombinedValue(
            ci95_low=ci95_low,
            ci95_high=ci95_high,
            sites_below_threshold=below,
            sites=sum_ac.sites,
            not_computed=missing,
        )
    a, n = sum_ac.estimate, sum_an.estimate
    return CombinedValue(
        estimate=min(1.0, max(0.0, a / n)) if n > 0 else 0.0,
        ci95_low=ci95_low,
        ci95_high=ci95_high,
        noise_stddev=(
            math.sqrt((sum_ac.noise_stddev / n) ** 2 + (a * sum_an.noise_stddev / n**2) ** 2) if n > 0 else 0.0
        ),
        sites_below_threshold=below,
        sites=sum_ac.sites,
    )


def _suppressed_cells(cells: Sequence[tuple[str, CombinedValue]]) -> str:
    """ "" when every cell has an estimate, else which are suppressed, e.g. "case_alt suppressed at 3 of 3 sites"."""
    return "; ".join(f"{name} {c.not_computed}" for name, c in cells if c.estimate is None)


def sum_of(values: Sequence[NoisyValue], *, draws: int = 1) -> CombinedValue:
    """The 95% combination (the form every reported count takes)."""
    return combine(values, draws=draws)


def odds_ratio(a: CombinedValue, b: CombinedValue, c: CombinedValue, d: CombinedValue) -> OddsRatio:
    """Allelic odds ratio (a/b) / (c/d) of case alt a, case ref b, control alt c, control ref d; not computed
    (``not_computed`` set, the numbers 0) when a cell has no estimate (a site suppressed it)."""
    missing = _suppressed_cells(list(zip(_CELLS, (a, b, c, d), strict=True)))
    if missing or a.estimate is None or b.estimate is None or c.estimate is None or d.estimate is None:
        return OddsRatio(not_computed=missing)
    cells = [a.estimate, b.estimate, c.estimate, d.estimate]
    if min(cells) <= 0:
        cells = [x + 0.5 for x in cells]
    cells = [max(x, 0.5) for x in cells]
    sds = [a.noise_stddev, b.noise_stddev, c.noise_stddev, d.noise_stddev]
    log_or = math.log(cells[0]) - math.log(cells[1]) - math.log(cells[2]) + math.log(cells[3])
    se = math.sqrt(sum(1 / x + (s / x) ** 2 for x, s in zip(cells, sds, strict=True)))
    return OddsRatio(
        estimate=math.exp(log_or),
        ci95_low=math.exp(log_or - _Z * se),
        ci95_high=math.exp(log_or + _Z * se),
        log_se=se,
    )


class _Maths:
    """The combination maths each kind's ``combine`` is given (``genogate.kinds.base.Maths``)."""

    sum_of = staticmethod(sum_of)
    frequency = staticmethod(_frequency)
    odds_ratio = staticmethod(odds_ratio)


_MATHS = _Maths()


def combine_results(results: Sequence[QueryResult | None]) -> CombinedResult | None:
    """The combination of the answering sites' results (all of one kind, ``genogate.kinds``); None when none
    answered. A result None is a release that named no result kind (refused)."""
    if not results:
        return None
    kinds = [None if r is None else r.kind for r in results]
    if any(k is not kinds[0] for k in kinds):
        raise ValueError("sites answered with different result kinds")
    first = results[0]
    if first is None:
        raise ValueError("no result kind to combine (None)")
    return for_result(first).combine([r for r in results if r is not None], _MATHS)


_CELLS = ("case_alt", "case_ref", "control_alt", "control_ref")
