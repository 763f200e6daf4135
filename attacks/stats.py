"""ROC curves, AUC, TPR at a fixed FPR and exact binomial intervals (numpy only; no scipy in the project)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Roc:
    """An empirical ROC curve: positives are members (or held variants), a higher score says "positive".

    ``fpr``/``tpr`` are the vertices of the curve for every threshold (from (0, 0) to (1, 1)); points between
    two vertices are reached by a randomised threshold, so the curve is their linear interpolation."""

    fpr: F64
    tpr: F64
    n_pos: int
    n_neg: int

    @property
    def auc(self) -> float:
        """Area under the curve: P(score of a positive > score of a negative) + P(tie) / 2 (Mann-Whitney)."""
        return float(np.sum(np.diff(self.fpr) * (self.tpr[1:] + self.tpr[:-1]) / 2.0))

    def as_json(self, max_points: int = 400) -> dict[str, list[float]]:
        """The vertices, rounded to 4 digits and thinned to about ``max_points`` (for plots and the JSON)."""
        step = max(1, len(self.fpr) // max_points)
        keep = np.unique(np.concatenate([np.arange(0, len(self.fpr), step), [len(self.fpr) - 1]]))
        return {"fpr": np.round(self.fpr[keep], 4).tolist(), "tpr": np.round(self.tpr[keep], 4).tolist()}

    def tpr_at(self, fpr: float) -> float:
        """The true-positive rate of the (randomised) test whose false-positive rate is exactly ``fpr``."""
        x, y = self.fpr, self.tpr
        i = int(np.searchsorted(x, fpr, side="right")) - 1  # last vertex with x <= fpr
        if x[i] == fpr or i == len(x) - 1:
            return float(y[i])
        return float(y[i] + (y[i + 1] - y[i]) * (fpr - x[i]) / (x[i + 1] - x[i]))


def roc(pos: npt.ArrayLike, neg: npt.ArrayLike) -> Roc:
    """The ROC curve of scores ``pos`` (positives) against ``neg`` (negatives); NaN scores are not allowed."""
    p = np.sort(np.asarray(pos, dtype=np.float64))
    n = np.sort(np.asarray(neg, dtype=np.float64))
    if len(p) == 0 or len(n) == 0:
        raise ValueError("a ROC curve needs positives and negatives")
    if np.isnan(p).any() or np.isnan(n).any():
        raise ValueError("NaN score")
    thresholds = np.unique(np.concatenate([p, n]))[::-1]  # decreasing: the curve goes from (0, 0) up
    tpr = 1.0 - np.searchsorted(p, thresholds, side="left") / len(p)  # P(score >= t)
    fpr = 1.0 - np.searchsorted(n, thresholds, side="left") / len(n)
    return Roc(np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), len(p), len(n))


def _log_pmf(n: int, p: float) -> F64:
    """log P(X = k) for k = 0..n, X ~ Binomial(n, p)."""
    if p <= 0.0 or p >= 1.0:
        out = np.full(n + 1, -np.inf)
        out[0 if p <= 0.0 else n] = 0.0
        return out
    k = np.arange(n + 1)
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])  # log k!
    log_pmf: F64 = lf[n] - lf[k] - lf[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)
    return log_pmf


def _tail(n: int, k: int, p: float, upper: bool) -> float:
    pmf = np.exp(_log_pmf(n, p))
    return float(pmf[k:].sum() if upper else pmf[: k + 1].sum())


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n, by bisection."""
    if not 0 <= k <= n or n == 0:
        raise ValueError(f"need 0 <= k <= n, n > 0 (k={k}, n={n})")
    a = (1.0 - level) / 2.0

    def solve(f: object, want_increasing: bool) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2.0
            v = f(mid)  # type: ignore[operator]
            if (v < a) == want_increasing:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    low = 0.0 if k == 0 else solve(lambda p: _tail(n, k, p, upper=True), want_increasing=True)
    high = 1.0 if k == n else solve(lambda p: _tail(n, k, p, upper=False), want_increasing=False)
    return low, high
