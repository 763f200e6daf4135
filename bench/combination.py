"""The coordinator's combination of a 1,000-variant allele-frequency vector over 3 sites, old against new.

``old`` is the combination as it was before issue 16 (``tests.reference_combine`` on ``tests.reference_noise``,
verbatim copies), ``new`` is ``coordinator.combine``. Both combine the same site results: 1,000 variants at 3
sites, values made by a seeded generator (stand-ins: nothing here draws noise) and released with the discrete
Laplace scale a node plans for a 1,000-variant allele-frequency query at ε 1 and at ε 0.1, and a minimum
reportable count of 10, so that many allele counts are suppressed at some sites (at these scales a third of
them at ε 1, half at ε 0.1) and take the suppressed path.

Each round times, for each ε, both implementations interleaved (their order alternating between rounds, as
this machine's speed drifts): **cold** (every cache of distributions and quantiles emptied first: a query
with scales the coordinator has not seen) and then **warm** (the same combination again). It prints the
median of each and the ratio old / new, and checks that every new interval contains the old one.

Run: ``python -m bench.combination [--quick]``. The old combination takes a minute or more per run (at ε 0.1
several), so ``--quick`` combines only the first 100 of the 1,000 variants (at the same scales: those of a
1,000-variant query) in one round, about a tenth of the full three rounds' time; its cold ratios are lower,
the new combination's one-off FFTs being shared by fewer values.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

import numpy as np

from coordinator import combine as new
from genogate import privacy
from genogate.kinds.allele_frequency import AlleleCounts, AlleleFrequencyResult, CombinedAlleleFrequency
from genogate.query import Variant
from genogate.results import NoisyValue, QueryResult
from tests import reference_combine as old
from tests import reference_noise

VARIANTS = 1000
SITES = 3
K = 10  # minimum reportable count
EPSILONS = ("1", "0.1")


def site_results(epsilon: str, used: int = VARIANTS, seed: int = 16) -> list[QueryResult]:
    """``SITES`` sites' results of one ``VARIANTS``-variant allele-frequency query at ``epsilon``, the first
    ``used`` variants of it."""
    plan = privacy.plan(privacy.allele_pairs(VARIANTS), Decimal(epsilon), Decimal(0))
    rng = np.random.default_rng(seed)  # data, not noise: fixed stand-ins for what the nodes released
    variants = [Variant("1", 1000 + 17 * i, "A", "G") for i in range(VARIANTS)]
    freq = rng.beta(0.3, 3.0, VARIANTS)  # many rare variants, a few common ones
    out: list[QueryResult] = []
    for _ in range(SITES):
        an = rng.integers(15_000, 20_001, VARIANTS)
        ac = np.rint(freq * an + rng.normal(0, plan.stddev, VARIANTS)).astype(int)
        an_noisy = np.rint(an + rng.normal(0, plan.stddev * 1.5, VARIANTS)).astype(int)

        def value(x: int) -> NoisyValue:
            if x < K:
                return NoisyValue(0, plan.scale, below_threshold=True, threshold=K, mechanism=plan.mechanism)
            return NoisyValue(int(x), plan.scale, threshold=K, mechanism=plan.mechanism)

        rows = tuple(
            AlleleCounts(v, value(int(a)), value(int(n))) for v, a, n in zip(variants, ac, an_noisy, strict=True)
        )
        out.append(AlleleFrequencyResult(rows[:used]))
    return out


def _clear_old() -> None:
    reference_noise.CACHE.clear()
    reference_noise._positive_part_upper.cache_clear()


IMPLS: dict[str, tuple[Callable[[Sequence[QueryResult | None]], object], Callable[[], None]]] = {
    "old": (old.combine_results, _clear_old),
    "new": (new.combine_results, new.clear_caches),
}


def _timed(f: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def _contains(outer: object, inner: object) -> bool:
    """Every new interval contains the old one (bit-equal or wider)."""
    assert isinstance(outer, CombinedAlleleFrequency) and isinstance(inner, CombinedAlleleFrequency)
    for a, b in zip(outer.variants, inner.variants, strict=True):
        for f in ("allele_count", "allele_number", "allele_frequency"):
            x, y = getattr(a, f), getattr(b, f)
            if not (x.ci95_low <= y.ci95_low and x.ci95_high >= y.ci95_high and x.estimate == y.estimate):
                return False
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.combination", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 of the variants, one round")
    args = parser.parse_args(argv)
    rounds, used = (1, 100) if args.quick else (3, VARIANTS)
    inputs = {e: site_results(e, used) for e in EPSILONS}
    times: dict[tuple[str, str, str], list[float]] = {}
    for r in range(rounds):
        for e in EPSILONS:
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            got = {}
            for name in order:
                run, clear = IMPLS[name]
                clear()
                cold, got[name] = _timed(functools.partial(run, inputs[e]))
                warm, _ = _timed(functools.partial(run, inputs[e]))
                times.setdefault((e, name, "cold"), []).append(cold)
                times.setdefault((e, name, "warm"), []).append(warm)
            if not _contains(got["new"], got["old"]):
                raise SystemExit(f"ε {e}: a new interval does not contain the old one")
    scale = {e: privacy.plan(privacy.allele_pairs(VARIANTS), Decimal(e), Decimal(0)).scale for e in EPSILONS}
    what = f"{used} variants of a {VARIANTS}-variant" if used < VARIANTS else f"a {VARIANTS}-variant"
    print(f"combination of {what} allele-frequency vector over {SITES} sites, {rounds} round(s),")
    print("old and new interleaved; medians in ms; every new interval contains the old one")
    print(f"{'ε':>5} {'scale':>8} {'case':>5} {'old ms':>10} {'new ms':>9} {'old/new':>8}")
    for e in EPSILONS:
        for case in ("cold", "warm"):
            o, n = (statistics.median(times[(e, name, case)]) * 1000 for name in ("old", "new"))
            print(f"{e:>5} {scale[e]:>8.0f} {case:>5} {o:>10.1f} {n:>9.2f} {o / n:>8.1f}")


if __name__ == "__main__":
    main()
