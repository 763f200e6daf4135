"""Noise planning, shared by node and coordinator: sensitivities, noise plans, privacy maps, interval half-widths.

Unit of privacy: one participant at one node; neighbouring datasets add or remove one participant. A node
hands its exact integer vectors to ``node.dp``, which draws the noise this module plans; the coordinator's
preview plans here too (expected interval half-widths at a study's per-query cap), without drawing.

**Sensitivities**: each kind declares its own (``QueryKind.sensitivity`` in its module of ``genogate.kinds``)
with the constructors here (``one_value``, ``class_counts``, ``allele_pairs``). For reference, what the kinds
declare (``k`` is the number of requested variants):

* cohort count, carrier count: one value that one participant moves by at most 1 (L1 = L2 = 1).
* genotype counts of one variant: 6 class counts (hom-ref, het, hom-alt, hemi-ref, hemi-alt, no-call); a
  participant sits in exactly one class, so adding one moves one entry by 1 (L1 = L2 = 1).
* allele frequency over ``k`` variants: per variant the pair (ALT allele count, REF allele count). A
  participant moves a pair by (a, r) with a, r >= 0 and a + r <= 2 (diploid 2, haploid 1, no-call 0), so
  by at most 2 in L1 and at most 2 in L2 (a^2 + r^2 <= 4). Over ``k`` variants: L1 = 2k, L2 = 2*sqrt(k).
  AC = alt and AN = alt + ref are post-processing. Releasing AC and AN directly would cost L1 = 4 per
  variant (both move by up to 2), so the alt/ref parametrisation halves the noise for the same epsilon.
* case/control over ``k`` variants: (case alt, case ref, control alt, control ref) per variant; a
  participant is in at most one arm, so only one of the two pairs moves: L1 = 2k, L2 = 2*sqrt(k).

**Mechanisms**. Integer inputs always get OpenDP's exact discrete mechanisms on ``i64`` vectors, never
floating-point noise (Mironov 2012). The default is the discrete Laplace mechanism with scale b = L1 / epsilon,
which is pure epsilon-DP (delta = 0). When the node grants a per-query delta > 0 and the release is a vector,
the discrete Gaussian is also considered: it is zCDP with rho = (L2 / sigma)^2 / 2, converted to
(epsilon, delta)-DP by OpenDP (``make_zCDP_to_approxDP`` then ``make_fix_delta``); ``plan`` picks the
smallest sigma whose converted epsilon is at most the requested one, and uses it only when its standard
deviation is below the Laplace one (for k variants the Laplace scale grows like k, the Gaussian like sqrt(k)).

**Soundness of the arithmetic**. What the ledger charges is the requested ``Decimal`` epsilon (and delta).
Every plan is checked against OpenDP's own privacy map of the very measurement used to draw: the scale is
nudged upwards until ``Decimal(map(d_in)) <= epsilon`` holds exactly (OpenDP rounds its maps up, and e.g.
``float(0.01) > Decimal("0.01")``). The L2 distance is given to OpenDP as an ``f64`` (OpenDP accepts an
``L2Distance<f64>`` metric on ``i64`` vectors), rounded *up* to a float at least 2*sqrt(k); no integer
ceiling is needed.

**Threading**. Everything here is immutable or an ``functools.lru_cache``; OpenDP measurements are
stateless, safe to share between threads, and release the GIL while sampling.

There is deliberately no way to switch noise off: tests of other modules inject their own ``node.dp.Noise``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final, Literal

import numpy as np
import opendp.prelude as dp

from genogate.errors import Internal, InvalidArgument, Reason, number

dp.enable_features("contrib")

Mechanism = Literal["discrete_laplace", "discrete_gaussian"]
LAPLACE: Final = "discrete_laplace"
GAUSSIAN: Final = "discrete_gaussian"

_CI_ALPHA: Final = 0.05
_NUDGES: Final = 200  # upward scale adjustments before giving up (a handful are ever needed)
_REL_TOL: Final = 1e-9  # relative precision of the Gaussian sigma search
MAX_SCALE: Final = 1e6
"""Largest noise scale a plan may have. Noise that wide answers nothing (a count of every person alive would
drown in it), and planning and drawing cost grows with it (the discrete Gaussian's interval sums its pmf: about
0.7 s at 1e6, 7 s at 1e7), so a request that would need more is refused as INVALID_EPSILON before anything is
charged: decided from epsilon, delta and the query's shape alone."""
MAX_EPSILON: Final = Decimal(10**6)
"""Largest epsilon ``plan`` accepts (the ledger's largest amount)."""
_DG_EXACT_BELOW: Final = 4.0  # sigma below which the discrete Gaussian's stddev is summed from its pmf


