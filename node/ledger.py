"""The node's privacy-budget ledger: one SQLite file per node, the only authority on what a study spent here.

Guarantees (DESIGN.md, "Privacy semantics"):

* **Charge before noise, durably.** ``begin()`` returns ``Charged`` only after the charge is committed in WAL
  mode with ``synchronous=FULL`` (the WAL is fsynced by that commit). A crash after that still counts.
* **No overspend.** "spent + charge <= cap" is checked and the charge inserted inside one
  ``BEGIN IMMEDIATE`` transaction, which holds SQLite's single write lock, across processes too.
* **Same question, same answer, within a consent epoch.** One charge per (study, canonical query, consent
  epoch). Its result, once stored, is the only value ever released for it (the first ``complete()`` wins;
  later draws are discarded unreleased), and other query ids asking the same canonical query in the same
  epoch get it at zero cost. A query id keeps its first answer whatever the epoch (idempotent retries).
* **Budgets above the study.** Every charge is attributed to a researcher (a grant's researcher key
  fingerprint, or ``cn:<common name>`` for a local study) and, in the same transaction that checks the study's
  cap, checked against the researcher's cap across all their studies and the node's cap across everyone,
  each over a rolling window of ``period_days``. Totals are kept per UTC day (``researcher_days``,
  ``node_days``) in the charging transaction, so a check sums at most ``period_days + 1`` rows whatever the
  history: the window is the charge's UTC day and the ``period_days`` days before it (a charge stops counting
  between ``period_days`` and ``period_days + 1`` days after it was made: never early).
* **Callers own their query ids.** A query id (and the signed bytes behind it) is answered again only to the
  certificate common name that first sent it; anyone else gets REPLAYED_NONCE.
* **Exact arithmetic.** ε and δ are ``Decimal`` at the API and integers in units of 1e-12 in the file:
  charges are rounded *up* to the next unit (never under-charge), caps *down* (never over-grant).
* **Append-only.** Triggers refuse deleting rows, changing a charge, replacing a stored result and lowering
  a study's spent total, so a bug cannot give budget back.

**Results survive a process crash; a machine crash costs a second charge, never a free second draw.** The
caller releases what ``complete()`` returns, and a result lost after its release would make a retry draw
fresh noise: two noisy values for one charge. ``complete()`` commits without its own fsync (WAL,
``synchronous=NORMAL``, on Linux where the boot can be identified): the WAL write is in the kernel's page
cache, which a killed process cannot lose, and the next durable commit (any charge, or ``close()``) syncs
it. Only an operating-system crash or power loss can drop such a tail. The ledger records the boot it runs
under and whether it was closed cleanly; opened after an unclean stop *under another boot*, it treats every
charge without a result as possibly released, and a retry of one is charged again (``recharges``) before it
draws. After a process crash on the same boot, a retry of an interrupted query completes it at no cost, as
its draw was never released. Elsewhere (no boot id) ``complete()`` syncs like ``begin()``.

``canonical_sha256`` identifies the question (the service hashes the canonical query, not ε or δ): the
ledger treats equal hashes under one study in one consent epoch as the same question and answers a repeat
with the stored release, whatever ε the repeat asks for, so neither repeating a question nor varying its ε
buys a fresh draw.

**Consent epochs** (``register_epoch``): the node registers its store's cohort fingerprint (participants,
their attributes and consent) when it starts. The same fingerprint as the latest epoch's continues that
epoch; any other starts the next epoch, *including a fingerprint an earlier epoch had*: an epoch is an
uninterrupted span of one cohort, never revisited, so a stored answer is served only while the cohort it was
computed on has been in place without a break. (Returning to an old epoch after a withdrawal was reverted
would resurrect answers computed before the withdrawal; the price of never doing so is one more charge per
repeated question after a revert.) Charges made before schema version 4 have epoch 0, which no registered
epoch equals: their answers still answer retries of their own query ids, never a repeat under a new id.

Threading model: a ``Ledger`` is shared by all threads of a process. It owns one ``sqlite3`` connection
(``check_same_thread=False``) guarded by a ``threading.Lock`` held for the whole of each transaction, so
calls from threads of one process run one at a time, without SQLite's sleep-and-retry busy handler between
them. Writes are group-committed: the ``begin``/``complete`` calls that queue up while a transaction is
committing run together in the next one, each in its own savepoint, and share its fsync (each caller still
gets its value only once the COMMIT that holds it has returned). ``sqlite3`` releases the GIL while SQLite
runs, so an fsync stalls only other ledger calls. Across processes (a second node or an operator tool on the
same file) SQLite's write lock serialises ``BEGIN IMMEDIATE``; a caller that cannot get it within
``busy_timeout_s`` gets ``Unavailable`` with nothing recorded (safe to retry with the same query id). WAL
needs shared memory: same host, no network filesystems.
"""

from __future__ import annotations

import contextlib
import decimal
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar

from genogate import audit
from genogate.errors import (
    AlreadyExists,
    GenogateError,
    Internal,
    InvalidArgument,
    Reason,
    ResourceExhausted,
    StoreError,
    Unauthenticated,
)
from genogate.signing import Signer
from genogate.sqlitedb import open_database, read_only, reopen, statements, transaction, write_error

UNIT_EXPONENT = 12
"""Amounts are stored as integers in units of 10**-UNIT_EXPONENT."""
_SCALE: int = 10**UNIT_EXPONENT
MAX_AMOUNT = Decimal(10**6)
"""Largest ε, δ or cap accepted (10**18 units; sums of two stay far inside SQLite's signed 64 bits)."""
_MAX_UNITS = int(MAX_AMOUNT) * _SCALE
APPLICATION_ID = 0x47474C44  # "GGLD" in the SQLite header: marks a genogate ledger
SCHEMA_VERSION = 4
DAY_MS = 86_400_000
MAX_PERIOD_DAYS = 3660
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_ID_LEN = 256
# Decimal results are formed in a private context: a caller's thread-local precision must not round them.
_CTX = decimal.Context(prec=50)

