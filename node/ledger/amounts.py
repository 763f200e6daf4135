"""The ledger's exact arithmetic and argument checks: ε and δ are ``Decimal`` at the API and integers in units of
1e-12 in the file; charges are rounded *up* to the next unit (never under-charge), caps *down* (never
over-grant). Also the rolling budget window's first UTC day, and the checks on ids and hashes every call
makes before it touches the file."""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

from genogate.errors import InvalidArgument, Reason, number

UNIT_EXPONENT = 12
"""Amounts are stored as integers in units of 10**-UNIT_EXPONENT."""
_SCALE: int = 10**UNIT_EXPONENT
MAX_AMOUNT = Decimal(10**6)
"""Largest ε, δ or cap accepted (10**18 units; sums of two stay far inside SQLite's signed 64 bits)."""
DAY_MS = 86_400_000
MAX_PERIOD_DAYS = 3660
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_ID_LEN = 256
# Decimal results are formed in a private context: a caller's thread-local precision must not round them.
_CTX = decimal.Context(prec=50)


def amount(units: int) -> Decimal:
    """Units as a Decimal without trailing zeros (exact: 1e-12 units have at most 12 decimal places)."""
    whole, frac = divmod(units, _SCALE)
    return Decimal(whole) if frac == 0 else Decimal(units).scaleb(-UNIT_EXPONENT, _CTX).normalize(_CTX)


def units(value: Decimal, what: str, *, up: bool) -> int:
    """``value`` in 1e-12 units, rounded up (charges) or down (caps), computed exactly from its ratio."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a decimal.Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise InvalidArgument(
            f"{what} must be a finite Decimal in [0, {MAX_AMOUNT}], got {value}",
            reason=Reason.INVALID_EPSILON,
            message=f"{what} {number(value)} is out of range: it must be a finite number from 0 to "
            f"{number(MAX_AMOUNT)}",
        )
    if value == 0:
        return 0
    if value.adjusted() < -UNIT_EXPONENT:  # 0 < value < 1e-12; avoids a huge exact denominator
        return 1 if up else 0
    num, den = value.as_integer_ratio()
    scaled = num * _SCALE
    return -(-scaled // den) if up else scaled // den


def check_id(value: str, what: str, reason: Reason) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_LEN:
        raise InvalidArgument(f"{what} must be a string of 1-{_MAX_ID_LEN} characters", reason=reason)


def check_sha256(value: str, what: str) -> None:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidArgument(f"{what} must be 64 lowercase hex digits")


def first_day(now_ms: int, period_days: int) -> int:
    """The first UTC day whose charges count in the window of ``period_days`` ending at ``now_ms``: the
    window covers every charge made after ``now_ms - period_days`` days (and, by whole days, up to one day
    more)."""
    if isinstance(period_days, bool) or not isinstance(period_days, int) or not 1 <= period_days <= MAX_PERIOD_DAYS:
        raise InvalidArgument(f"period_days must be an int in [1, {MAX_PERIOD_DAYS}], got {period_days!r}")
    return now_ms // DAY_MS - period_days