@dataclass(frozen=True)
class Sensitivity:
    """How far one participant can move a release: ``l1`` and ``l2`` over a vector of ``length`` values.

    ``l2`` must be a float *at least* the true L2 sensitivity (the constructors round it up)."""

    l1: int
    l2: float
    length: int


@functools.lru_cache(maxsize=4096)
def _sqrt_up(n: int) -> float:
    """The smallest float >= sqrt(n) (``math.sqrt`` rounds to nearest, which may be below)."""
    r = math.sqrt(n)
    return r if Fraction(r) ** 2 >= n else math.nextafter(r, math.inf)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"a per-variant release needs at least one variant, got k={k}")


def one_value() -> Sensitivity:
    """One value that one participant moves by at most 1 (a count of participants): L1 = L2 = 1."""
    return Sensitivity(l1=1, l2=1.0, length=1)


def class_counts(classes: int) -> Sensitivity:
    """Counts of ``classes`` disjoint classes, each participant in exactly one: adding one moves one entry by
    1, L1 = L2 = 1."""
    return Sensitivity(l1=1, l2=1.0, length=classes)


def allele_pairs(k: int, pairs_per_variant: int = 1) -> Sensitivity:
    """k variants, ``pairs_per_variant`` (alt, ref) pairs each, of which one participant moves at most one
    by (a, r), a + r <= 2: L1 = 2k, L2 = sqrt(k * 2^2) = 2*sqrt(k). ``ValueError`` for k < 1."""
    _check_k(k)
    return Sensitivity(l1=2 * k, l2=2.0 * _sqrt_up(k), length=2 * pairs_per_variant * k)


@dataclass(frozen=True)
class NoisePlan:
    """How one release is noised and what it costs.

    ``scale`` is the OpenDP scale (Laplace b or Gaussian sigma) of every value's independent noise;
    ``stddev`` the exact standard deviation of one draw; ``ci95_halfwidth`` the per-value (not simultaneous)
    95% half-width from OpenDP's accuracy helpers; ``epsilon``/``delta`` what the ledger charges, exactly
    the requested values (``privacy_loss`` of the measurement is at most these)."""

    mechanism: Mechanism
    scale: float
    stddev: float
    ci95_halfwidth: float
    epsilon: Decimal
    delta: Decimal


def _float_at_most(x: Decimal) -> float:
    """The largest float <= x, so that a float handed to OpenDP never exceeds a charged Decimal."""
    f = float(x)
    return math.nextafter(f, -math.inf) if Decimal(f) > x else f


def discrete_laplace_stddev(scale: float) -> float:
    """sqrt(Var) of the discrete Laplace with P(k) proportional to exp(-|k|/b): sqrt(2q)/(1-q), q = e^(-1/b)."""
    q = math.exp(-1.0 / scale)
    return math.sqrt(2.0 * q) / -math.expm1(-1.0 / scale)


def discrete_gaussian_stddev(sigma: float) -> float:
    """sqrt(Var) of the discrete Gaussian with P(k) proportional to exp(-k^2 / (2 sigma^2)).

    Below ``_DG_EXACT_BELOW`` the pmf is summed over |k| <= 40*sigma + 40 (the rest weighs < e^-800).
    Above, sigma itself is returned: by Poisson summation (Canonne, Kamath, Steinke 2020) the variance is
    sigma^2 * (1 - O(sigma^2 * exp(-2 pi^2 sigma^2))), a relative error below 1e-130 for sigma >= 4, far
    under float precision."""
    if sigma >= _DG_EXACT_BELOW:
        return sigma
    k = np.arange(-math.ceil(40 * sigma) - 40, math.ceil(40 * sigma) + 41, dtype=np.float64)
    w = np.exp(-(k**2) / (2.0 * sigma**2))
    return math.sqrt(float(np.sum(w * k**2) / np.sum(w)))


@functools.lru_cache(maxsize=4096)
def _accuracy(mechanism: Mechanism, scale: float, alpha: float) -> float:
    # Cached: the discrete Gaussian helper sums its pmf, ~60 ms at sigma = 1e5.
    if mechanism == LAPLACE:
        h = float(dp.discrete_laplacian_scale_to_accuracy(scale, alpha))
    else:
        h = float(dp.discrete_gaussian_scale_to_accuracy(scale, alpha))
    # At a vanishing scale the helpers return -inf: the noise is then 0 but for a negligible probability.
    return h if math.isfinite(h) and h > 0 else 0.0


def halfwidth(p: NoisePlan, alpha: float) -> float:
    """Half-width h of a per-value interval: P(|noise| >= h) <= alpha (OpenDP's accuracy helpers)."""
    return _accuracy(p.mechanism, p.scale, float(alpha))