_RECHARGES = """
CREATE TABLE recharges (                -- a charge paid again: its result may have been lost in a machine crash
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    charge_id     INTEGER NOT NULL REFERENCES charges (charge_id),
    query_id      TEXT    NOT NULL,     -- the query id whose retry paid
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units   INTEGER NOT NULL CHECK (delta_units >= 0),
    charged_ms    INTEGER NOT NULL
) STRICT;
CREATE TRIGGER recharges_keep BEFORE DELETE ON recharges
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER recharges_fixed BEFORE UPDATE ON recharges
    BEGIN SELECT RAISE(ABORT, 'a charge never changes'); END;
"""

_CHARGES = """
CREATE TABLE charges (
    charge_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id         TEXT    NOT NULL,
    canonical_sha256 TEXT    NOT NULL,
    query_id         TEXT    NOT NULL,  -- the query id that made (and paid for) the charge
    epsilon_units    INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units      INTEGER NOT NULL CHECK (delta_units >= 0),
    charged_ms       INTEGER NOT NULL,
    result           BLOB,              -- NULL until the first complete()
    completed_ms     INTEGER,
    researcher       TEXT    NOT NULL,  -- who paid: key fingerprint or 'cn:<name>'; '' before v4
    epoch            INTEGER NOT NULL CHECK (epoch >= 0),  -- consent epoch; 0 before v4
    UNIQUE (study_id, canonical_sha256, epoch)
) STRICT;
"""
_CHARGE_TRIGGERS = """
CREATE TRIGGER charges_keep BEFORE DELETE ON charges
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER charges_fixed BEFORE UPDATE OF
    charge_id, study_id, canonical_sha256, query_id, epsilon_units, delta_units, charged_ms, researcher, epoch
    ON charges BEGIN SELECT RAISE(ABORT, 'a charge never changes'); END;
CREATE TRIGGER charges_result_once BEFORE UPDATE OF result, completed_ms ON charges
    WHEN OLD.result IS NOT NULL BEGIN SELECT RAISE(ABORT, 'a stored result is never replaced'); END;
"""
_NODE_WIDE = """
CREATE TABLE researcher_days (          -- ε charged per researcher per UTC day, kept in the charging transaction
    researcher    TEXT    NOT NULL,
    day           INTEGER NOT NULL,     -- charged_ms // 86400000
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    PRIMARY KEY (researcher, day)
) STRICT, WITHOUT ROWID;
CREATE TABLE node_days (                -- ε charged at this node per UTC day, everyone together
    day           INTEGER PRIMARY KEY,
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0)
) STRICT;
CREATE TABLE epochs (                   -- consent epochs: one per uninterrupted span of one cohort
    epoch         INTEGER PRIMARY KEY CHECK (epoch >= 1),
    cohort_sha256 TEXT    NOT NULL,
    first_seen_ms INTEGER NOT NULL
) STRICT;
CREATE TRIGGER researcher_days_keep BEFORE DELETE ON researcher_days
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER researcher_days_grow BEFORE UPDATE ON researcher_days
    WHEN NEW.researcher IS NOT OLD.researcher OR NEW.day IS NOT OLD.day OR NEW.epsilon_units < OLD.epsilon_units
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
CREATE TRIGGER node_days_keep BEFORE DELETE ON node_days
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER node_days_grow BEFORE UPDATE ON node_days
    WHEN NEW.day IS NOT OLD.day OR NEW.epsilon_units < OLD.epsilon_units
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
CREATE TRIGGER epochs_keep BEFORE DELETE ON epochs
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER epochs_fixed BEFORE UPDATE ON epochs
    BEGIN SELECT RAISE(ABORT, 'an epoch never changes'); END;
"""
_CHARGE_COLUMNS = (
    "charge_id, study_id, canonical_sha256, query_id, epsilon_units, delta_units, charged_ms, result, completed_ms"
)
# Every ε paid (charges and recharges) with who paid it and when: what the per-day totals must sum to.
_PAID = (
    "SELECT c.researcher AS researcher, c.charged_ms AS charged_ms, c.epsilon_units AS epsilon_units FROM charges c"
    " UNION ALL SELECT r.researcher, r.charged_ms, r.epsilon_units FROM recharges r"
)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
{CHARGES}
CREATE TABLE queries (                  -- every query id seen: the charging one and zero-cost replays
    study_id       TEXT    NOT NULL,
    query_id       TEXT    NOT NULL,
    payload_sha256 TEXT    NOT NULL,
    charge_id      INTEGER NOT NULL REFERENCES charges (charge_id),
    received_ms    INTEGER NOT NULL,
    caller         TEXT    NOT NULL DEFAULT '',  -- certificate common name that first sent it ('' before v4)
    PRIMARY KEY (study_id, query_id)
) STRICT;
CREATE TABLE spent (                    -- running totals per study, kept in the charging transaction
    study_id      TEXT    PRIMARY KEY,
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units   INTEGER NOT NULL CHECK (delta_units >= 0),
    answered      INTEGER NOT NULL DEFAULT 0 CHECK (answered >= 0)  -- query ids with a stored result
) STRICT;
CREATE INDEX queries_by_charge ON queries (charge_id);
{RECHARGES}
ALTER TABLE recharges ADD COLUMN researcher TEXT NOT NULL DEFAULT '';
{NODE_WIDE}
{AUDIT}
{CHARGE_TRIGGERS}
CREATE TRIGGER queries_keep BEFORE DELETE ON queries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER queries_fixed BEFORE UPDATE ON queries
    BEGIN SELECT RAISE(ABORT, 'a recorded query never changes'); END;
