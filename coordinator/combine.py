"""Combining the noisy releases of the answering sites into one answer with error bars.

Every combined count is the sum of the sites' noisy counts. Its 95% interval comes from the exact
distribution of the summed noise (``genogate.noise``: a convolution of the sites' declared discrete
Laplace or Gaussian noise), so it covers the true pooled count at least 95% of the time.

A site that reported a value only as "fewer than k" (its *noisy* value was below its minimum reportable
count) still holds participants: its true count is between 0 and ``k - 1 + q``, where ``q`` bounds how far
its noise could have pulled the value down. The estimate takes the middle of that range and the interval
spans it; the miss probability is split evenly between the answered sum and each such site (a union
bound), so the whole interval still covers at 95%.

* **Allele frequency** = ΣAC / ΣAN, clamped to [0, 1]. Its interval is [AC_low / AN_high, AC_high / AN_low]
  from 97.5% intervals of ΣAC and ΣAN (union bound again, valid although AC and AN share noise). A node's
  AN is ALT + REF, two independent draws, and is combined as such.
* **Odds ratio** (allelic, case/control): Woolf's interval on the combined 2x2 table, its log standard
  error adding the noise variance of each cell to the sampling variance (delta method); a 0.5 continuity
  correction when a cell's estimate is zero or negative. This interval is about the population odds ratio,
  so it is approximate, unlike the count intervals.

Estimates are unbiased sums of unbiased noisy values, except where a site reported "fewer than k".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from genogate import noise
from genogate.wire.v1 import common_pb2 as pb

ALPHA = 0.05
_Z = 1.959963984540054  # two-sided 95% normal quantile (odds-ratio interval only)
_MECHANISM: dict[int, noise.Mechanism] = {
    pb.NOISE_MECHANISM_DISCRETE_LAPLACE: "discrete_laplace",
    pb.NOISE_MECHANISM_DISCRETE_GAUSSIAN: "discrete_gaussian",
}


def _components(v: pb.NoisyValue, draws: int) -> list[noise.Component]:
    mechanism = _MECHANISM.get(int(v.mechanism))
    if mechanism is None or not v.noise_scale > 0:
        raise ValueError("a released value without a known noise mechanism and scale")
    return [(mechanism, float(v.noise_scale))] * draws


def combine(values: Sequence[pb.NoisyValue], *, draws: int = 1, alpha: float = ALPHA) -> pb.CombinedValue:
    """Σ of one value over the answering sites (``draws``: independent noise draws inside each value)."""
    answered = [v for v in values if not v.below_threshold]
    below = [v for v in values if v.below_threshold]
    parts = (1 if answered else 0) + len(below)
    share = alpha / max(parts, 1)
    estimate, low, high, variance = 0.0, 0.0, 0.0, 0.0
    if answered:
        comps = [c for v in answered for c in _components(v, draws)]
        h = noise.two_sided(comps, share)
        estimate = float(sum(v.estimate for v in answered))
        low, high = estimate - h, estimate + h
        variance = noise.stddev(comps) ** 2
    for v in below:
        top = max(0, int(v.threshold) - 1) + noise.lower_tail(_components(v, draws), share)
        estimate += top / 2
        high += top
        variance += top * top / 12  # a spread over [0, top]
    return pb.CombinedValue(
        estimate=estimate,
        ci95_low=max(0.0, low),  # a count is never negative
        ci95_high=max(0.0, high),
        noise_stddev=math.sqrt(variance),
        sites_below_threshold=len(below),
    )


def _frequency(
    ac: Sequence[pb.NoisyValue], an: Sequence[pb.NoisyValue], sum_ac: pb.CombinedValue, sum_an: pb.CombinedValue
) -> pb.CombinedValue:
    """ΣAC / ΣAN with an interval from 97.5% intervals of each (``sum_ac``/``sum_an``: their 95% forms)."""
    wide_ac, wide_an = combine(ac, alpha=ALPHA / 2), combine(an, draws=2, alpha=ALPHA / 2)
    a, n = sum_ac.estimate, sum_an.estimate
    freq = min(1.0, max(0.0, a / n)) if n > 0 else 0.0
    lo = wide_ac.ci95_low / wide_an.ci95_high if wide_an.ci95_high > 0 else 0.0
    hi = wide_ac.ci95_high / wide_an.ci95_low if wide_an.ci95_low > 0 else 1.0
    sd = math.sqrt((sum_ac.noise_stddev / n) ** 2 + (a * sum_an.noise_stddev / n**2) ** 2) if n > 0 else 0.0
    return pb.CombinedValue(
        estimate=freq,
        ci95_low=min(1.0, max(0.0, lo)),
        ci95_high=min(1.0, max(0.0, hi)),
        noise_stddev=sd,
        sites_below_threshold=max(sum_ac.sites_below_threshold, sum_an.sites_below_threshold),
    )


def sum_of(values: Sequence[pb.NoisyValue], *, draws: int = 1) -> pb.CombinedValue:
    """The 95% combination (the form every reported count takes)."""
    return combine(values, draws=draws)


def odds_ratio(a: pb.CombinedValue, b: pb.CombinedValue, c: pb.CombinedValue, d: pb.CombinedValue) -> pb.OddsRatio:
    """Allelic odds ratio (a/b) / (c/d) of case alt a, case ref b, control alt c, control ref d."""
    cells = [a.estimate, b.estimate, c.estimate, d.estimate]
    if min(cells) <= 0:
        cells = [x + 0.5 for x in cells]
    cells = [max(x, 0.5) for x in cells]
    sds = [a.noise_stddev, b.noise_stddev, c.noise_stddev, d.noise_stddev]
    log_or = math.log(cells[0]) - math.log(cells[1]) - math.log(cells[2]) + math.log(cells[3])
    se = math.sqrt(sum(1 / x + (s / x) ** 2 for x, s in zip(cells, sds, strict=True)))
    return pb.OddsRatio(
        estimate=math.exp(log_or),
        ci95_low=math.exp(log_or - _Z * se),
        ci95_high=math.exp(log_or + _Z * se),
        log_se=se,
    )


def combine_results(bodies: Sequence[pb.ReleaseBody]) -> pb.CombinedResult | None:
    """The combination of the answering sites' results (all of one kind); None when none answered."""
    results = [b.result for b in bodies]
    if not results:
        return None
    kind = results[0].WhichOneof("kind")
    if any(r.WhichOneof("kind") != kind for r in results):
        raise ValueError("sites answered with different result kinds")
    if kind == "cohort_count":
        return pb.CombinedResult(
            cohort_count=pb.CombinedCohortCount(count=sum_of([r.cohort_count.count for r in results]))
        )
    if kind == "carrier_count":
        return pb.CombinedResult(
            carrier_count=pb.CombinedCarrierCount(carriers=sum_of([r.carrier_count.carriers for r in results]))
        )
    if kind == "genotype_counts":
        g = [r.genotype_counts for r in results]

        def field(name: str) -> pb.CombinedValue:
            return sum_of([getattr(x, name) for x in g])

        return pb.CombinedResult(
            genotype_counts=pb.CombinedGenotypeCounts(
                variant=g[0].variant,
                hom_ref=field("hom_ref"),
                het=field("het"),
                hom_alt=field("hom_alt"),
                hemi_ref=field("hemi_ref"),
                hemi_alt=field("hemi_alt"),
                no_call=field("no_call"),
            )
        )
    if kind == "allele_frequency":
        per_site = [list(r.allele_frequency.variants) for r in results]
        _same_variants([[x.variant for x in site] for site in per_site])
        out = pb.CombinedAlleleFrequency()
        for i, first in enumerate(per_site[0]):
            ac = [site[i].allele_count for site in per_site]
            an = [site[i].allele_number for site in per_site]
            sum_ac, sum_an = sum_of(ac), sum_of(an, draws=2)
            out.variants.add(
                variant=first.variant,
                allele_count=sum_ac,
                allele_number=sum_an,
                allele_frequency=_frequency(ac, an, sum_ac, sum_an),
            )
        return pb.CombinedResult(allele_frequency=out)
    if kind == "case_control":
        tables = [list(r.case_control.tables) for r in results]
        _same_variants([[x.variant for x in site] for site in tables])
        cc = pb.CombinedCaseControl()
        for i, table in enumerate(tables[0]):
            cells = [sum_of([getattr(site[i], f) for site in tables]) for f in _CELLS]
            cc.tables.add(
                variant=table.variant,
                case_alt=cells[0],
                case_ref=cells[1],
                control_alt=cells[2],
                control_ref=cells[3],
                odds_ratio=odds_ratio(*cells),
            )
        return pb.CombinedResult(case_control=cc)
    raise ValueError(f"no result kind to combine ({kind!r})")


_CELLS = ("case_alt", "case_ref", "control_alt", "control_ref")


def _same_variants(per_site: Sequence[Sequence[pb.Variant]]) -> None:
    first = [v.SerializeToString(deterministic=True) for v in per_site[0]]
    for site in per_site[1:]:
        if [v.SerializeToString(deterministic=True) for v in site] != first:
            raise ValueError("sites answered for different variants")