# Measurements -----------------------------------------------------------------------------------------------


def _build(mechanism: Mechanism, scale: float, length: int) -> dp.Measurement:
    domain = dp.vector_domain(dp.atom_domain(T="i64"), size=length)
    if mechanism == LAPLACE:
        return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale=scale)
    return dp.m.make_gaussian(domain, dp.l2_distance(T="f64"), scale=scale)


@functools.lru_cache(maxsize=1024)
def _cached(mechanism: Mechanism, scale: float, length: int) -> dp.Measurement:
    return _build(mechanism, scale, length)


def measurement(p: NoisePlan, sens: Sensitivity) -> dp.Measurement:
    """The OpenDP measurement that draws ``p``'s noise on a vector of ``sens.length`` i64 values: discrete
    Laplace (``MaxDivergence``, metric L1 over i64) or discrete Gaussian (``ZeroConcentratedDivergence``,
    metric L2 over f64). Cached by (mechanism, scale, length); ``node.dp.OpenDPNoise`` draws with exactly this."""
    return _cached(p.mechanism, p.scale, sens.length)


def _map(m: dp.Measurement, d_in: float) -> Any:
    """OpenDP's privacy map (``Measurement.map`` is untyped upstream)."""
    return m.map(d_in)  # type: ignore[no-untyped-call]


def _approx(m: dp.Measurement, delta: Decimal) -> dp.Measurement:
    """zCDP -> (epsilon, delta)-DP at a fixed delta no larger than the charged one."""
    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(m), _float_at_most(delta))


def _loss(m: dp.Measurement, mechanism: Mechanism, sens: Sensitivity, delta: Decimal) -> tuple[Decimal, Decimal]:
    if mechanism == LAPLACE:
        return Decimal(_map(m, sens.l1)), Decimal(0)
    eps, d = _map(_approx(m, delta), sens.l2)
    return Decimal(eps), Decimal(d)


def privacy_loss(p: NoisePlan, sens: Sensitivity) -> tuple[Decimal, Decimal]:
    """(epsilon, delta) that OpenDP's privacy map gives for ``measurement(p, sens)`` at the declared
    sensitivity: L1 through the Laplace map; L2 through the Gaussian's zCDP map, ``make_zCDP_to_approxDP``
    and ``make_fix_delta`` at ``p.delta``. ``plan`` guarantees both are at most ``(p.epsilon, p.delta)``."""
    return _loss(measurement(p, sens), p.mechanism, sens, p.delta)


def _fits(mechanism: Mechanism, scale: float, sens: Sensitivity, epsilon: Decimal, delta: Decimal) -> bool:
    eps, d = _loss(_build(mechanism, scale, sens.length), mechanism, sens, delta)
    return eps <= epsilon and d <= delta


def _nudge_up(mechanism: Mechanism, scale: float, sens: Sensitivity, epsilon: Decimal, delta: Decimal) -> float:
    """Raise ``scale`` by ulps, then by growing relative steps, until OpenDP's map fits the charge."""
    for i in range(_NUDGES):
        if _fits(mechanism, scale, sens, epsilon, delta):
            return scale
        scale = math.nextafter(scale, math.inf) if i < 8 else scale * (1.0 + 2.0 ** (i - 60))
    raise Internal(f"no {mechanism} scale fits epsilon={epsilon}, delta={delta} for {sens}")


def _too_noisy(epsilon: Decimal, sens: Sensitivity) -> InvalidArgument:
    return InvalidArgument(
        f"epsilon={epsilon} needs a noise scale above {MAX_SCALE:g} for {sens}",
        reason=Reason.INVALID_EPSILON,
        message=f"epsilon is too small for this query: at ε {number(epsilon)} its noise would exceed a scale of "
        f"{MAX_SCALE:g}; ask a larger ε",
    )


def _laplace_plan(sens: Sensitivity, epsilon: Decimal) -> NoisePlan:
    if Decimal(sens.l1) / epsilon > Decimal(MAX_SCALE):
        raise _too_noisy(epsilon, sens)
    scale = _nudge_up(LAPLACE, float(Decimal(sens.l1) / epsilon), sens, epsilon, Decimal(0))
    return NoisePlan(
        LAPLACE, scale, discrete_laplace_stddev(scale), _accuracy(LAPLACE, scale, _CI_ALPHA), epsilon, Decimal(0)
    )


def _gaussian_delta(l2: float, sigma: float, eps: float) -> float:
    """delta(eps) of OpenDP's zCDP -> approxDP privacy profile for sigma at d_in = l2 (a quick proxy)."""
    g = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="f64"), scale=sigma)
    return float(_map(dp.c.make_zCDP_to_approxDP(g), l2).delta(eps))


