"""Exact distributions of the noise nodes add, and of sums of it, for intervals that cover at their stated rate.

A node noises each count with OpenDP's discrete Laplace (``P(k) ∝ exp(-|k| / scale)``) or discrete
Gaussian (``P(k) ∝ exp(-k² / (2 scale²))``) mechanism and says which, with the scale, beside every value.
A value combined over sites carries the sum of independent noises; its distribution is the convolution of
the sites' distributions, computed here on the integers (FFT over a support that leaves out less than 1e-15
of the mass). Quantiles are then read off exactly, so an interval built from them covers the true count with
at least the stated probability, whatever the number of sites, the mix of mechanisms or how small the
scales are (the normal approximation under-covers for one or two Laplace sites).

This module never draws noise: drawing is the node's, with OpenDP.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import numpy.typing as npt

Mechanism = Literal["discrete_laplace", "discrete_gaussian"]
Component = tuple[Mechanism, float]
"""One independent noise draw: its mechanism and scale."""

_LAPLACE_TAIL = 40.0  # exp(-40) ~ 4e-18 of the mass lies beyond 40 scales
_GAUSSIAN_TAIL = 9.0  # beyond 9 standard deviations: ~ 2e-19
_MAX_SUPPORT = 1 << 24


def _halfwidth(c: Component) -> int:
    mechanism, scale = c
    return max(1, math.ceil(scale * (_LAPLACE_TAIL if mechanism == "discrete_laplace" else _GAUSSIAN_TAIL)))


@functools.lru_cache(maxsize=256)
def pmf(c: Component) -> npt.NDArray[np.float64]:
    """P(noise = k) for k in [-H, H] (H = ``len // 2``), normalised over that support."""
    mechanism, scale = c
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"noise scale must be positive and finite, got {scale}")
    h = _halfwidth(c)
    k = np.arange(-h, h + 1, dtype=np.float64)
    logp = -np.abs(k) / scale if mechanism == "discrete_laplace" else -(k * k) / (2 * scale * scale)
    p = np.exp(logp - logp.max())
    normalised: npt.NDArray[np.float64] = p / p.sum()
    return normalised


@functools.lru_cache(maxsize=1024)
def _sum_pmf(components: tuple[Component, ...]) -> npt.NDArray[np.float64]:
    """P(Σ noise = k) for k in [-H, H]; the components are independent."""
    if not components:
        return np.ones(1)
    if len(components) == 1:
        return pmf(components[0])
    size = sum(2 * _halfwidth(c) + 1 for c in components) - len(components) + 1
    if size > _MAX_SUPPORT:
        raise ValueError(f"noise too wide to combine exactly ({size} support points)")
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
    """The smallest integer h with P(|Σ noise| <= h) >= 1 - alpha."""
    p = _sum_pmf(_key(components))
    mid = len(p) // 2
    # mass within h of zero, for h = 0, 1, ...: p[mid] + Σ_{j<=h} (p[mid - j] + p[mid + j])
    inner = np.concatenate(([p[mid]], p[mid + 1 :] + p[mid - 1 :: -1][: len(p) - mid - 1]))
    covered = np.cumsum(inner)
    return int(np.searchsorted(covered, 1 - alpha - 1e-12))


def lower_tail(components: Iterable[Component], alpha: float) -> int:
    """The smallest integer q with P(Σ noise < -q) <= alpha."""
    p = _sum_pmf(_key(components))
    mid = len(p) // 2
    below = np.cumsum(p)  # below[i] = P(noise <= i - mid); P(noise < -q) = below[mid - q - 1]
    i = int(np.searchsorted(below, alpha * (1 + 1e-12), side="right")) - 1  # the last index with below <= alpha
    return mid if i < 0 else max(0, mid - 1 - min(i, mid - 1))


def stddev(components: Iterable[Component]) -> float:
    """Standard deviation of Σ noise (from the exact distributions)."""
    total = 0.0
    for c in components:
        p = pmf(c)
        k = np.arange(len(p)) - len(p) // 2
        total += float((p * k * k).sum())
    return math.sqrt(total)


def positive_part_upper(sites: Iterable[Iterable[Component]], alpha: float) -> int:
    """The smallest integer w with P(Σ_i max(Z_i, 0) > w) <= alpha, where site i's noise Z_i is the sum of
    its components and the sites are independent.

    Σ_i max(Z_i, 0) is the largest noise any subset of the sites can carry, so it bounds the noise of
    whichever sites happen to release a value (which sites do depends on the noise itself)."""
    return _positive_part_upper(tuple(sorted(_key(site) for site in sites)), alpha)


@functools.lru_cache(maxsize=1024)
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
