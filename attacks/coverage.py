"""Interval coverage: how often a stated 95% interval covers the exact value, over many released numbers.

Two settings: one node's own releases (the real 1000 Genomes members; per value, its own interval, for
single-variant queries, drawn with the discrete Laplace, and many-variant queries, with the discrete Gaussian;
a value released only as "fewer than k" has no interval and is counted apart), and the coordinator's combined
values over three sites holding a synthetic cohort (every combined value has an interval, suppressed or not).
Exact values are counted offline from the stores, over the participants whose consent admits the study.
Each fraction comes with its exact (Clopper-Pearson) 95% binomial interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attacks.lab import Lab, shipped
from attacks.stats import clopper_pearson
from genogate import duo
from genogate.kinds.allele_frequency import AlleleFrequency, AlleleFrequencyResult
from genogate.nodeclient import released
from genogate.query import Variant
from node.cohort import Cohorts
from node.freq import allele_counts
from node.store import Store
from node.variant_index import VariantIndex


def exact(stores: Sequence[Path], variants: list[Variant], purpose: str = "HMB") -> tuple[np.ndarray, np.ndarray]:
    """Pooled exact (AC, AN) per variant over ``stores``, counting consented participants only."""
    ac = np.zeros(len(variants), dtype=np.int64)
    an = np.zeros(len(variants), dtype=np.int64)
    want = duo.parse_purpose(purpose)
    for path in stores:
        s = Store.open(path, read_only=True)
        try:
            consent = np.zeros(s.n_samples, dtype=bool)
            for codes, members in Cohorts(s).consent_groups:
                if duo.admits(codes, want):
                    consent |= members
            a, n = allele_counts(s.class_counts(VariantIndex(s).lookup(variants), consent))
        finally:
            s.close()
        ac += a
        an += n
    return ac, an


def store_variants(store: Path, n: int, seed: int) -> list[Variant]:
    s = Store.open(store, read_only=True)
    try:
        rows = s.con.execute("SELECT chrom, pos, ref, alt FROM variants ORDER BY vid").fetchall()
    finally:
        s.close()
    pick = np.random.default_rng(seed + 5).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [Variant(*rows[i]) for i in sorted(pick)]


def _row(setting: str, data: str, covered: int, n: int, extra: dict[str, object]) -> dict[str, object]:
    covered, n = int(covered), int(n)
    low, high = clopper_pearson(covered, n)
    return {
        "attack": "coverage",
        "statistic": "stated 95% interval covers the exact value",
        "setting": setting,
        "data": data,
        "n": n,
        "covered": covered,
        "coverage": covered / n,
        "coverage_ci95": [low, high],
        **extra,
    }


def node_releases(
    lab: Lab, site: str, store: Path, *, singles: int, vectors: int, width: int, seed: int
) -> list[dict[str, object]]:
    eps = float(shipped("epsilon_per_query_cap"))  # type: ignore[arg-type]
    study = lab.study([site], epsilon_total=1e4, epsilon_cap=eps, title="coverage at a node")
    variants = store_variants(store, max(singles, vectors * width), seed)
    ac, an = exact([store], variants)
    truth = {str(v): (int(a), int(n)) for v, a, n in zip(variants, ac, an, strict=True)}
    out = []
    for shape, queries in (
        ("1 variant per query", [variants[i : i + 1] for i in range(singles)]),
        (f"{width} variants per query", [variants[i * width : (i + 1) * width] for i in range(vectors)]),
    ):
        covered = n = suppressed = 0
        mechanisms: set[str] = set()
        for chunk in queries:
            body = lab.send(site, study, AlleleFrequency(tuple(chunk)), eps)
            for variant, quantity, value in released(body):
                a, total = truth[variant]
                t = a if quantity == "allele_count" else total
                if value.suppressed:
                    suppressed += 1
                    continue
                n += 1
                covered += value.ci95_low <= t <= value.ci95_high  # type: ignore[operator]
            assert isinstance(body.result, AlleleFrequencyResult)
            mechanisms.add(body.result.variants[0].allele_count.mechanism)
        names = sorted(mechanisms)
        out.append(
            _row(
                f"one node's releases, {shape} (eps {eps:g}; AC and AN)",
                "1000 Genomes subset members",
                covered,
                n,
                {"suppressed_without_interval": suppressed, "mechanisms": names},
            )
        )
    return out


def federated(
    lab: Lab, sites: list[str], stores: list[Path], *, queries: int, width: int, seed: int
) -> dict[str, object]:
    eps = float(shipped("epsilon_per_query_cap"))  # type: ignore[arg-type]
    study = lab.study(sites, epsilon_total=1e4, epsilon_cap=eps, title="coverage, federated")
    variants = store_variants(stores[0], queries * width, seed + 7)
    ac, an = exact(stores, variants)
    truth = {
        str(v): {"allele_count": int(a), "allele_number": int(n), "allele_frequency": a / n if n else 0.0}
        for v, a, n in zip(variants, ac, an, strict=True)
    }
    covered = n = partly = 0
    with lab.client() as gg:
        for i in range(queries):
            chunk = variants[i * width : (i + 1) * width]
            r = gg.allele_frequency(study.study_id, chunk, epsilon=eps)
            if len(r.answered) != len(sites):
                raise RuntimeError(f"not every site answered: {r.sites}")
            for row in r.rows():
                t = truth[row["variant"]][row["quantity"]]
                n += 1
                partly += bool(row["suppressed"])
                covered += row["ci95_low"] <= t <= row["ci95_high"]
    return _row(
        f"coordinator's combined values over {len(sites)} sites, {width} variant(s) per query "
        f"(eps {eps:g}; AC, AN, AF)",
        "synthetic cohort split into three sites",
        covered,
        n,
        {"with_a_suppressed_site": partly},
    )
