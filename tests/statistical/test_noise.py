"""The noise OpenDP draws has the distribution, standard deviation and 95% coverage the plans declare.

Every sample comes from the production path (``OpenDPNoise.draw``); the only randomness is OpenDP's. All
thresholds are computed here, from exact pmfs and rigorous tail bounds (no asymptotic approximation):

* Chernoff: for N ~ Binomial(n, p), P(N >= h) <= exp(-n KL(h/n || p)) for h >= np, and the same below.
* Cramer-Chernoff: for i.i.d. bounded Y, P(mean >= a) <= exp(-n (lam a - log E exp(lam Y))) for every lam >= 0
  (and the mirror image below), with E exp(lam Y) computed from the exact pmf.

Each test's false-failure rate is at most ``ALPHA`` = 1e-7 (stated per test), so the whole file fails by
chance with probability below 1e-6.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import opendp.prelude as opendp
import pytest

from genogate import privacy
from genogate.kinds import KINDS
from genogate.query import Kind
from node import dp

ALPHA = 1e-7
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


# Exact distributions ---------------------------------------------------------------------------------------


class Pmf:
    """The pmf of a plan's noise on the integers in [-c, c]; what lies beyond weighs < 1e-25 (asserted)."""

    def __init__(self, p: privacy.NoisePlan) -> None:
        b = p.scale
        if p.mechanism == "discrete_laplace":
            c = math.ceil(60 * b) + 60
            self.k = np.arange(-c, c + 1, dtype=np.int64)
            q = math.exp(-1 / b)
            self.p = (1 - q) / (1 + q) * np.exp(-np.abs(self.k) / b)
            self.outside = 2 * q ** (c + 1) / (1 + q)
        else:
            c = math.ceil(12 * b) + 12
            self.k = np.arange(-c, c + 1, dtype=np.int64)
            w = np.exp(-(self.k.astype(np.float64) ** 2) / (2 * b * b))
            self.p = w / math.fsum(w)
            # sum_{|k|>c} exp(-k^2/2b^2) <= 2 exp(-c^2/2b^2) / (1 - exp(-c/b^2)), and the normaliser is >= 1.
            self.outside = 2 * math.exp(-(c * c) / (2 * b * b)) / -math.expm1(-c / (b * b))
        assert self.outside < 1e-25

    def tail(self, c: int) -> float:
        """P(|X| > c), an upper bound (it adds the mass beyond the array)."""
        return math.fsum(self.p[np.abs(self.k) > c]) + self.outside


# Tail bounds -----------------------------------------------------------------------------------------------


def _kl(a: float, p: float) -> float:
    """KL(Bernoulli(a) || Bernoulli(p))."""
    out = 0.0
    if a > 0:
        out += a * math.log(a / p)
    if a < 1:
        out += (1 - a) * math.log((1 - a) / (1 - p))
    return out


def binomial_upper(n: int, p: float, alpha: float) -> int:
    """The least h >= np with P(Binomial(n, p) >= h) <= alpha by Chernoff (n + 1 if none)."""
    lo, hi = math.ceil(n * p), n + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if n * _kl(mid / n, p) >= math.log(1 / alpha):
            hi = mid
        else:
            lo = mid + 1
    return lo


def binomial_lower(n: int, p: float, alpha: float) -> int:
    """The greatest l <= np with P(Binomial(n, p) <= l) <= alpha by Chernoff (-1 if none)."""
    lo, hi = -1, math.floor(n * p)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if n * _kl(mid / n, p) >= math.log(1 / alpha):
            lo = mid
        else:
            hi = mid - 1
    return lo


# Checks ----------------------------------------------------------------------------------------------------


