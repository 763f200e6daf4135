"""Membership inference from allele frequencies: the Beacon likelihood-ratio test (Shringarpure & Bustamante
2015) and the Homer (2008) and Sankararaman (2009) statistics, against exact answers and against genogate.

Setting: the node holds the members; targets are members and non-members drawn from the same 1000 Genomes
subset; the attacker knows each target's genotypes and has a reference panel (the other non-members) for
population frequencies. The attacker spends one study's whole budget (the node's shipped per-study cap, in
queries of the shipped per-query cap, each asking the allele frequencies of up to ``max_variants_per_query``
variants) on the targets' rarest alleles, then scores every target. "Exact" scores the same statistics on the
exact answers a beacon without noise would give (the node's store, counted offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from attacks.data import Cohort
from attacks.lab import Lab, shipped
from attacks.stats import Roc, roc
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.nodeclient import released
from genogate.query import Variant
from node.freq import allele_counts
from node.store import Store
from node.variant_index import VariantIndex

F64 = npt.NDArray[np.float64]
SEQ_ERROR = 1e-6  # SB2015's delta: the chance a carrier's allele is missed


@dataclass(frozen=True)
class Answers:
    """Allele count and number per attack variant; ``ac`` NaN where the node said "fewer than k"."""

    ac: F64
    an: F64


def exact_answers(store: Path, variants: list[Variant]) -> Answers:
    s = Store.open(store, read_only=True)
    try:
        vids = VariantIndex(s).lookup(variants)
        ac, an = allele_counts(s.class_counts(vids, np.ones(s.n_samples, dtype=bool)))
    finally:
        s.close()
    return Answers(ac.astype(np.float64), an.astype(np.float64))


def noisy_answers(lab: Lab, site: str, variants: list[Variant], per_query: int, epsilon: float) -> Answers:
    study = lab.study([site], epsilon_total=float(shipped("epsilon_per_study_cap")), epsilon_cap=epsilon)  # type: ignore[arg-type]
    ac = np.full(len(variants), np.nan)
    an = np.full(len(variants), np.nan)
    for start in range(0, len(variants), per_query):
        chunk = variants[start : start + per_query]
        body = lab.send(site, study, AlleleFrequency(tuple(chunk)), epsilon)
        vals = released(body)
        for j in range(len(chunk)):
            a, n = vals[2 * j][2], vals[2 * j + 1][2]
            ac[start + j] = np.nan if a.suppressed else float(a.estimate)  # type: ignore[arg-type]
            an[start + j] = np.nan if n.suppressed else float(n.estimate)  # type: ignore[arg-type]
    return Answers(ac, an)


def _clip(p: F64, n: float) -> F64:
    lo = 1.0 / (4.0 * n)
    return np.clip(p, lo, 1.0 - lo)


def scores(dosage: npt.NDArray[np.int8], q: F64, answers: Answers, n_members: int) -> dict[str, F64]:
    """Per target (columns of ``dosage``, variants x targets): each statistic, higher meaning "member".

    ``q``: the reference panel's ALT frequency per variant. A suppressed count ("fewer than k") is read as
    0 and as "absent" for the beacon; a suppressed or missing AN as the cohort's 2N."""
    ac = np.nan_to_num(answers.ac, nan=0.0)
    an = np.where(np.isnan(answers.an) | (answers.an <= 0), 2.0 * n_members, answers.an)
    p = _clip(ac / an, n_members)
    qc = _clip(q, n_members)
    called = dosage >= 0
    x = np.where(called, dosage, 0).astype(np.float64)
    y = x / 2.0
    homer = np.sum(np.where(called, np.abs(y - qc[:, None]) - np.abs(y - p[:, None]), 0.0), axis=0)
    lr = x * np.log(p / qc)[:, None] + (2.0 - x) * np.log((1.0 - p) / (1.0 - qc))[:, None]
    sankararaman = np.sum(np.where(called, lr, 0.0), axis=0)
    # SB2015: over the alleles the target carries, a beacon "yes" (count >= 1) vs "no"; D = P(no one of the
    # N members carries it) under the reference frequency, D' = P(none of the other N - 1 does).
    present = (ac >= 1).astype(np.float64)
    log_d = 2.0 * n_members * np.log1p(-qc)
    log_d1 = 2.0 * (n_members - 1) * np.log1p(-qc)
    yes = np.log1p(-SEQ_ERROR * np.exp(log_d1)) - np.log(-np.expm1(log_d))
    no = np.log(SEQ_ERROR) + log_d1 - log_d
    llr = present * yes + (1.0 - present) * no
    beacon = np.sum(np.where(dosage > 0, llr[:, None], 0.0), axis=0)
    return {"beacon_lrt": beacon, "homer": homer, "sankararaman": sankararaman}


def run(lab: Lab, site: str, store: Path, cohort: Cohort, *, targets: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed + 1)
    t_in = rng.choice(cohort.members, size=targets, replace=False)
    t_out = rng.choice(cohort.non_members, size=targets, replace=False)
    reference = np.setdiff1d(cohort.non_members, t_out)
    d_ref = cohort.dosage[:, reference]
    called = (d_ref >= 0).sum(axis=1)
    q = (np.where(d_ref >= 0, d_ref, 0).sum(axis=1) + 0.5) / (2.0 * called + 1.0)

    epsilon = float(shipped("epsilon_per_query_cap"))  # type: ignore[arg-type]
    per_query = int(shipped("max_variants_per_query"))  # type: ignore[call-overload]
    n_queries = int(float(shipped("epsilon_per_study_cap")) // epsilon)  # type: ignore[arg-type]
    capacity = n_queries * per_query
    # The targets' rarest alleles (by reference frequency), round-robin over targets until the budget's
    # capacity is filled.
    everyone = np.concatenate([t_in, t_out])
    order = np.argsort(q, kind="stable")
    ranked = [order[cohort.dosage[order, t] > 0] for t in everyone]
    chosen: list[int] = []
    seen: set[int] = set()
    depth = 0
    while len(chosen) < capacity and depth < max(len(r) for r in ranked):
        for r in ranked:
            if depth < len(r) and int(r[depth]) not in seen and len(chosen) < capacity:
                seen.add(int(r[depth]))
                chosen.append(int(r[depth]))
        depth += 1
    idx = np.array(sorted(chosen))
    variants = [cohort.variants[i] for i in idx]
    n_members = len(cohort.members)
    answers = {
        "exact answers": exact_answers(store, variants),
        f"genogate ({n_queries} x {per_query} variants at eps {epsilon:g}, the study's whole budget)": noisy_answers(
            lab, site, variants, per_query, epsilon
        ),
    }
    out: list[dict[str, object]] = []
    for setting, ans in answers.items():
        s_in = scores(cohort.dosage[idx][:, t_in], q[idx], ans, n_members)
        s_out = scores(cohort.dosage[idx][:, t_out], q[idx], ans, n_members)
        for stat in s_in:
            curve: Roc = roc(s_in[stat], s_out[stat])
            out.append(
                {
                    "attack": "membership",
                    "statistic": stat,
                    "setting": setting,
                    "data": f"1000 Genomes subset: {n_members} members, {len(cohort.samples) - n_members} non-members",
                    "variants": len(variants),
                    "epsilon": None if setting == "exact answers" else n_queries * epsilon,
                    "auc": curve.auc,
                    "tpr_at_5pct_fpr": curve.tpr_at(0.05),
                    "n_pos": curve.n_pos,
                    "n_neg": curve.n_neg,
                    "roc": curve.as_json(),
                }
            )
    return out