CREATE TRIGGER spent_keep BEFORE DELETE ON spent
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER spent_grows BEFORE UPDATE ON spent
    WHEN NEW.study_id IS NOT OLD.study_id OR NEW.epsilon_units < OLD.epsilon_units
      OR NEW.delta_units < OLD.delta_units OR NEW.answered < OLD.answered
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
"""
for _name, _text in (
    ("{AUDIT}", audit.SCHEMA),
    ("{RECHARGES}", _RECHARGES),
    ("{CHARGES}", _CHARGES),
    ("{CHARGE_TRIGGERS}", _CHARGE_TRIGGERS),
    ("{NODE_WIDE}", _NODE_WIDE),
):
    _SCHEMA = _SCHEMA.replace(_name, _text.strip())

# Version 1 counted answered query ids with a join on every budget read and had no audit log; version 2
# synced every result and had no recharges.
_MIGRATIONS = {
    1: [
        "ALTER TABLE spent ADD COLUMN answered INTEGER NOT NULL DEFAULT 0 CHECK (answered >= 0)",
        "CREATE INDEX queries_by_charge ON queries (charge_id)",
        "DROP TRIGGER spent_grows",
        *[t for t in statements(_SCHEMA) if t.startswith("CREATE TRIGGER spent_grows")],
        "UPDATE spent SET answered = (SELECT count(*) FROM queries q JOIN charges c ON c.charge_id = q.charge_id"
        " WHERE q.study_id = spent.study_id AND c.result IS NOT NULL)",
        *statements(audit.SCHEMA),
    ],
    2: list(statements(_RECHARGES)),
    # Version 3 had one charge per (study, canonical query) whatever the consent epoch, no researcher, caller
    # or node-wide totals. The charges table is rebuilt for its new unique key (foreign keys checked at
    # COMMIT); old charges keep their ids, belong to epoch 0 and to researcher '' (the node cap only).
    3: [
        "PRAGMA defer_foreign_keys = ON",
        "CREATE TEMP TABLE charges_v3 AS SELECT * FROM charges",
        "DROP TABLE charges",
        *statements(_CHARGES),
        f"INSERT INTO charges ({_CHARGE_COLUMNS}, researcher, epoch) SELECT {_CHARGE_COLUMNS}, '', 0 FROM charges_v3",
        "DROP TABLE charges_v3",
        *statements(_CHARGE_TRIGGERS),
        "ALTER TABLE queries ADD COLUMN caller TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE recharges ADD COLUMN researcher TEXT NOT NULL DEFAULT ''",
        *statements(_NODE_WIDE),
        f"INSERT INTO researcher_days SELECT researcher, charged_ms / {DAY_MS}, sum(epsilon_units) FROM ({_PAID})"
        " GROUP BY 1, 2",
        f"INSERT INTO node_days SELECT charged_ms / {DAY_MS}, sum(epsilon_units) FROM ({_PAID}) GROUP BY 1",
    ],
}
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This boot of the machine (Linux; changes at every restart of the kernel), or None where unknown."""
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class BudgetStatus:
    """A study's budget at this node. ``epsilon_cap``/``delta_cap`` are the caps as enforced (rounded down
    to 1e-12); ``queries_answered`` counts distinct query ids with a stored result, zero-cost replays of an
    answered canonical query included, idempotent retries not (they reuse a query id)."""

    study_id: str
    epsilon_cap: Decimal
    epsilon_spent: Decimal
    epsilon_remaining: Decimal
    delta_cap: Decimal
    delta_spent: Decimal
    queries_answered: int
    researcher_epsilon_spent: Decimal = Decimal(0)
    """ε the researcher asked about spent at this node across all studies over the budget window."""


@dataclass(frozen=True)
class Charged:
    """A new durable charge was made (or a suspect one paid again): the caller now draws noise and calls
    ``complete()``. This call paid the ε and δ it asked for."""

    charge_id: int
    epoch: int = field(default=0, compare=False)
    """The consent epoch the charge belongs to."""
    original_epsilon: Decimal = field(default=Decimal(0), compare=False)
    """ε and δ the charge was first made with (by ``original_query_id``)."""
    original_delta: Decimal = field(default=Decimal(0), compare=False)
    original_query_id: str = field(default="", compare=False)


@dataclass(frozen=True)
class Pending:
    """Charged earlier but no result stored yet (the node died between charge and store, or an identical
    query is being computed): the caller computes and calls ``complete()``; this call paid nothing."""

    charge_id: int
    epoch: int = field(default=0, compare=False)
    original_epsilon: Decimal = field(default=Decimal(0), compare=False)
    original_delta: Decimal = field(default=Decimal(0), compare=False)
    original_query_id: str = field(default="", compare=False)


