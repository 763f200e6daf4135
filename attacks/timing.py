"""The refused-query timing attack: does a refusal that costs nothing reveal whether a node holds a variant?

A study's budget is spent; then queries about variants the node holds and about variants it does not hold
(positions next to held ones, on the same contigs, absent from the store) are sent in a shuffled, interleaved
order and refused (budget exhausted). The attacker's only signal is the latency of each refusal, measured at
the client. Run on the node's in-memory path (the shipped default) and on its DuckDB path (``[store]
memory_mb = 0``, as for stores too big for memory), for single-variant queries and for queries of many
variants at once. AUC > 0.5 means held variants are refused more slowly.

Two statistics: the probe's latency, and its latency minus that of a control query of the same shape about
variants known to be absent, sent just before it (which cancels the drift of a shared machine's speed; an
attacker can always ask about variants no one carries).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from attacks.lab import Lab
from attacks.stats import roc
from genogate.errors import GenogateError
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.cohort_count import CohortCount
from genogate.query import Variant
from node.store import Store


def held_and_absent(store: Path, n: int, n_absent: int, seed: int) -> tuple[list[Variant], list[Variant]]:
    """``n`` variants the store holds (autosomal SNPs) and ``n_absent`` it does not: a held SNP's position moved
    by a few bases, on the same contig, where the store has no variant."""
    s = Store.open(store, read_only=True)
    try:
        rows = s.con.execute(
            "SELECT chrom, pos, ref, alt FROM variants WHERE length(ref) = 1 AND length(alt) = 1 "
            "AND chrom NOT IN ('X', 'Y', 'MT') ORDER BY vid"
        ).fetchall()
        taken = {(c, p) for c, p, _, _ in s.con.execute("SELECT chrom, pos, ref, alt FROM variants").fetchall()}
    finally:
        s.close()
    rng = np.random.default_rng(seed + 3)
    pick = rng.choice(len(rows), size=min(n + n_absent, len(rows)), replace=False)
    held = [Variant(*rows[i]) for i in pick[:n]]
    absent: list[Variant] = []
    for i in pick[n:]:
        c, p, _, _ = rows[i]
        for shift in (3, 5, 7, 11, 13):
            if (c, p + shift) not in taken:
                absent.append(Variant(c, p + shift, "A", "C" if rows[i][3] != "C" else "G"))
                taken.add((c, p + shift))
                break
    return held, absent[:n_absent]


def _time(lab: Lab, site: str, study: object, query: object, reasons: Counter[str]) -> float:
    t0 = time.perf_counter()
    try:
        lab.send(site, study, query, 0.5)  # type: ignore[arg-type]
        reasons["ANSWERED"] += 1
    except GenogateError as exc:
        reasons[exc.reason.name] += 1
    return (time.perf_counter() - t0) * 1e3


def run(
    lab: Lab,
    sites: dict[str, str],
    store: Path,
    *,
    n_single: int,
    n_batch: int,
    batch: int,
    seed: int,
    data: str = "1000 Genomes subset store",
) -> list[dict[str, object]]:
    """``sites``: path name -> node name (each serving a copy of ``store``)."""
    n_held = max(n_single, batch)
    held, absent = held_and_absent(store, n_held, n_held + max(n_single, batch), seed)
    absent, control = absent[:n_held], absent[n_held:]
    study = lab.study(list(sites.values()), epsilon_total=1.0, epsilon_cap=1.0, title="timing")
    out: list[dict[str, object]] = []
    rng = np.random.default_rng(seed + 4)
    for path, site in sites.items():
        lab.send(site, study, CohortCount(), 1.0)  # the whole budget: every later query is refused
        trials: list[tuple[str, bool, AlleleFrequency, AlleleFrequency]] = []
        for i in range(n_single):
            ctl = AlleleFrequency((control[i],))
            trials.append(("1 variant per query", True, AlleleFrequency((held[i],)), ctl))
            trials.append(("1 variant per query", False, AlleleFrequency((absent[i],)), ctl))
        for _ in range(n_batch):
            shape = f"{batch} variants per query"
            ctl = AlleleFrequency(tuple(_sample(rng, control, batch)))
            trials.append((shape, True, AlleleFrequency(tuple(_sample(rng, held, batch))), ctl))
            trials.append((shape, False, AlleleFrequency(tuple(_sample(rng, absent, batch))), ctl))
        reasons: Counter[str] = Counter()
        for _, _, q, _ in trials[:20]:  # warm up channel, caches and code paths
            _time(lab, site, study, q, Counter())
        raw: dict[tuple[str, bool], list[float]] = {}
        calibrated: dict[tuple[str, bool], list[float]] = {}
        for j in rng.permutation(len(trials)):
            shape, is_held, q, ctl = trials[int(j)]
            before = _time(lab, site, study, ctl, reasons)
            ms = _time(lab, site, study, q, reasons)
            raw.setdefault((shape, is_held), []).append(ms)
            calibrated.setdefault((shape, is_held), []).append(ms - before)
        for shape in dict.fromkeys(t[0] for t in trials):
            for statistic, latency in (
                ("latency of a refused query", raw),
                ("latency minus a control's", calibrated),
            ):
                pos, neg = np.array(latency[(shape, True)]), np.array(latency[(shape, False)])
                curve = roc(pos, neg)
                out.append(
                    {
                        "attack": "timing",
                        "statistic": statistic,
                        "setting": f"{path}, {shape}",
                        "data": f"{data}; held vs absent variants",
                        "epsilon": 0.0,
                        "auc": curve.auc,
                        "tpr_at_5pct_fpr": curve.tpr_at(0.05),
                        "n_pos": curve.n_pos,
                        "n_neg": curve.n_neg,
                        "median_ms_held": float(np.median(raw[(shape, True)])),
                        "median_ms_absent": float(np.median(raw[(shape, False)])),
                        "refusals": dict(reasons),
                        "roc": curve.as_json(),
                    }
                )
    return out


def _sample(rng: np.random.Generator, pool: list[Variant], k: int) -> list[Variant]:
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
