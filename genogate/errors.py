"""One error hierarchy for every genogate process.

Each wire-facing class carries its gRPC status code, a stable ``Reason`` (mirrored one-to-one by the
``genogate.v1.ErrorReason`` proto enum) and a fixed public message. Anything specific (which file, which
field) goes into ``detail``, which is logged and shown to a *local* operator but never sent over the wire
and never contains data values derived from genotypes or participants.

Local errors (ingest, store, configuration) are ``LocalError`` subclasses with a process exit code; the CLIs
print them as one line and exit with that code instead of a stack trace.

gRPC itself is imported on first use of a status code (``code``, ``class_for_status``), not here: every
command line imports this module, and most of their commands (``--help``, offline ones) never touch gRPC.
"""

from __future__ import annotations

import decimal
import enum
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import grpc


class Reason(enum.IntEnum):
    """Stable, matchable error reasons. Values are the ``genogate.v1.ErrorReason`` numbers."""

    UNSPECIFIED = 0
    # INVALID_ARGUMENT
    INVALID_QUERY = 1
    INVALID_FILTER = 2
    INVALID_VARIANT = 3
    INVALID_REGION = 4
    INVALID_EPSILON = 5
    TOO_MANY_VARIANTS = 6
    INVALID_STUDY = 7
    UNKNOWN_CONTIG = 8
    NOT_COVERED = 9
    UNKNOWN_TERM = 14
    UNKNOWN_LABEL = 15
    # UNAUTHENTICATED
    UNAUTHENTICATED = 10
    BAD_SIGNATURE = 11
    STALE_TIMESTAMP = 12
    REPLAYED_NONCE = 13
    # PERMISSION_DENIED
    GRANT_MISSING = 20
    GRANT_NOT_YET_VALID = 21
    GRANT_EXPIRED = 22
    GRANT_REVOKED = 23
    GRANT_WRONG_SITE = 24
    KIND_NOT_GRANTED = 25
    PURPOSE_REFUSED = 26
    STUDY_REFUSED = 27
    KIND_REFUSED = 28
    UNTRUSTED_COMMITTEE = 29
    RESEARCHER_MISMATCH = 30
    REVOCATION_UNCONFIRMED = 31
    NOT_AUTHORIZED = 32
    # RESOURCE_EXHAUSTED
    BUDGET_EXHAUSTED = 40
    EPSILON_OVER_CAP = 41
    RATE_LIMITED = 42
    RESEARCHER_BUDGET_EXHAUSTED = 43
    NODE_BUDGET_EXHAUSTED = 44
    # ALREADY_EXISTS / NOT_FOUND / FAILED_PRECONDITION
    QUERY_ID_REUSED = 50
    ALREADY_EXISTS = 51
    NOT_FOUND = 52
    FAILED_PRECONDITION = 53
    WRONG_ASSEMBLY = 54
    # transport and server side
    DEADLINE_EXCEEDED = 60
    UNAVAILABLE = 61
    INTERNAL = 62
    STORAGE_FULL = 63


class _Status:
    """A class attribute that is the gRPC status code ``name``, looked up in ``grpc.StatusCode`` when read
    (on the class or an instance): the same ``grpc.StatusCode`` member as a plain attribute would hold."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> grpc.StatusCode:
        import grpc

        return cast("grpc.StatusCode", getattr(grpc.StatusCode, self.name))


def _status(name: str) -> grpc.StatusCode:
    """``code = _status("NOT_FOUND")`` in a class body: reads as ``grpc.StatusCode.NOT_FOUND`` (see ``_Status``);
    a subclass may as well assign a ``grpc.StatusCode`` member itself."""
    status: Any = _Status(name)
    return cast("grpc.StatusCode", status)


class GenogateError(Exception):
    """Base of every error genogate raises on purpose."""

    code: grpc.StatusCode = _status("INTERNAL")
    reason: Reason = Reason.INTERNAL
    message: str = "internal error"
    remote: bool = False
    """True when rebuilt from another process's RPC status (``genogate.rpc.error_from_rpc``)."""

    def __init__(self, detail: str = "", *, reason: Reason | None = None, message: str | None = None):
        if reason is not None:
            self.reason = reason
        if message is not None:
            self.message = message
        self.detail = detail
        super().__init__(f"{self.message}: {detail}" if detail else self.message)


