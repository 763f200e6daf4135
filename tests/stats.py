"""Exact binomial bounds for statistical tests, so each states its false-failure rate."""

from __future__ import annotations

import math


def _log_pmf(n: int, p: float, i: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)


def max_misses(n: int, *, p: float = 0.05, rate: float = 1e-7) -> int:
    """The smallest k with P(X > k) < rate for X ~ Binomial(n, p): more than k misses of intervals that
    cover at rate 1 - p happens by chance with probability below ``rate``."""
    k = n
    tail = 0.0
    while k > 0:
        nxt = tail + math.exp(_log_pmf(n, p, k))  # P(X >= k)
        if nxt >= rate:
            return k
        tail, k = nxt, k - 1
    return 0