@dataclass(frozen=True)
class Answered:
    """The stored result; this call paid nothing. ``original_query_id`` is the query id that paid for it;
    ``from_store`` is True when the asking query id did not (a zero-cost replay, or a retry of one: a retry
    gets its first answer). ``epoch`` and the original charge describe the charge (not compared)."""

    result: bytes
    original_query_id: str
    from_store: bool
    epoch: int = field(default=0, compare=False)
    original_epsilon: Decimal = field(default=Decimal(0), compare=False)
    original_delta: Decimal = field(default=Decimal(0), compare=False)


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded query id, for operators (``Ledger.history``). A replay shows ε = δ = 0."""

    query_id: str
    payload_sha256: str
    canonical_sha256: str
    charge_id: int
    original_query_id: str
    epsilon_charged: Decimal
    delta_charged: Decimal
    received_ms: int
    answered: bool
    researcher: str = ""
    """Who the charge is attributed to ('' for charges made before schema version 4)."""
    epoch: int = 0
    caller: str = ""


T = TypeVar("T")


class _Ticket(Generic[T]):
    """One queued write: its op, then its value or error once its batch is over."""

    __slots__ = ("op", "durable", "value", "error", "finished")

    def __init__(self, op: Callable[[sqlite3.Connection], T], durable: bool) -> None:
        self.op = op
        self.durable = durable
        self.value: T | None = None
        self.error: BaseException | None = None
        self.finished = False

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set when the op returned


def _amount(units: int) -> Decimal:
    """Units as a Decimal without trailing zeros (exact: 1e-12 units have at most 12 decimal places)."""
    whole, frac = divmod(units, _SCALE)
    return Decimal(whole) if frac == 0 else Decimal(units).scaleb(-UNIT_EXPONENT, _CTX).normalize(_CTX)


def _units(value: Decimal, what: str, *, up: bool) -> int:
    """``value`` in 1e-12 units, rounded up (charges) or down (caps), computed exactly from its ratio."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a decimal.Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise InvalidArgument(
            f"{what} must be a finite Decimal in [0, {MAX_AMOUNT}], got {value}",
            reason=Reason.INVALID_EPSILON,
            message="a privacy parameter is out of range",
        )
    if value == 0:
        return 0
    if value.adjusted() < -UNIT_EXPONENT:  # 0 < value < 1e-12; avoids a huge exact denominator
        return 1 if up else 0
    num, den = value.as_integer_ratio()
    scaled = num * _SCALE
    return -(-scaled // den) if up else scaled // den


def _check_id(value: str, what: str, reason: Reason) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID_LEN:
        raise InvalidArgument(f"{what} must be a string of 1-{_MAX_ID_LEN} characters", reason=reason)


def _check_sha256(value: str, what: str) -> None:
    if not isinstance(value, str) or not _SHA256_RE.fullmatch(value):
        raise InvalidArgument(f"{what} must be 64 lowercase hex digits")


_ROW = "c.charge_id, c.query_id, c.result, c.epoch, c.epsilon_units, c.delta_units"


@dataclass(frozen=True)
class _ChargeRow:
    charge_id: int
    query_id: str
    result: bytes | None
    epoch: int
    epsilon: Decimal
    delta: Decimal

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _ChargeRow:
        cid, qid, result, epoch, eps, dlt = row
        return cls(cid, qid, None if result is None else bytes(result), epoch, _amount(eps), _amount(dlt))


def _first_day(now_ms: int, period_days: int) -> int:
    """The first UTC day whose charges count in the window of ``period_days`` ending at ``now_ms``: the
    window covers every charge made after ``now_ms - period_days`` days (and, by whole days, up to one day
    more)."""
    if isinstance(period_days, bool) or not isinstance(period_days, int) or not 1 <= period_days <= MAX_PERIOD_DAYS:
        raise InvalidArgument(f"period_days must be an int in [1, {MAX_PERIOD_DAYS}], got {period_days!r}")
    return now_ms // DAY_MS - period_days


def _db_error(exc: sqlite3.Error, doing: str, path: Path) -> GenogateError:
    return write_error(exc, "ledger", doing, path)


class _Undone(Exception):
    """Raised out of a batch of one whose op failed: its transaction rolls back, the op's caller gets the
    op's own error."""


class Ledger:
    """The budget ledger in one SQLite file (see the module docstring for guarantees and threading)."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float = 10.0,
        audit_signer: Signer | None = None,
        boot: Callable[[], str | None] = boot_id,
    ) -> None:
        """Open ``path``, creating the file and schema if absent. Refuse, with ``StoreError`` and without
        touching it, anything that is not a genogate ledger of this schema version.

        With ``audit_signer``, calls given an ``audit`` entry append it to the file's audit log
        (``genogate.audit``), signed, in the same transaction as what it records: a stored result and its
        audit entry commit together or not at all."""
        self.path = Path(path)
        self._audit_signer = audit_signer
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket[Any]] = []
        self._conn: sqlite3.Connection | None = open_database(
            self.path,
            what="ledger",
            application_id=APPLICATION_ID,
            schema_version=SCHEMA_VERSION,
            schema=statements(_SCHEMA),
            busy_timeout_s=busy_timeout_s,
            on_create=lambda conn: conn.execute("INSERT INTO meta VALUES ('unit', ?)", (f"1e-{UNIT_EXPONENT}",)),
            migrations=_MIGRATIONS,
        )
        self._boot = boot()
        # Results are committed without an fsync (synchronous=NORMAL) where the boot is known: through a
        # second connection, so neither connection ever switches its setting (a PRAGMA per commit).
        self._lazy: sqlite3.Connection | None = None
        if self._boot is not None:
            try:
                self._lazy = reopen(self.path, what="ledger", synchronous="NORMAL", busy_timeout_s=busy_timeout_s)
            except BaseException:
                self._conn.close()
                raise
        self._suspect: set[int] = set()  # charges without a result whose release a machine crash may have lost
        with self._transaction("opening") as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('boot_id', 'open')").fetchall())
            if meta.get("open") == "1" and meta.get("boot_id") and meta.get("boot_id") != self._boot:
                self._suspect = {c for (c,) in conn.execute("SELECT charge_id FROM charges WHERE result IS NULL")}
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("boot_id", self._boot or ""), ("open", "1")],
            )

    # Transactions ----------------------------------------------------------------------------------------

    def _transaction(
        self, doing: str, *, immediate: bool = True
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Run the body in one transaction under the in-process lock; commit on success, else roll back
        (``genogate.sqlitedb.transaction``; ``immediate=False`` for reads).

        A value the body returns is only seen by the caller if COMMIT succeeded (a failing COMMIT raises
        instead), so ``Charged`` is never returned for a charge that is not durable."""
        return transaction(
            lambda: self._conn, self._lock, what="ledger", doing=doing, path=self.path, immediate=immediate
        )

    def _write(self, op: Callable[[sqlite3.Connection], T], doing: str, *, durable: bool = True) -> T:
        """Run ``op`` in a write transaction and return its value once that transaction is durable (synced;
        or, with ``durable=False``, committed to the WAL, which a process crash cannot lose).

        Group commit: writes that queue up while another batch is committing run together, each in its own
        savepoint (an op that raises leaves no trace and does not disturb the others), under one COMMIT, so
        concurrent queries share an fsync instead of queueing for one each. No caller sees a value before
        the COMMIT that made it durable has returned; if the batch fails, every op in it fails."""
        ticket = _Ticket(op, durable or self._boot is None)
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.finished:  # else a batch led by another thread carried it, durably
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run_batch(batch, doing)
        return ticket.outcome()

    def _run_batch(self, batch: list[_Ticket[Any]], doing: str) -> None:
        """One write transaction for ``batch`` (under ``self._lock``); every ticket ends finished."""
        db = self._conn if self._lazy is None or any(t.durable for t in batch) else self._lazy
        suspect = set(self._suspect)  # ops may settle suspect charges: undone if the batch fails
        try:
            with transaction(lambda: db, None, what="ledger", doing=doing, path=self.path) as conn:
                if len(batch) == 1:  # alone in its transaction: rolling that back undoes exactly this op
                    t = batch[0]
                    try:
                        t.value = t.op(conn)
                    except Exception as exc:  # noqa: BLE001 - it is the op's caller's error, raised there
                        t.error = _db_error(exc, doing, self.path) if isinstance(exc, sqlite3.Error) else exc
                        raise _Undone from None  # (the transaction rolls back; the batch did not fail)
                for i, t in enumerate(batch if len(batch) > 1 else ()):
                    conn.execute(f"SAVEPOINT op{i}")
                    try:
                        t.value = t.op(conn)
                    except Exception as exc:  # noqa: BLE001 - it is the op's caller's error, raised there
                        conn.execute(f"ROLLBACK TO op{i}")
                        t.error = _db_error(exc, doing, self.path) if isinstance(exc, sqlite3.Error) else exc
                    conn.execute(f"RELEASE op{i}")
        except _Undone:
            pass
        except BaseException as exc:  # noqa: BLE001 - nothing in the batch happened: each caller gets it
            self._suspect = suspect
            for t in batch:
                t.value, t.error = None, exc if isinstance(exc, Exception) else Internal(f"ledger {doing}: {exc!r}")
            if not isinstance(exc, Exception):
                raise
        finally:
            for t in batch:
                t.finished = True

    def _read_one(self, sql: str, params: tuple[object, ...], doing: str) -> Any:
        """One row of one SELECT, in the implicit read transaction SQLite gives a lone statement (one
        consistent snapshot, without BEGIN and COMMIT round trips)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"{self.path}: the ledger is closed")
            try:
                return conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise _db_error(exc, doing, self.path) from exc

    # API -------------------------------------------------------------------------------------------------

    def begin(
        self,
        *,
        study_id: str,
        query_id: str,
        payload_sha256: str,
        canonical_sha256: str,
        epsilon: Decimal,
        delta: Decimal,
        epsilon_cap: Decimal,
        delta_cap: Decimal,
        now_ms: int,
        researcher: str,
        caller: str = "",
        epoch: int = 0,
        researcher_cap: Decimal = MAX_AMOUNT,
        node_cap: Decimal = MAX_AMOUNT,
        period_days: int = 365,
        audit: Mapping[str, Any] | None = None,
        on_charge: Callable[[], None] | None = None,
    ) -> Charged | Pending | Answered:
        """Charge a query, or find what it was already charged or answered as, in one write transaction.

        1. ``query_id`` already recorded under the study: from another ``caller`` (certificate common name)
           it is a replay and raises ``Unauthenticated`` (REPLAYED_NONCE); the same payload is a retry and
           gets what the first call got, now (``Answered`` once a result is stored, else ``Pending``),
           whatever the epoch; another payload raises ``AlreadyExists`` (QUERY_ID_REUSED).
        2. The canonical query was already charged under the study in this consent ``epoch`` by another
           query id: this query id is recorded as a zero-cost replay of it; ``Answered(from_store=True)`` or
           ``Pending``.
        3. Otherwise charge ε and δ (rounded up to 1e-12) to the study and to ``researcher`` if they fit
           under the caps (rounded down): the study's ``epsilon_cap``/``delta_cap``, else
           ``ResourceExhausted`` BUDGET_EXHAUSTED; ``researcher_cap`` on the researcher's ε across all
           studies in the window of ``period_days`` (RESEARCHER_BUDGET_EXHAUSTED); ``node_cap`` on everyone's
           (NODE_BUDGET_EXHAUSTED). A refusal records nothing. ``Charged`` is returned only once the charge
           is durable; it counts as spent whether or not ``complete()`` ever runs.

        ``Pending`` becomes a new charge of the same charge id (``Charged``, recorded in ``recharges``; or
        ``ResourceExhausted`` over a cap) when the charge was left without a result by an unclean stop under
        another boot: its draw may have been released and its result lost with the machine's page cache.

        ``on_charge`` is called once a new charge has been decided (every cap passed), before the commit that
        makes it durable returns: a caller may start work the charge pays for (reading rows, never drawing
        noise) while the commit syncs. It is never called for a refusal, a retry or a repeat; it must be quick
        and must not raise. If the commit then fails, ``begin`` raises and the caller drops that work.
        """
        _check_id(study_id, "study id", Reason.INVALID_STUDY)
        _check_id(query_id, "query id", Reason.INVALID_QUERY)
        _check_id(researcher, "researcher", Reason.INVALID_STUDY)
        _check_sha256(payload_sha256, "payload_sha256")
        _check_sha256(canonical_sha256, "canonical_sha256")
        eps, dlt = _units(epsilon, "epsilon", up=True), _units(delta, "delta", up=True)
        eps_cap, dlt_cap = _units(epsilon_cap, "epsilon cap", up=False), _units(delta_cap, "delta cap", up=False)
        r_cap, n_cap = _units(researcher_cap, "researcher cap", up=False), _units(node_cap, "node cap", up=False)
        for name, value in (("now_ms", now_ms), ("epoch", epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"{name} must be a non-negative int")
        first_day = _first_day(now_ms, period_days)
        today = now_ms // DAY_MS

        def add_spent(conn: sqlite3.Connection) -> None:
            """Add the charge to the study's running totals and to the researcher's and the node's totals of
            the day; over a cap, raise ``ResourceExhausted`` (the op fails, so its transaction or savepoint is
            rolled back: nothing is recorded)."""
            total_eps, total_dlt = conn.execute(
                "INSERT INTO spent (study_id, epsilon_units, delta_units) VALUES (?, ?, ?)"
                " ON CONFLICT (study_id) DO UPDATE SET"
                " epsilon_units = epsilon_units + excluded.epsilon_units,"
                " delta_units = delta_units + excluded.delta_units"
                " RETURNING epsilon_units, delta_units",
                (study_id, eps, dlt),
            ).fetchall()[0]
            if total_eps > eps_cap or total_dlt > dlt_cap:
                raise ResourceExhausted(
                    f"study {study_id!r}: spent (eps {_amount(total_eps - eps)}, delta {_amount(total_dlt - dlt)})"
                    f" + charge ({_amount(eps)}, {_amount(dlt)}) exceeds the cap ({_amount(eps_cap)},"
                    f" {_amount(dlt_cap)})"
                )
            # Days after today count too: a clock stepped back must not make recent charges disappear.
            r_spent, n_spent = conn.execute(
                "SELECT (SELECT coalesce(sum(epsilon_units), 0) FROM researcher_days WHERE researcher = ?1"
                " AND day >= ?2), (SELECT coalesce(sum(epsilon_units), 0) FROM node_days WHERE day >= ?2)",
                (researcher, first_day),
            ).fetchone()
            if r_spent + eps > r_cap:
                raise ResourceExhausted(
                    f"researcher {researcher!r}: spent {_amount(r_spent)} + charge {_amount(eps)} exceeds the"
                    f" researcher cap {_amount(r_cap)} over {period_days} days",
                    reason=Reason.RESEARCHER_BUDGET_EXHAUSTED,
                    message=f"the researcher's privacy budget at this site across all their studies over the last"
                    f" {period_days} days is exhausted",
                )
            if n_spent + eps > n_cap:
                raise ResourceExhausted(
                    f"node: spent {_amount(n_spent)} + charge {_amount(eps)} exceeds the node cap {_amount(n_cap)}"
                    f" over {period_days} days",
                    reason=Reason.NODE_BUDGET_EXHAUSTED,
                    message=f"this site's privacy budget across all researchers over the last {period_days} days"
                    " is exhausted",
                )
            conn.execute(
                "INSERT INTO researcher_days VALUES (?, ?, ?) ON CONFLICT (researcher, day)"
                " DO UPDATE SET epsilon_units = epsilon_units + excluded.epsilon_units",
                (researcher, today, eps),
            )
            conn.execute(
                "INSERT INTO node_days VALUES (?, ?) ON CONFLICT (day)"
                " DO UPDATE SET epsilon_units = epsilon_units + excluded.epsilon_units",
                (today, eps),
            )

        def unanswered(conn: sqlite3.Connection, row: _ChargeRow) -> Charged | Pending:
            """A charge without a stored result: ``Pending``; but one left so by an unclean stop under another
            boot may have had its draw released and its result lost, so drawing again is paid for again (or
            refused, over a cap)."""
            if row.charge_id not in self._suspect:
                return Pending(row.charge_id, row.epoch, row.epsilon, row.delta, row.query_id)
            add_spent(conn)
            conn.execute(
                "INSERT INTO recharges (charge_id, query_id, epsilon_units, delta_units, charged_ms, researcher)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (row.charge_id, query_id, eps, dlt, now_ms, researcher),
            )
            self._audit(conn, audit, "recharged", None, now_ms)
            self._suspect.discard(row.charge_id)  # restored if the batch does not commit
            return Charged(row.charge_id, row.epoch, row.epsilon, row.delta, row.query_id)

        def answered(row: _ChargeRow, from_store: bool) -> Answered:
            assert row.result is not None
            return Answered(row.result, row.query_id, from_store, row.epoch, row.epsilon, row.delta)

        def op(conn: sqlite3.Connection) -> Charged | Pending | Answered:
            # This query id under the study (kind 0), and the same question asked in this epoch under another
            # id (kind 1).
            found = conn.execute(
                f"SELECT 0, q.payload_sha256, q.caller, {_ROW} FROM queries q"
                " JOIN charges c ON c.charge_id = q.charge_id WHERE q.study_id = ?1 AND q.query_id = ?2"
                f" UNION ALL SELECT 1, NULL, NULL, {_ROW} FROM charges c"
                " WHERE c.study_id = ?1 AND c.canonical_sha256 = ?3 AND c.epoch = ?4",
                (study_id, query_id, canonical_sha256, epoch),
            ).fetchall()
            seen = next((r for r in found if r[0] == 0), None)
            if seen is not None:
                row = _ChargeRow.of(seen[3:])
                if seen[1] != payload_sha256:
                    raise AlreadyExists(f"query id {query_id!r} of study {study_id!r} was used for another payload")
                if seen[2] != caller:
                    raise Unauthenticated(
                        f"query id {query_id!r} of study {study_id!r} was first sent by {seen[2]!r}, now by {caller!r}",
                        reason=Reason.REPLAYED_NONCE,
                        message="the query was already sent by another caller",
                    )
                if row.result is None:
                    return unanswered(conn, row)
                answer = answered(row, from_store=row.query_id != query_id)
                self._audit(conn, audit, "retry", answer.result, now_ms)
                return answer

            same = next((r for r in found if r[0] == 1), None)
            if same is not None:
                row = _ChargeRow.of(same[3:])
                conn.execute(
                    "INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?)",
                    (study_id, query_id, payload_sha256, row.charge_id, now_ms, caller),
                )
                if row.result is None:  # counted as answered when complete() stores the result
                    return unanswered(conn, row)
                conn.execute("UPDATE spent SET answered = answered + 1 WHERE study_id = ?", (study_id,))
                self._audit(conn, audit, "replay", row.result, now_ms)
                return answered(row, from_store=True)

            add_spent(conn)
            cur = conn.execute(
                "INSERT INTO charges (study_id, canonical_sha256, query_id, epsilon_units, delta_units, charged_ms,"
                " researcher, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (study_id, canonical_sha256, query_id, eps, dlt, now_ms, researcher, epoch),
            )
            charge_id = cur.lastrowid
            assert charge_id is not None  # an INSERT into a rowid table always sets it
            conn.execute(
                "INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?)",
                (study_id, query_id, payload_sha256, charge_id, now_ms, caller),
            )
            self._audit(conn, audit, "charged", None, now_ms)
            if on_charge is not None:
                on_charge()
            return Charged(charge_id, epoch, _amount(eps), _amount(dlt), query_id)

        return self._write(op, "charging")

    def complete(
        self, charge_id: int, result: bytes, *, now_ms: int | None = None, audit: Mapping[str, Any] | None = None
    ) -> bytes:
        """Store ``result`` for the charge unless one is stored already; return the result that *is* stored.

        First completion wins: of two concurrent computations of one canonical query only the first draw is
        ever released, the other is discarded unreleased. The store is durable before this returns, because
        the caller releases the returned bytes: in the WAL, which a process crash cannot lose, and synced with
        the next charge or ``close()`` (see the module docstring)."""
        if not isinstance(result, bytes):
            raise TypeError(f"result must be bytes, not {type(result).__name__}")
        stamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms

        def op(conn: sqlite3.Connection) -> bytes:
            stored = conn.execute(  # fetched to the end: the statement is finished before COMMIT
                "UPDATE charges SET result = ?, completed_ms = ? WHERE charge_id = ? AND result IS NULL"
                " RETURNING study_id",
                (result, stamp, charge_id),
            ).fetchall()
            if not stored:  # no such charge, or another computation of it completed first
                row = conn.execute("SELECT result FROM charges WHERE charge_id = ?", (charge_id,)).fetchone()
                if row is None:
                    raise Internal(f"complete() of charge {charge_id}, which the ledger does not hold")
                self._audit(conn, audit, "answered", bytes(row[0]), stamp)
                return bytes(row[0])
            self._audit(conn, audit, "answered", result, stamp)
            conn.execute(  # the paying query id and every replay that joined while it was pending
                "UPDATE spent SET answered = answered + (SELECT count(*) FROM queries WHERE charge_id = ?)"
                " WHERE study_id = ?",
                (charge_id, stored[0][0]),
            )
            return result

        return self._write(op, "storing a result", durable=False)

    def record(self, entry: Mapping[str, Any], *, now_ms: int | None = None) -> None:
        """Append an audit entry on its own (a refused query: nothing else to record)."""
        if self._audit_signer is None:
            return
        stamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        self._write(lambda conn: self._audit(conn, entry, None, None, stamp), "writing the audit log")

    def _audit(
        self,
        conn: sqlite3.Connection,
        entry: Mapping[str, Any] | None,
        decision: str | None,
        result: bytes | None,
        at_ms: int,
    ) -> None:
        if entry is None or self._audit_signer is None:
            return
        full = dict(entry)
        if decision is not None:
            full["decision"] = decision
        if result is not None:
            full["result_sha256"] = hashlib.sha256(result).hexdigest()
            full["result"] = audit.b64(result)
        audit.append(conn, self._audit_signer, full, at_ms)

    def audit_rows(self) -> list[audit.Row]:
        """The audit log, oldest first."""
        with self._transaction("reading the audit log", immediate=False) as conn:
            return audit.rows(conn)

    def seen(self, study_id: str, query_id: str, canonical_sha256: str, epoch: int = 0) -> bool:
        """Whether ``begin`` would find this query id, or this canonical query in this consent epoch, already
        recorded under the study (a retry or a repeat: it is answered from the ledger, with nothing to
        compute). A hint only: ``begin`` decides, under the write lock."""
        row = self._read_one(
            "SELECT EXISTS (SELECT 1 FROM queries WHERE study_id = ?1 AND query_id = ?2)"
            " OR EXISTS (SELECT 1 FROM charges WHERE study_id = ?1 AND canonical_sha256 = ?3 AND epoch = ?4)",
            (study_id, query_id, canonical_sha256, epoch),
            "looking up a query",
        )
        return bool(row is not None and row[0])

    def register_epoch(self, cohort_sha256: str, *, now_ms: int) -> int:
        """The consent epoch of a cohort fingerprint, registered when a node starts on its store: the latest
        epoch if it has this fingerprint, else a new epoch (the next number), even for a fingerprint an
        earlier epoch had (see the module docstring: epochs are never revisited)."""
        _check_sha256(cohort_sha256, "cohort_sha256")

        def op(conn: sqlite3.Connection) -> int:
            latest = conn.execute("SELECT epoch, cohort_sha256 FROM epochs ORDER BY epoch DESC LIMIT 1").fetchone()
            if latest is not None and latest[1] == cohort_sha256:
                return int(latest[0])
            epoch = 1 if latest is None else int(latest[0]) + 1
            conn.execute("INSERT INTO epochs VALUES (?, ?, ?)", (epoch, cohort_sha256, now_ms))
            return epoch

        return self._write(op, "registering a consent epoch")

    def budget(
        self,
        study_id: str,
        epsilon_cap: Decimal,
        delta_cap: Decimal,
        *,
        researcher: str = "",
        now_ms: int = 0,
        period_days: int = 365,
    ) -> BudgetStatus:
        """The study's spending against the given caps and, with ``researcher``, that researcher's ε spent
        across all studies in the window of ``period_days`` ending at ``now_ms`` (read in one snapshot)."""
        eps_cap, dlt_cap = _units(epsilon_cap, "epsilon cap", up=False), _units(delta_cap, "delta cap", up=False)
        row = self._read_one(
            "SELECT (SELECT epsilon_units FROM spent WHERE study_id = ?1), (SELECT delta_units FROM spent"
            " WHERE study_id = ?1), (SELECT answered FROM spent WHERE study_id = ?1), (SELECT"
            " coalesce(sum(epsilon_units), 0) FROM researcher_days WHERE researcher = ?2 AND day >= ?3)",
            (study_id, researcher, _first_day(now_ms, period_days)),
            "reading a budget",
        )
        spent_eps, spent_dlt, answered = (v or 0 for v in row[:3])
        return BudgetStatus(
            study_id=study_id,
            epsilon_cap=_amount(eps_cap),
            epsilon_spent=_amount(spent_eps),
            epsilon_remaining=_amount(max(0, eps_cap - spent_eps)),
            delta_cap=_amount(dlt_cap),
            delta_spent=_amount(spent_dlt),
            queries_answered=answered,
            researcher_epsilon_spent=_amount(row[3]) if researcher else Decimal(0),
        )

    def history(self, study_id: str) -> list[LedgerEntry]:
        """Every query id recorded under the study, in the order received (for operators and audits)."""
        with self._transaction("reading history", immediate=False) as conn:
            rows = conn.execute(
                "SELECT q.query_id, q.payload_sha256, c.canonical_sha256, c.charge_id, c.query_id,"
                " c.epsilon_units, c.delta_units, q.received_ms, c.result IS NOT NULL, c.researcher, c.epoch, q.caller"
                " FROM queries q JOIN charges c ON c.charge_id = q.charge_id"
                " WHERE q.study_id = ? ORDER BY q.rowid",
                (study_id,),
            ).fetchall()
        return [
            LedgerEntry(
                query_id=qid,
                payload_sha256=payload,
                canonical_sha256=canon,
                charge_id=cid,
                original_query_id=orig,
                epsilon_charged=_amount(eps if orig == qid else 0),
                delta_charged=_amount(dlt if orig == qid else 0),
                received_ms=ms,
                answered=bool(done),
                researcher=who,
                epoch=epoch,
                caller=caller,
            )
            for qid, payload, canon, cid, orig, eps, dlt, ms, done, who, epoch, caller in rows
        ]

    def check(self) -> None:
        """Verify the file (SQLite integrity check) and the ledger's invariants; raise ``StoreError`` if not.

        Invariants: each study's running total equals the sum of its charges; every query row belongs to
        a charge of its own study; every charge is recorded as a query of its own query id; each study's
        answered count equals its query ids whose charge has a stored result; each researcher's and the
        node's per-day totals equal the sums of their charges and recharges of that day; every charge
        belongs to epoch 0 (before version 4) or a registered epoch, and epochs are numbered 1, 2, ... with
        no gap."""
        with self._transaction("checking", immediate=False) as conn:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
            problems += [
                f"study {s!r}: total ({e}, {d}) != sum of charges and recharges ({se}, {sd})"
                for s, e, d, se, sd in conn.execute(
                    "WITH paid AS (SELECT study_id, epsilon_units, delta_units FROM charges UNION ALL"
                    " SELECT c.study_id, r.epsilon_units, r.delta_units FROM recharges r"
                    " JOIN charges c ON c.charge_id = r.charge_id),"
                    " sums AS (SELECT study_id, sum(epsilon_units) AS e, sum(delta_units) AS d"
                    " FROM paid GROUP BY study_id),"
                    " ids AS (SELECT study_id FROM sums UNION SELECT study_id FROM spent)"
                    " SELECT ids.study_id, s.epsilon_units, s.delta_units, sums.e, sums.d FROM ids"
                    " LEFT JOIN spent s USING (study_id) LEFT JOIN sums USING (study_id)"
                    " WHERE s.epsilon_units IS NOT sums.e OR s.delta_units IS NOT sums.d"
                )
            ]
            problems += [
                f"query {q!r} of study {s!r} is linked to charge {c} of another study"
                for s, q, c in conn.execute(
                    "SELECT q.study_id, q.query_id, q.charge_id FROM queries q"
                    " JOIN charges c ON c.charge_id = q.charge_id WHERE c.study_id != q.study_id"
                )
            ]
            problems += [
                f"charge {c} has no query row for its own query id"
                for (c,) in conn.execute(
                    "SELECT charge_id FROM charges c WHERE NOT EXISTS (SELECT 1 FROM queries q"
                    " WHERE q.study_id = c.study_id AND q.query_id = c.query_id AND q.charge_id = c.charge_id)"
                )
            ]
            problems += [
                f"study {s!r}: answered count {a} != {n} query ids with a stored result"
                for s, a, n in conn.execute(
                    "SELECT s.study_id, s.answered, (SELECT count(*) FROM queries q JOIN charges c"
                    " ON c.charge_id = q.charge_id WHERE q.study_id = s.study_id AND c.result IS NOT NULL) AS n"
                    " FROM spent s WHERE s.answered != n"
                )
            ]
            problems += [
                f"researcher {r!r} day {d}: total {t} != {p} charged"
                for r, d, t, p in conn.execute(
                    f"WITH paid AS (SELECT researcher, charged_ms / {DAY_MS} AS day, sum(epsilon_units) AS e"
                    f" FROM ({_PAID}) GROUP BY 1, 2), keys AS (SELECT researcher, day FROM paid UNION"
                    " SELECT researcher, day FROM researcher_days)"
                    " SELECT k.researcher, k.day, r.epsilon_units, p.e FROM keys k"
                    " LEFT JOIN researcher_days r USING (researcher, day) LEFT JOIN paid p USING (researcher, day)"
                    " WHERE r.epsilon_units IS NOT p.e"
                )
            ]
            problems += [
                f"node day {d}: total {t} != {p} charged"
                for d, t, p in conn.execute(
                    f"WITH paid AS (SELECT charged_ms / {DAY_MS} AS day, sum(epsilon_units) AS e FROM ({_PAID})"
                    " GROUP BY 1), keys AS (SELECT day FROM paid UNION SELECT day FROM node_days)"
                    " SELECT k.day, n.epsilon_units, p.e FROM keys k LEFT JOIN node_days n USING (day)"
                    " LEFT JOIN paid p USING (day) WHERE n.epsilon_units IS NOT p.e"
                )
            ]
            problems += [
                f"charge {c} belongs to epoch {e}, which was never registered"
                for c, e in conn.execute(
                    "SELECT charge_id, epoch FROM charges WHERE epoch != 0"
                    " AND NOT EXISTS (SELECT 1 FROM epochs WHERE epochs.epoch = charges.epoch)"
                )
            ]
            n_epochs, last = conn.execute("SELECT count(*), coalesce(max(epoch), 0) FROM epochs").fetchone()
            if n_epochs != last:
                problems.append(f"epochs are not numbered 1..{n_epochs} (the last is {last})")
        if problems:
            raise StoreError(f"{self.path}: ledger check failed: " + "; ".join(problems))

    def close(self) -> None:
        """Sync what is unsynced, note the clean stop, close (idempotent; waits for a running call). Later
        calls raise ``StoreError``."""
        with self._lock:
            if self._lazy is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._lazy.close()
                self._lazy = None
            if self._conn is not None:
                with (
                    contextlib.suppress(GenogateError),  # cannot note it (disk full): the next open is careful
                    transaction(lambda: self._conn, None, what="ledger", doing="closing", path=self.path) as conn,
                ):
                    conn.execute("UPDATE meta SET value = '0' WHERE key = 'open'")
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class StudySpent:
    study_id: str
    epsilon_spent: Decimal
    delta_spent: Decimal
    queries_answered: int


def read_spent(path: Path) -> list[StudySpent]:
    """Every study's spent totals, read from a ledger file opened read-only (for ``status``; the serving
    node may hold it open). ``StoreError`` names the file if it is missing or unreadable."""
    rows = read_only(
        path,
        "ledger",
        "SELECT study_id, epsilon_units, delta_units, answered FROM spent ORDER BY study_id",
        missing="the node creates it when it first serves",
    )
    return [StudySpent(s, _amount(e), _amount(d), int(n)) for s, e, d, n in rows]