class InvalidArgument(GenogateError):
    code = _status("INVALID_ARGUMENT")
    reason = Reason.INVALID_QUERY
    message = "the query is malformed"


class Unauthenticated(GenogateError):
    code = _status("UNAUTHENTICATED")
    reason = Reason.UNAUTHENTICATED
    message = "the caller could not be authenticated"


class PermissionDenied(GenogateError):
    code = _status("PERMISSION_DENIED")
    reason = Reason.NOT_AUTHORIZED
    message = "the study grant does not permit this query"


class ResourceExhausted(GenogateError):
    code = _status("RESOURCE_EXHAUSTED")
    reason = Reason.BUDGET_EXHAUSTED
    message = "the study's privacy budget at this site is exhausted"


class AlreadyExists(GenogateError):
    code = _status("ALREADY_EXISTS")
    reason = Reason.QUERY_ID_REUSED
    message = "the query id was already used with a different query"


class NotFound(GenogateError):
    code = _status("NOT_FOUND")
    reason = Reason.NOT_FOUND
    message = "not found"


class FailedPrecondition(GenogateError):
    code = _status("FAILED_PRECONDITION")
    reason = Reason.FAILED_PRECONDITION
    message = "the operation is not allowed in the current state"


class DeadlineExceeded(GenogateError):
    code = _status("DEADLINE_EXCEEDED")
    reason = Reason.DEADLINE_EXCEEDED
    message = "the deadline passed before the site answered"


class Unavailable(GenogateError):
    code = _status("UNAVAILABLE")
    reason = Reason.UNAVAILABLE
    message = "the site is unavailable"


class Internal(GenogateError):
    code = _status("INTERNAL")
    reason = Reason.INTERNAL
    message = "internal error"


# Local (never on the wire) -------------------------------------------------------------------------------


class LocalError(GenogateError):
    """An error reported to a local operator; ``exit_code`` is what the CLI exits with."""

    exit_code = 1
    message = "error"

    def __str__(self) -> str:
        return self.detail or self.message


class UsageError(LocalError):
    """Bad command-line arguments (argparse uses 2 as well)."""

    exit_code = 2
    message = "usage error"


class ConfigError(LocalError):
    exit_code = 3
    message = "configuration error"


class IngestError(LocalError):
    """Bad input to ingest. ``where`` names the file (and line when known); the store is left untouched."""

    exit_code = 4
    message = "ingest failed"

    def __init__(self, where: str, why: str):
        self.where = where
        self.why = why
        super().__init__(f"{where}: {why}")


class StoreError(LocalError):
    exit_code = 5
    message = "store error"


def name_list(names: Iterable[str], *, most: int = 20, width: int = 64) -> str:
    """Names for a public message, e.g. the sites a grant names: comma-separated, each cut to ``width``
    characters, at most ``most`` of them (then "and N more"), "(none)" when empty. Messages echo what the
    caller sent or what is public policy, never data values; this keeps them short whatever the caller sent."""
    items = [n[:width] for n in names]
    shown = ", ".join(items[:most]) or "(none)"
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def number(value: Decimal | float | int) -> str:
    """A privacy parameter or budget figure for a public message: exact and short (0.4, 6, 0.000001, 1e-12):
    no trailing zeros, exponent form below 1e-6 or past 16 characters."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not d.is_finite():
        return str(value)
    d = d.normalize(_WIDE)
    text = format(d, "f")
    return format(d, "g") if d and (d.adjusted() < -6 or len(text) > 16) else text


_WIDE = decimal.Context(prec=60)


_WIRE_CLASSES: tuple[type[GenogateError], ...] = (
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    ResourceExhausted,
    AlreadyExists,
    NotFound,
    FailedPrecondition,
    DeadlineExceeded,
    Unavailable,
    Internal,
)


@cache
def _by_code() -> dict[grpc.StatusCode, type[GenogateError]]:
    return {cls.code: cls for cls in _WIRE_CLASSES}


def class_for_status(code: grpc.StatusCode) -> type[GenogateError]:
    """The error class the client rebuilds for a status code (INTERNAL for anything unknown)."""
    return _by_code().get(code, Internal)
