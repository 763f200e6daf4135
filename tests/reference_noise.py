"""REFERENCE COPY, for tests only: ``genogate/noise.py`` exactly as it was at commit 4411e11 (before issue 16's
"combination at the cost of arithmetic"), so that tests can check the new implementation against it
(intervals bit-equal or provably at least as wide) and the combination benchmark can time old against new.
Do not change it, and do not import it from production code.

The original docstring follows.

Exact distributions of the noise nodes add, and of sums of it, for intervals that cover at their stated rate.

A node noises each count with OpenDP's discrete Laplace (``P(k) ∝ exp(-|k| / scale)``) or discrete
Gaussian (``P(k) ∝ exp(-k² / (2 scale²))``) mechanism and says which, with the scale, beside every value.
A value combined over sites carries the sum of independent noises; its distribution is the convolution of
the sites' distributions, computed here on the integers (FFT over a support that leaves out less than 1e-15
of the mass). Quantiles are then read off exactly, so an interval built from them covers the true count with
at least the stated probability, whatever the number of sites, the mix of mechanisms or how small the
scales are (the normal approximation under-covers for one or two Laplace sites).

**Bounded work.** The support of a sum grows like 80 x scale (about 80 / ε for one count), so a tiny ε
would make it huge. A distribution wider than ``MAX_SUPPORT`` points is never built: its quantiles come
instead from the sum's variance alone, through Chebyshev's inequality (two-sided: ``P(|S| >= h) <= Var/h²``)
and Cantelli's (one-sided: ``P(S <= -q) <= Var / (Var + q²)``). Both hold for any distribution, so the
intervals still cover at their stated rate; they are wider (at 95%, 4.47 standard deviations against about
2.1 for one Laplace site), which is the price of an ε too small to be useful anyway. Distributions that are
built are cached in one least-recently-used cache of at most ``CACHE_BYTES`` in total, so a stream of
distinct scales cannot grow the process either.

This module never draws noise: drawing is the node's, with OpenDP.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import numpy.typing as npt

Mechanism = Literal["discrete_laplace", "discrete_gaussian"]
Component = tuple[Mechanism, float]
"""One independent noise draw: its mechanism and scale."""

_LAPLACE_TAIL = 40.0  # exp(-40) ~ 4e-18 of the mass lies beyond 40 scales
_GAUSSIAN_TAIL = 9.0  # beyond 9 standard deviations: ~ 2e-19
MAX_SUPPORT = 1 << 21
"""Most points of one exact distribution (16 MiB of float64; its FFT needs about as much again)."""
CACHE_BYTES = 64 << 20
"""Most bytes all cached distributions hold together."""


class _Cache:
    """A thread-safe least-recently-used cache of arrays bounded by their total size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[object, npt.NDArray[np.float64]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: object, make: Callable[[], npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        value = make()
        value.setflags(write=False)  # shared between callers
        with self._lock:
            if key not in self._items and value.nbytes <= self.max_bytes:
                self._items[key] = value
                self._bytes += value.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


CACHE = _Cache(CACHE_BYTES)


def _halfwidth(c: Component) -> int:
    mechanism, scale = c
    return max(1, math.ceil(scale * (_LAPLACE_TAIL if mechanism == "discrete_laplace" else _GAUSSIAN_TAIL)))


def _check(c: Component) -> None:
    if not c[1] > 0 or not math.isfinite(c[1]):
        raise ValueError(f"noise scale must be positive and finite, got {c[1]}")


def support(components: Iterable[Component]) -> int:
    """Points of the exact distribution of the sum of ``components`` (what building it would take)."""
    comps = list(components)
    return sum(2 * _halfwidth(c) + 1 for c in comps) - len(comps) + 1 if comps else 1


def exact(components: Iterable[Component]) -> bool:
    """Whether the sum's exact distribution is within ``MAX_SUPPORT`` (else quantiles come from its variance)."""
    return support(components) <= MAX_SUPPORT


def variance(c: Component) -> float:
    """Variance of one draw: exact for discrete Laplace (2p / (1 - p)², p = e^(-1/scale)); for the discrete
    Gaussian σ², which bounds it from above (Canonne, Kamath, Steinke 2020)."""
    _check(c)
    mechanism, scale = c
    if mechanism == "discrete_laplace":
        p = math.exp(-1 / scale)
        return 2 * p / (1 - p) ** 2
    return scale * scale


def pmf(c: Component) -> npt.NDArray[np.float64]:
    """P(noise = k) for k in [-H, H] (H = ``len // 2``), normalised over that support."""
    _check(c)
    if 2 * _halfwidth(c) + 1 > MAX_SUPPORT:
        raise ValueError(f"noise too wide to build exactly ({2 * _halfwidth(c) + 1} support points)")
    return CACHE.get(("pmf", c), lambda: _pmf(c))


def _pmf(c: Component) -> npt.NDArray[np.float64]:
    mechanism, scale = c
    h = _halfwidth(c)
    k = np.arange(-h, h + 1, dtype=np.float64)
    logp = -np.abs(k) / scale if mechanism == "discrete_laplace" else -(k * k) / (2 * scale * scale)
    p = np.exp(logp - logp.max())
    normalised: npt.NDArray[np.float64] = p / p.sum()
    return normalised


def _sum_pmf(components: tuple[Component, ...]) -> npt.NDArray[np.float64]:
    """P(Σ noise = k) for k in [-H, H]; the components are independent."""
    if not components:
        return np.ones(1)
    if len(components) == 1:
        return pmf(components[0])
    size = support(components)
    if size > MAX_SUPPORT:
        raise ValueError(f"noise too wide to combine exactly ({size} support points)")
    return CACHE.get(("sum", components), lambda: _convolve(components, size))


def _convolve(components: tuple[Component, ...], size: int) -> npt.NDArray[np.float64]:
    n = 1 << (size - 1).bit_length()
    spectrum = np.ones(n // 2 + 1, dtype=np.complex128)
    for c in components:
        spectrum *= np.fft.rfft(pmf(c), n)
    out = np.fft.irfft(spectrum, n)[:size]
    out = np.clip(out, 0.0, None)
    normalised: npt.NDArray[np.float64] = out / out.sum()
    return normalised


def _key(components: Iterable[Component]) -> tuple[Component, ...]:
    return tuple(sorted((m, float(s)) for m, s in components))


def two_sided(components: Iterable[Component], alpha: float) -> int:
    """The smallest integer h with P(|Σ noise| <= h) >= 1 - alpha; beyond ``MAX_SUPPORT``, the Chebyshev
    bound ``ceil(sd / sqrt(alpha))``, which is at least that."""
    key = _key(components)
    if not exact(key):
        return math.ceil(math.sqrt(sum(variance(c) for c in key) / alpha))
    p = _sum_pmf(key)
    mid = len(p) // 2
    # mass within h of zero, for h = 0, 1, ...: p[mid] + Σ_{j<=h} (p[mid - j] + p[mid + j])
    inner = np.concatenate(([p[mid]], p[mid + 1 :] + p[mid - 1 :: -1][: len(p) - mid - 1]))
    covered = np.cumsum(inner)
    return int(np.searchsorted(covered, 1 - alpha - 1e-12))


def lower_tail(components: Iterable[Component], alpha: float) -> int:
    """The smallest integer q with P(Σ noise < -q) <= alpha; beyond ``MAX_SUPPORT``, Cantelli's bound
    ``ceil(sd * sqrt((1 - alpha) / alpha))``, which is at least that."""
    key = _key(components)
    if not exact(key):
        return math.ceil(math.sqrt(sum(variance(c) for c in key) * (1 - alpha) / alpha))
    p = _sum_pmf(key)
    mid = len(p) // 2
    below = np.cumsum(p)  # below[i] = P(noise <= i - mid); P(noise < -q) = below[mid - q - 1]
    i = int(np.searchsorted(below, alpha * (1 + 1e-12), side="right")) - 1  # the last index with below <= alpha
    return mid if i < 0 else max(0, mid - 1 - min(i, mid - 1))


def stddev(components: Iterable[Component]) -> float:
    """Standard deviation of Σ noise (from the exact distributions; from ``variance`` beyond ``MAX_SUPPORT``)."""
    total = 0.0
    for c in components:
        if not exact([c]):
            total += variance(c)
            continue
        p = pmf(c)
        k = np.arange(len(p)) - len(p) // 2
        total += float((p * k * k).sum())
    return math.sqrt(total)


def positive_part_upper(sites: Iterable[Iterable[Component]], alpha: float) -> int:
    """The smallest integer w with P(Σ_i max(Z_i, 0) > w) <= alpha, where site i's noise Z_i is the sum of
    its components and the sites are independent.

    Σ_i max(Z_i, 0) is the largest noise any subset of the sites can carry, so it bounds the noise of
    whichever sites happen to release a value (which sites do depends on the noise itself).

    Beyond ``MAX_SUPPORT`` (all sites' components together), Cantelli's bound on that sum: each site's
    symmetric noise has E[max(Z, 0)] = E|Z| / 2 <= sd / 2 and E[max(Z, 0)²] = Var / 2, so
    ``w = Σ sd_i / 2 + sqrt(Σ Var_i / 2 * (1 - alpha) / alpha)``."""
    key = tuple(sorted(_key(site) for site in sites))
    if not exact(c for site in key for c in site):
        var = [sum(variance(c) for c in site) for site in key]
        return math.ceil(sum(math.sqrt(v) / 2 for v in var) + math.sqrt(sum(var) / 2 * (1 - alpha) / alpha))
    return _positive_part_upper(key, alpha)


@functools.lru_cache(maxsize=256)
def _positive_part_upper(sites: tuple[tuple[Component, ...], ...], alpha: float) -> int:
    total = np.ones(1)
    for site in sites:
        p = _sum_pmf(site)
        mid = len(p) // 2
        positive = np.concatenate(([p[: mid + 1].sum()], p[mid + 1 :]))  # P(max(Z, 0) = j), j = 0, 1, ...
        total = np.convolve(total, positive) if len(total) * len(positive) < 1 << 22 else _fft_convolve(total, positive)
    above = 1.0 - np.cumsum(total)  # above[w] = P(Σ > w)
    return int(np.argmax(above <= alpha * (1 + 1e-12)))


def _fft_convolve(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    size = len(a) + len(b) - 1
    n = 1 << (size - 1).bit_length()
    out = np.clip(np.fft.irfft(np.fft.rfft(a, n) * np.fft.rfft(b, n), n)[:size], 0.0, None)
    normalised: npt.NDArray[np.float64] = out / out.sum()
    return normalised
