"""Single-target differencing: "everyone" minus "everyone not of the target's sex, age and ancestry".

Both counts are large, so the minimum reportable count suppresses nothing; their difference is the number of
participants who share the target's sex, age and ancestry (population). The attacker is the strong adversary
differential privacy is defined against: it knows every other member of that cell, so the difference minus
that number is about 1 for a member and 0 for a non-member. Each trial spends one study's budget ``B``: half on
each count, in queries of at most the shipped per-query cap (their mean is the estimate; with a cap of 1 and
B = 10, five phrasings of each count, each charged in full). Every trial asks questions of its own (a
condition no participant meets makes each distinct), so every answer is a fresh draw: trials are independent
studies, run at one node whose caps above the study are raised for the experiment (``lab_policy``).

The measured point (TPR at 5% FPR) sits beside the bound any attacker on an (ε, δ)-DP release obeys:
TPR <= e^ε * FPR + δ.
"""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import numpy as np

from attacks.data import Cohort
from attacks.lab import Lab, shipped
from attacks.stats import roc
from genogate.errors import GenogateError
from genogate.filter import parse_filter
from genogate.kinds.cohort_count import CohortCount, CohortCountResult
from tests.terms import filler

BUDGETS = (1.0, 2.0, 4.0, 8.0, 10.0)


def _cell(cohort: Cohort, t: int) -> str:
    return f"sex={cohort.sex[t]} and age={cohort.age(t)} and ancestry={cohort.population[t]}"


def run(
    lab: Lab, site: str, cohort: Cohort, *, targets: int, seed: int, budgets: tuple[float, ...] = BUDGETS
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed + 2)
    t_in = rng.choice(cohort.members, size=targets, replace=False)
    t_out = rng.choice(cohort.non_members, size=targets, replace=False)
    cap = float(shipped("epsilon_per_query_cap"))  # type: ignore[arg-type]
    study = lab.study([site], epsilon_total=5e4, epsilon_cap=cap, title="differencing trials")
    members = cohort.members
    cells = Counter(_cell(cohort, int(i)) for i in members)
    fillers = count()
    reasons: Counter[str] = Counter()
    from_store = 0

    def noisy_mean(where: str, eps: float, n: int) -> float:
        nonlocal from_store
        values = []
        for _ in range(n):
            f = filler(next(fillers) + 2000)  # fillers past those the tests use
            text = f"not {f}" if not where else f"not {f} and not ({where})"
            body = lab.send(site, study, CohortCount(parse_filter(text)), eps)
            from_store += bool(body.from_store)
            assert isinstance(body.result, CohortCountResult)
            v = body.result.count
            values.append(float(v.estimate) if not v.below_threshold else 0.0)
        return float(np.mean(values))

    def trial(t: int, budget: float) -> float:
        eps = min(cap, budget / 2.0)
        n = max(1, round(budget / 2.0 / eps))
        cell = _cell(cohort, t)
        others = cells[cell] - (1 if cohort.member[t] else 0)
        try:
            return noisy_mean("", eps, n) - noisy_mean(cell, eps, n) - others
        except GenogateError as exc:
            reasons[exc.reason.name] += 1
            return math.nan

    out: list[dict[str, object]] = []
    with ThreadPoolExecutor(4) as pool:
        for budget in budgets:
            s_in = np.array(list(pool.map(trial, t_in.tolist(), [budget] * len(t_in))))
            s_out = np.array(list(pool.map(trial, t_out.tolist(), [budget] * len(t_out))))
            refused = int(np.isnan(s_in).sum() + np.isnan(s_out).sum())
            curve = roc(s_in[~np.isnan(s_in)], s_out[~np.isnan(s_out)])
            out.append(
                {
                    "attack": "differencing",
                    "statistic": "difference of two counts",
                    "setting": f"per-study budget {budget:g}",
                    "data": f"1000 Genomes subset, {len(members)} members; cells of sex, age, population",
                    "epsilon": budget,
                    "auc": curve.auc,
                    "tpr_at_5pct_fpr": curve.tpr_at(0.05),
                    "bound_tpr_at_5pct_fpr": min(1.0, math.exp(budget) * 0.05),
                    "n_pos": curve.n_pos,
                    "n_neg": curve.n_neg,
                    "refused_trials": refused,
                    "roc": curve.as_json(),
                }
            )
    out[-1]["refusals"] = dict(reasons)
    out[-1]["answers_from_store"] = from_store
    return out