def check_distribution(noise: IntArray, pmf: Pmf, alpha: float) -> None:
    """Bin the support into runs of mass >= 0.5% (outer bins open-ended); every bin's count must lie inside
    its two-sided Chernoff interval at alpha / (2 * bins). Union bound: false failure <= alpha."""
    edges, mass, acc = [], [], 0.0
    for k, p in zip(pmf.k.tolist(), pmf.p.tolist(), strict=True):
        acc += p
        if acc >= 0.005:
            edges.append(k)  # bin ends at k (inclusive)
            mass.append(acc)
            acc = 0.0
    mass[-1] += acc + pmf.outside  # open-ended last bin; the first bin absorbs the mass below -c
    mass[0] += pmf.outside
    counts = np.bincount(np.searchsorted(np.array(edges[:-1]), noise, side="left"), minlength=len(edges))
    n, a = len(noise), alpha / (2 * len(edges))
    bad = [
        (e, int(c), m * n)
        for e, c, m in zip(edges, counts.tolist(), mass, strict=True)
        if not binomial_lower(n, m, a) < c < binomial_upper(n, m, a)
    ]
    assert bad == [], f"bins (upper edge, count, expected) out of range: {bad}"


def _chernoff_mean(y: FloatArray, w: FloatArray, n: int, alpha: float, sign: int) -> float:
    """A threshold a with P(mean of n draws of Y >= a) <= alpha (sign=+1), or P(... <= a) <= alpha (sign=-1),
    for Y taking values ``y`` with probabilities ``w``, by the Cramer-Chernoff bound: for every lam,
    P(mean >= a) <= exp(-n (lam a - log E e^(lam Y))). Parametrised by lam (a = the lam-tilted mean, where
    the exponent is the exact rate), the lam found by bisection is sound whatever its precision."""
    logw = np.log(w)

    def exponent(lam: float) -> tuple[float, float]:
        z = logw + sign * lam * y
        top = float(np.max(z))
        e = np.exp(z - top)
        a = float(np.sum(e * y) / np.sum(e))
        return n * (sign * lam * a - (top + math.log(float(np.sum(e))))), a

    lo, hi, target = 0.0, 1.0 / float(np.max(y)), math.log(1 / alpha)
    while exponent(hi)[0] < target:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if exponent(mid)[0] >= target else (mid, hi)
    return exponent(hi)[1]


def check_stddev(noise: IntArray, p: privacy.NoisePlan, pmf: Pmf, alpha: float) -> None:
    """Y = min(X^2, c^2) is bounded, so Cramer-Chernoff applies to its mean on both sides at alpha/2 each:
    false failure <= alpha. c is large enough that E Y = stddev^2 to 1e-9 and, almost surely, Y = X^2 for
    every draw. The tolerance is derived from the exact pmf, and asserted to be tight (the test has power)."""
    c = math.ceil(12 * p.scale) + 12 if p.mechanism == "discrete_gaussian" else math.ceil(50 * p.scale) + 50
    fold = pmf.k >= 0
    y = np.minimum(pmf.k[fold].astype(np.float64) ** 2, float(c * c))
    w = np.where(pmf.k[fold] == 0, pmf.p[fold], 2 * pmf.p[fold])
    y, w = y[w > 0], w[w > 0]
    ey = math.fsum(w * y)
    assert ey == pytest.approx(p.stddev**2, rel=1e-9)  # the plan's stddev is the pmf's
    n = len(noise)
    lo = _chernoff_mean(y, w, n, alpha / 2, -1)
    hi = _chernoff_mean(y, w, n, alpha / 2, +1)
    assert lo < ey < hi and hi - lo < 0.3 * ey  # a stddev tolerance under ~7.5%
    mean_y = float(np.mean(np.minimum(noise.astype(np.float64) ** 2, float(c * c))))
    assert lo <= mean_y <= hi, (
        f"empirical stddev {math.sqrt(mean_y):.5g} outside [{math.sqrt(lo):.5g}, {math.sqrt(hi):.5g}] "
        f"around the declared {p.stddev:.5g}"
    )


