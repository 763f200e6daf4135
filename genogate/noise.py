"""Exact distributions of the noise nodes add, and of sums of it, for intervals that cover at their stated rate.

A node noises each count with OpenDP's discrete Laplace (``P(k) ∝ exp(-|k| / scale)``) or discrete
Gaussian (``P(k) ∝ exp(-k² / (2 scale²))``) mechanism and says which, with the scale, beside every value.
A value combined over sites carries the sum of independent noises; its distribution is the convolution of
the sites' distributions, computed here on the integers (FFT over a support that leaves out less than 1e-15
of the mass). Quantiles are then read off exactly, so an interval built from them covers the true count with
at least the stated probability, whatever the number of sites, the mix of mechanisms or how small the
scales are (the normal approximation under-covers for one or two Laplace sites).

**The cost of arithmetic.** A query's values share a handful of noise mixes (a 1,000-variant allele-frequency
vector at 3 sites has two: three draws for an allele count, six for an allele number), so every answer here is
a function of the sorted tuple of (mechanism, scale) alone, memoised (with ``MAX_SUPPORT``, which decides the
path) in small least-recently-used caches: the distribution of a sum is built by one FFT convolution the first
time its mix is seen (each distinct component transformed once), its quantiles read off once per level. The
standard deviation never needs a distribution: the variance of a discrete Laplace draw is
``2q / (1 - q)²`` (q = e^(-1/scale)), that of a discrete Gaussian at most σ² (summed exactly from its pmf
below σ = 4), and the variance of a sum is the sum of the variances. One site's discrete Laplace quantiles have
closed forms too (geometric tails: ``P(X < -m) = q^(m+1) / (1 + q)``). Closed forms are computed in floats,
so each is rounded towards the wider side (variances up by a relative 1e-12, tail probabilities held
``_MARGIN`` below the level): an interval or standard deviation is never below what the numeric path gives.

**Bounded work.** The support of a sum grows like 80 x scale (about 80 / ε for one count), so a tiny ε
would make it huge. A distribution wider than ``MAX_SUPPORT`` points is never built: its quantiles come
instead from the sum's variance alone, through Chebyshev's inequality (two-sided: ``P(|S| >= h) <= Var/h²``)
and Cantelli's (one-sided: ``P(S <= -q) <= Var / (Var + q²)``). Both hold for any distribution, so the
intervals still cover at their stated rate; they are wider (at 95%, 4.47 standard deviations against about
2.1 for one Laplace site), which is the price of an ε too small to be useful anyway. Distributions that are
built are cached in one least-recently-used cache of at most ``CACHE_BYTES`` in total, so a stream of
distinct scales cannot grow the process either; the memoised numbers are a few bytes each, at most
``_MEMO`` per function. A scale outside ``SCALES`` is refused (``ValueError``): no node plans one, and the
arithmetic above is checked only inside it. The caches are shared by the coordinator's threads: the memos are
``functools.lru_cache`` and ``CACHE`` takes a lock, so a race computes a value twice, never a wrong one.

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
Key = tuple[Component, ...]
"""A multiset of components, sorted: what every memoised answer here is a function of."""

_LAPLACE_TAIL = 40.0  # exp(-40) ~ 4e-18 of the mass lies beyond 40 scales
_GAUSSIAN_TAIL = 9.0  # beyond 9 standard deviations: ~ 2e-19
_DG_EXACT_BELOW = 4.0  # σ below which a discrete Gaussian's variance is summed from its pmf (else σ², see variance)
_UP = 1 + 1e-12
"""Relative round-up of a variance computed in floats (its error is a few ulps, ~1e-15), so that a standard
deviation or a Chebyshev bound is never below the exact value, nor below a sum over a numeric pmf."""
_MARGIN = 1e-9
"""How far below the level a closed-form tail probability must lie (absolute). The closed forms are accurate to
~1e-15; a tail summed over a numeric pmf of at most ``MAX_SUPPORT`` points, sequentially, is off by at most
~2^21 x 2^-53 ~ 2.3e-10 and is accepted up to 1e-12 above the level; so a closed-form quantile is never below
the numeric one (and exceeds it by one only where the exact tail lies within 1e-9 of the level)."""
SCALES = (1e-9, 1e12)
"""The noise scales this module accepts: nodes plan from 1e-6 (ε 1e6, sensitivity 1) to ``privacy.MAX_SCALE``
(1e6); outside, a Gaussian pmf underflows to 0/0 or a variance to 1 / 0."""
MAX_SUPPORT = 1 << 21
"""Most points of one exact distribution (16 MiB of float64; its FFT needs about as much again)."""
CACHE_BYTES = 64 << 20
"""Most bytes all cached distributions hold together."""
_MEMO = 4096
"""Most entries of each memo of numbers (quantiles, standard deviations, variances)."""


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


def clear_caches() -> None:
    """Forget every cached distribution and memoised number (as a process that has seen no query)."""
    CACHE.clear()
    for memo in (variance, _spread, _stddev, _two_sided, _lower_tail, _positive_part_upper):
        memo.cache_clear()


def _halfwidth(c: Component) -> int:
    mechanism, scale = c
    return max(1, math.ceil(scale * (_LAPLACE_TAIL if mechanism == "discrete_laplace" else _GAUSSIAN_TAIL)))


def _check(c: Component) -> None:
    if c[0] not in ("discrete_laplace", "discrete_gaussian"):
        raise ValueError(f"unknown noise mechanism {c[0]!r}")
    if not SCALES[0] <= c[1] <= SCALES[1]:
        raise ValueError(f"noise scale must lie in [{SCALES[0]:g}, {SCALES[1]:g}], got {c[1]}")


def as_key(components: Iterable[Component]) -> Key:
    """The sorted multiset of ``components`` (every memo's key); ``ValueError`` for a mechanism or scale this
    module does not know."""
    out = tuple(sorted((m, float(s)) for m, s in components))
    for c in out:
        _check(c)
    return out


def support(components: Iterable[Component]) -> int:
    """Points of the exact distribution of the sum of ``components`` (what building it would take)."""
    comps = list(components)
    return sum(2 * _halfwidth(c) + 1 for c in comps) - len(comps) + 1 if comps else 1


def exact(components: Iterable[Component]) -> bool:
    """Whether the sum's exact distribution is within ``MAX_SUPPORT`` (else quantiles come from its variance)."""
    return support(components) <= MAX_SUPPORT


@functools.lru_cache(maxsize=_MEMO)
def variance(c: Component) -> float:
    """An upper bound on the variance of one draw: for discrete Laplace
    ``2q / (1 - q)²`` (q = e^(-1/scale), 1 - q as ``-expm1(-1/scale)``, which keeps its digits at large scales),
    rounded up by ``_UP``, and never below the same formula with ``1 - q`` taken literally (which earlier
    versions used: off by up to a relative scale x 2^-53, either way), so within a relative 1e-12 + scale x 2^-53
    above the exact value; for the discrete Gaussian σ², which bounds it from above (Canonne, Kamath, Steinke
    2020)."""
    _check(c)
    mechanism, scale = c
    if mechanism == "discrete_laplace":
        q = math.exp(-1 / scale)
        d = -math.expm1(-1 / scale)
        return max(2 * q / (d * d) * _UP, 2 * q / (1 - q) ** 2)
    return scale * scale


@functools.lru_cache(maxsize=_MEMO)
def _spread(c: Component) -> float:
    """The variance of one draw for a standard deviation, at least the exact one and barely above it:
    ``variance`` for discrete Laplace; for the discrete Gaussian, below σ = 4 summed from its pmf over
    |k| <= 40σ + 40 (the rest weighs < e^-800), else σ² (by Poisson summation the variance is σ²(1 - O(σ² e^(-2π²σ²))),
    a relative 1e-130 below at σ = 4), rounded up by ``_UP``."""
    mechanism, sigma = c
    if mechanism == "discrete_laplace":
        return variance(c)
    if sigma >= _DG_EXACT_BELOW:
        return sigma * sigma * _UP
    k = np.arange(-math.ceil(40 * sigma) - 40, math.ceil(40 * sigma) + 41, dtype=np.float64)
    w = np.exp(-(k * k) / (2.0 * sigma * sigma))
    return float(np.sum(w * k * k) / np.sum(w)) * _UP


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


def _sum_pmf(components: Key) -> npt.NDArray[np.float64]:
    """P(Σ noise = k) for k in [-H, H]; the components are independent."""
    if not components:
        return np.ones(1)
    if len(components) == 1:
        return pmf(components[0])
    size = support(components)
    if size > MAX_SUPPORT:
        raise ValueError(f"noise too wide to combine exactly ({size} support points)")
    return CACHE.get(("sum", components), lambda: _convolve(components, size))


def _convolve(components: Key, size: int) -> npt.NDArray[np.float64]:
    """One FFT convolution; a component repeated (the same scale at several sites, or a site's two draws) is
    transformed once and its spectrum multiplied in as often (the same products, so the same bits, as
    transforming it each time)."""
    n = 1 << (size - 1).bit_length()
    spectrum = np.ones(n // 2 + 1, dtype=np.complex128)
    spectra: dict[Component, npt.NDArray[np.complex128]] = {}
    for c in components:
        if c not in spectra:
            spectra[c] = np.fft.rfft(pmf(c), n)
        spectrum *= spectra[c]
    out = np.fft.irfft(spectrum, n)[:size]
    out = np.clip(out, 0.0, None)
    normalised: npt.NDArray[np.float64] = out / out.sum()
    return normalised


def _laplace_quantile(scale: float, alpha: float, sides: int) -> int:
    """The smallest m >= 0 with ``sides`` x q^(m+1) / (1 + q) <= alpha - _MARGIN for one discrete Laplace draw
    (q = e^(-1/scale)): with ``sides`` 2, P(|X| > m); with 1, P(X < -m)."""
    q = math.exp(-1 / scale)
    level = alpha - _MARGIN

    def tail(m: int) -> float:
        return sides * math.exp(-(m + 1) / scale) / (1 + q)

    if level <= 0:
        raise ValueError(f"a tail level {alpha} too small for noise quantiles")
    m = max(0, math.ceil(scale * math.log(sides / ((1 + q) * level))) - 1)  # the solution, up to rounding
    while m > 0 and tail(m - 1) <= level:
        m -= 1
    while tail(m) > level:
        m += 1
    return m


def two_sided(components: Iterable[Component], alpha: float) -> int:
    """The smallest integer h with P(|Σ noise| <= h) >= 1 - alpha; beyond ``MAX_SUPPORT``, the Chebyshev
    bound ``ceil(sd / sqrt(alpha))``, which is at least that."""
    return _two_sided(as_key(components), float(alpha), MAX_SUPPORT)


@functools.lru_cache(maxsize=_MEMO)
def _two_sided(key: Key, alpha: float, max_support: int) -> int:
    if support(key) > max_support:
        return math.ceil(math.sqrt(sum(variance(c) for c in key) / alpha))
    if len(key) == 1 and key[0][0] == "discrete_laplace":
        return _laplace_quantile(key[0][1], alpha, 2)
    p = _sum_pmf(key)
    mid = len(p) // 2
    # mass within h of zero, for h = 0, 1, ...: p[mid] + Σ_{j<=h} (p[mid - j] + p[mid + j])
    inner = np.concatenate(([p[mid]], p[mid + 1 :] + p[mid - 1 :: -1][: len(p) - mid - 1]))
    covered = np.cumsum(inner)
    return int(np.searchsorted(covered, 1 - alpha - 1e-12))


def lower_tail(components: Iterable[Component], alpha: float) -> int:
    """The smallest integer q with P(Σ noise < -q) <= alpha; beyond ``MAX_SUPPORT``, Cantelli's bound
    ``ceil(sd * sqrt((1 - alpha) / alpha))``, which is at least that."""
    return _lower_tail(as_key(components), float(alpha), MAX_SUPPORT)


@functools.lru_cache(maxsize=_MEMO)
def _lower_tail(key: Key, alpha: float, max_support: int) -> int:
    if support(key) > max_support:
        return math.ceil(math.sqrt(sum(variance(c) for c in key) * (1 - alpha) / alpha))
    if len(key) == 1 and key[0][0] == "discrete_laplace":
        return _laplace_quantile(key[0][1], alpha, 1)
    p = _sum_pmf(key)
    mid = len(p) // 2
    below = np.cumsum(p)  # below[i] = P(noise <= i - mid); P(noise < -q) = below[mid - q - 1]
    i = int(np.searchsorted(below, alpha * (1 + 1e-12), side="right")) - 1  # the last index with below <= alpha
    return mid if i < 0 else max(0, mid - 1 - min(i, mid - 1))


def stddev(components: Iterable[Component]) -> float:
    """Standard deviation of Σ noise: the square root of the sum of the draws' variances (``_spread``), at least
    the exact value and within a relative 2e-12 (+ scale x 2^-53 for discrete Laplace) above it."""
    return _stddev(as_key(components))


@functools.lru_cache(maxsize=_MEMO)
def _stddev(key: Key) -> float:
    # Rounded up once more: the float sum of up to 64 terms is off by at most ~64 ulps (1.4e-14), either way.
    return math.sqrt(sum(_spread(c) for c in key) * _UP)


def positive_part_upper(sites: Iterable[Iterable[Component]], alpha: float) -> int:
    """The smallest integer w with P(Σ_i max(Z_i, 0) > w) <= alpha, where site i's noise Z_i is the sum of
    its components and the sites are independent.

    Σ_i max(Z_i, 0) is the largest noise any subset of the sites can carry, so it bounds the noise of
    whichever sites happen to release a value (which sites do depends on the noise itself).

    Beyond ``MAX_SUPPORT`` (all sites' components together), Cantelli's bound on that sum: each site's
    symmetric noise has E[max(Z, 0)] = E|Z| / 2 <= sd / 2 and E[max(Z, 0)²] = Var / 2, so
    ``w = Σ sd_i / 2 + sqrt(Σ Var_i / 2 * (1 - alpha) / alpha)``."""
    k = tuple(sorted(as_key(site) for site in sites))
    if not exact(c for site in k for c in site):
        var = [sum(variance(c) for c in site) for site in k]
        return math.ceil(sum(math.sqrt(v) / 2 for v in var) + math.sqrt(sum(var) / 2 * (1 - alpha) / alpha))
    return _positive_part_upper(k, float(alpha))


@functools.lru_cache(maxsize=_MEMO)
def _positive_part_upper(sites: tuple[Key, ...], alpha: float) -> int:
    above = 1.0 - np.cumsum(CACHE.get(("positive", sites), lambda: _positive_sum_pmf(sites)))  # P(Σ > w)
    return int(np.argmax(above <= alpha * (1 + 1e-12)))


def _positive_sum_pmf(sites: tuple[Key, ...]) -> npt.NDArray[np.float64]:
    """P(Σ_i max(Z_i, 0) = w) for w = 0, 1, ..."""
    total = np.ones(1)
    for site in sites:
        p = _sum_pmf(site)
        mid = len(p) // 2
        positive = np.concatenate(([p[: mid + 1].sum()], p[mid + 1 :]))  # P(max(Z, 0) = j), j = 0, 1, ...
        total = np.convolve(total, positive) if len(total) * len(positive) < 1 << 22 else _fft_convolve(total, positive)
    return total


def _fft_convolve(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    size = len(a) + len(b) - 1
    n = 1 << (size - 1).bit_length()
    out = np.clip(np.fft.irfft(np.fft.rfft(a, n) * np.fft.rfft(b, n), n)[:size], 0.0, None)
    normalised: npt.NDArray[np.float64] = out / out.sum()
    return normalised