@functools.lru_cache(maxsize=1024)
def _gaussian_sigma(l2: float, epsilon: Decimal, delta: Decimal) -> float:
    """About the smallest sigma whose (epsilon', delta) conversion has epsilon' <= epsilon, by bisection.

    The search compares the profile's delta(epsilon) (cheap, closed form) to delta; ``plan`` then checks
    the exact ``make_fix_delta`` chain (which solves epsilon(delta) numerically) and nudges sigma upward if
    needed. The bracket starts from Bun & Steinke's conversion epsilon = rho + 2 sqrt(rho ln(1/delta)), which
    OpenDP's (tighter) conversion beats, so that sigma already fits."""
    eps_f, delta_f = _float_at_most(epsilon), _float_at_most(delta)

    def ok(sigma: float) -> bool:
        return _gaussian_delta(l2, sigma, eps_f) <= delta_f

    log_inv_delta = -math.log(delta_f)
    rho = (math.sqrt(log_inv_delta + eps_f) - math.sqrt(log_inv_delta)) ** 2
    if rho <= 0 or l2 / math.sqrt(2.0 * rho) > 4 * MAX_SCALE:  # already far too noisy (rho underflows at ~1e-15)
        return math.inf
    hi = l2 / math.sqrt(2.0 * rho)
    for _ in range(64):
        if ok(hi):
            break
        hi *= 2.0
    lo = hi / 2.0
    for _ in range(64):
        if not ok(lo):
            break
        hi, lo = lo, lo / 2.0
    while hi - lo > _REL_TOL * hi:
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _gaussian_plan(sens: Sensitivity, epsilon: Decimal, delta: Decimal) -> NoisePlan:
    sigma = _gaussian_sigma(sens.l2, epsilon, delta)
    if sigma > MAX_SCALE:
        raise _too_noisy(epsilon, sens)
    sigma = _nudge_up(GAUSSIAN, sigma, sens, epsilon, delta)
    return NoisePlan(
        GAUSSIAN, sigma, discrete_gaussian_stddev(sigma), _accuracy(GAUSSIAN, sigma, _CI_ALPHA), epsilon, delta
    )


def _check(epsilon: Decimal, delta: Decimal) -> None:
    if not (epsilon.is_finite() and 0 < epsilon <= MAX_EPSILON):
        raise InvalidArgument(
            f"epsilon={epsilon}",
            reason=Reason.INVALID_EPSILON,
            message=f"epsilon must be a positive number at most {number(MAX_EPSILON)}: the query asks "
            f"ε {number(epsilon)}",
        )
    if not (delta.is_finite() and 0 <= delta < 1):
        raise ValueError(f"delta must be in [0, 1), got {delta}")


@functools.lru_cache(maxsize=4096)
def _plan(sens: Sensitivity, epsilon: Decimal, delta: Decimal) -> NoisePlan:
    plans: list[NoisePlan] = []
    refusal: InvalidArgument | None = None
    for mechanism in (LAPLACE, GAUSSIAN):
        try:
            plans.append(_laplace_plan(sens, epsilon) if mechanism == LAPLACE else _gaussian_plan(sens, epsilon, delta))
        except InvalidArgument as exc:  # this mechanism's noise would be too wide; the other may fit
            refusal = exc
        except dp.OpenDPException as exc:  # OpenDP cannot map this mechanism here (its conversion overflows)
            refusal = InvalidArgument(
                f"epsilon={epsilon}, delta={delta} for {sens}: {str(exc).strip()[:200]}",
                reason=Reason.INVALID_EPSILON,
                message="epsilon is outside the range the noise mechanisms support",
            )
        if delta == 0 or sens.length == 1:
            break
    if not plans:
        assert refusal is not None
        raise refusal
    return min(plans, key=lambda p: p.stddev)


def plan(sens: Sensitivity, epsilon: Decimal, delta: Decimal) -> NoisePlan:
    """The noise for one release that costs exactly ``epsilon`` (and ``delta``, if the Gaussian is chosen).

    Discrete Laplace with b = l1 / epsilon by default (pure DP, delta charged 0). With ``delta > 0`` and a
    vector release, the discrete Gaussian with the smallest sigma that fits (epsilon, delta) is used iff its
    stddev is smaller. Scales are nudged up until OpenDP's own map fits. Cached per (sens, epsilon, delta).
    Raises ``InvalidArgument`` (INVALID_EPSILON) for an epsilon outside (0, ``MAX_EPSILON``] or one so small
    that every mechanism's scale would exceed ``MAX_SCALE``."""
    _check(epsilon, delta)
    return _plan(sens, epsilon, delta)