def check_coverage(noise: IntArray, p: privacy.NoisePlan, pmf: Pmf, alpha: float) -> None:
    """The released interval [noisy - h, noisy + h] misses the true value iff |noise| > h. Exactly (from the
    pmf) that happens at most 5% of the time; empirically, misses ~ Binomial(n, <= 0.05), and the test fails
    if they reach the Chernoff bound at alpha: false failure <= alpha."""
    h = p.ci95_halfwidth
    assert pmf.tail(math.floor(h)) <= 0.05
    misses = int(np.count_nonzero(np.abs(noise) > h))
    assert misses < binomial_upper(len(noise), 0.05, alpha), f"{misses} of {len(noise)} intervals missed"


def run_checks(noise: IntArray, p: privacy.NoisePlan) -> None:
    """Three checks at ALPHA / 3 each: this call fails by chance with probability <= ALPHA = 1e-7."""
    pmf = Pmf(p)
    check_distribution(noise, pmf, ALPHA / 3)
    check_stddev(noise, p, pmf, ALPHA / 3)
    check_coverage(noise, p, pmf, ALPHA / 3)


def draws(p: privacy.NoisePlan, sens: privacy.Sensitivity, calls: int) -> IntArray:
    """Noise of ``calls`` production draws on a fixed, non-trivial exact vector."""
    exact = (np.arange(sens.length, dtype=np.int64) * 37) % 5000 + 1000
    noise = dp.OpenDPNoise()
    return np.concatenate([noise.draw(exact, p, sens) - exact for _ in range(calls)])


# Tests -----------------------------------------------------------------------------------------------------


def test_the_bounds_are_sound() -> None:
    """The Chernoff thresholds bracket the mean and agree with the normal approximation's ballpark."""
    n, p = 20_000, 0.05
    hi, lo = binomial_upper(n, p, 1e-7), binomial_lower(n, p, 1e-7)
    sd = math.sqrt(n * p * (1 - p))
    assert n * p + 5 * sd < hi < n * p + 8 * sd and n * p - 8 * sd < lo < n * p - 5 * sd


def test_discrete_laplace_scalar() -> None:
    """20,000 production cohort counts at b = 2 (epsilon 0.5). False failure <= 1e-7."""
    sens = KINDS[Kind.COHORT_COUNT].sensitivity(1)
    p = privacy.plan(sens, Decimal("0.5"), Decimal(0))
    assert (p.mechanism, p.scale) == ("discrete_laplace", 2.0)
    run_checks(draws(p, sens, 20_000), p)


def test_discrete_laplace_vector() -> None:
    """50 production allele-frequency releases over 1,000 variants (2,000 values each, b = 2,000 at
    epsilon 1, delta 0): 100,000 draws. False failure <= 1e-7."""
    sens = KINDS[Kind.ALLELE_FREQUENCY].sensitivity(1000)
    p = privacy.plan(sens, Decimal(1), Decimal(0))
    assert p.mechanism == "discrete_laplace"
    run_checks(draws(p, sens, 50), p)


def test_discrete_gaussian_small_sigma() -> None:
    """sigma = 0.8, where the discrete Gaussian's stddev (summed from its pmf) is ~4e-5 below sigma:
    40 draws of 500-vectors, 20,000 values. False failure <= 1e-7."""
    # A hand-made plan: only the sampler is under test here, so its charge fields are irrelevant.
    sens = privacy.Sensitivity(l1=2, l2=2.0, length=500)
    sigma = 0.8
    p = privacy.NoisePlan(
        "discrete_gaussian",
        sigma,
        privacy.discrete_gaussian_stddev(sigma),
        float(opendp.discrete_gaussian_scale_to_accuracy(sigma, 0.05)),
        Decimal(1),
        Decimal("1e-6"),
    )
    assert p.stddev < sigma * (1 - 1e-5)
    run_checks(draws(p, sens, 40), p)


def test_discrete_gaussian_vector() -> None:
    """50 production case/control releases over 500 variants (2,000 values each) at epsilon 1, delta 1e-6
    (sigma ~ 200): 100,000 draws. False failure <= 1e-7."""
    sens = KINDS[Kind.CASE_CONTROL].sensitivity(500)
    p = privacy.plan(sens, Decimal(1), Decimal("1e-6"))
    assert p.mechanism == "discrete_gaussian"
    run_checks(draws(p, sens, 50), p)
