"""The ``Ledger``: the charging API over one ledger file (``begin``, ``complete``, ``record``,
``register_epoch``, ``budget``) and its lifecycle (open, boot tracking, ``close``). The guarantees it keeps are
stated in the package docstring (``node.ledger``); the schema is in ``node.ledger.schema``, the arithmetic in
``node.ledger.amounts``, the group commit in ``genogate.groupcommit`` and the read-only inspection in
``node.ledger.inspection``.

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
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from genogate import audit
from genogate.errors import (
    AlreadyExists,
    GenogateError,
    Internal,
    Reason,
    StoreError,
    Unauthenticated,
)
from genogate.groupcommit import GroupCommit, db_error
from genogate.signing import Signer
from genogate.sqlitedb import open_database, reopen, statements, transaction
from node.ledger import inspection, refusals
from node.ledger.amounts import DAY_MS, MAX_AMOUNT, UNIT_EXPONENT, amount, check_id, check_sha256, first_day, units
from node.ledger.outcomes import Answered, BudgetStatus, Charged, LedgerEntry, Pending
from node.ledger.schema import APPLICATION_ID, MIGRATIONS, SCHEMA, SCHEMA_VERSION

T = TypeVar("T")

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This boot of the machine (Linux; changes at every restart of the kernel), or None where unknown."""
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


class NonceRecord(Protocol):
    """A signed query's nonce, recorded in the transaction that decides the query (``node.nonces.NonceClaim``)."""

    def record(self, conn: sqlite3.Connection) -> None:
        """Record it, or raise a refusal (a replay): the op fails and nothing of it is recorded."""

    def keep(self, conn: sqlite3.Connection) -> None:
        """Record it for a refused query unless it is known already; never refuses."""


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
        return cls(cid, qid, None if result is None else bytes(result), epoch, amount(eps), amount(dlt))


class Ledger:
    """The budget ledger in one SQLite file (guarantees: the ``node.ledger`` package docstring; threading: this
    module's)."""

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
        self._conn: sqlite3.Connection | None = open_database(
            self.path,
            what="ledger",
            application_id=APPLICATION_ID,
            schema_version=SCHEMA_VERSION,
            schema=statements(SCHEMA),
            busy_timeout_s=busy_timeout_s,
            on_create=lambda conn: conn.execute("INSERT INTO meta VALUES ('unit', ?)", (f"1e-{UNIT_EXPONENT}",)),
            migrations=MIGRATIONS,
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
        self._commit = GroupCommit(self.path, self._lock, self._connection, self._suspect)
        with self._transaction("opening") as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('boot_id', 'open')").fetchall())
            if meta.get("open") == "1" and meta.get("boot_id") and meta.get("boot_id") != self._boot:
                self._suspect.update(c for (c,) in conn.execute("SELECT charge_id FROM charges WHERE result IS NULL"))
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
        concurrent queries share an fsync instead of queueing for one each (``genogate.groupcommit``). No caller
        sees a value before the COMMIT that made it durable has returned; if the batch fails, every op in it
        fails."""
        return self._commit.write(op, doing, durable or self._boot is None)

    def _connection(self, durable: bool) -> sqlite3.Connection | None:
        """The connection a batch of writes commits on: the synced one if any write in it must be durable or
        there is no other (under ``self._lock``)."""
        return self._conn if durable or self._lazy is None else self._lazy

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
                raise db_error(exc, doing, self.path) from exc

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
        nonce: NonceRecord | None = None,
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

        ``nonce``, a signed query's nonce, is recorded first, in the same transaction (one synced commit for
        both: ``node.nonces``); a nonce another sending recorded meanwhile refuses the query (REPLAYED_NONCE)
        before anything is charged.
        """
        check_id(study_id, "study id", Reason.INVALID_STUDY)
        check_id(query_id, "query id", Reason.INVALID_QUERY)
        check_id(researcher, "researcher", Reason.INVALID_STUDY)
        check_sha256(payload_sha256, "payload_sha256")
        check_sha256(canonical_sha256, "canonical_sha256")
        eps, dlt = units(epsilon, "epsilon", up=True), units(delta, "delta", up=True)
        eps_cap, dlt_cap = units(epsilon_cap, "epsilon cap", up=False), units(delta_cap, "delta cap", up=False)
        r_cap, n_cap = units(researcher_cap, "researcher cap", up=False), units(node_cap, "node cap", up=False)
        for name, value in (("now_ms", now_ms), ("epoch", epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"{name} must be a non-negative int")
        since_day = first_day(now_ms, period_days)
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
                raise refusals.study_exhausted(study_id, eps, dlt, total_eps - eps, total_dlt - dlt, eps_cap, dlt_cap)
            # Days after today count too: a clock stepped back must not make recent charges disappear.
            r_spent, n_spent = conn.execute(
                "SELECT (SELECT coalesce(sum(epsilon_units), 0) FROM researcher_days WHERE researcher = ?1"
                " AND day >= ?2), (SELECT coalesce(sum(epsilon_units), 0) FROM node_days WHERE day >= ?2)",
                (researcher, since_day),
            ).fetchone()
            if r_spent + eps > r_cap:
                raise refusals.researcher_exhausted(researcher, eps, r_spent, r_cap, period_days)
            if n_spent + eps > n_cap:
                raise refusals.node_exhausted(eps, n_spent, n_cap, period_days)
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
            if nonce is not None:
                nonce.record(conn)
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
                    raise AlreadyExists(
                        f"query id {query_id!r} of study {study_id!r} was used for another payload",
                        message=f"the query id was already used with a different query: {query_id[:64]!r} (a new"
                        " question needs a new query id)",
                    )
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
            return Charged(charge_id, epoch, amount(eps), amount(dlt), query_id)

        return self._write(op, "charging")

    def complete(
        self, charge_id: int, result: bytes, *, now_ms: int | None = None, audit: Mapping[str, Any] | None = None
    ) -> bytes:
        """Store ``result`` for the charge unless one is stored already; return the result that *is* stored.

        First completion wins: of two concurrent computations of one canonical query only the first draw is
        ever released, the other is discarded unreleased. The store is durable before this returns, because
        the caller releases the returned bytes: in the WAL, which a process crash cannot lose, and synced with
        the next charge or ``close()`` (see the ``node.ledger`` docstring)."""
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

    def record(self, entry: Mapping[str, Any], *, now_ms: int | None = None, nonce: NonceRecord | None = None) -> None:
        """Append an audit entry on its own (a refused query: nothing else to record but, for a signed query
        refused after its nonce was checked, the nonce, in the same commit)."""
        if self._audit_signer is None and nonce is None:
            return
        stamp = time.time_ns() // 1_000_000 if now_ms is None else now_ms

        def op(conn: sqlite3.Connection) -> None:
            if nonce is not None:
                nonce.keep(conn)
            self._audit(conn, entry, None, None, stamp)

        self._write(op, "writing the audit log")

    def write(self, op: Callable[[sqlite3.Connection], T], doing: str) -> T:
        """Run ``op`` in a synced write transaction of the group commit and return its value once durable:
        for the tables the ledger file keeps besides the budget record (the nonces, ``node.nonces``)."""
        return self._write(op, doing)

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
            # The digest only: the result itself is in this ledger's charges row (exported beside the entry by
            # ``genogate-node audit export``), so the log grows by the same few hundred bytes for any result.
            full["result_sha256"] = hashlib.sha256(result).hexdigest()
        audit.append(conn, self._audit_signer, full, at_ms)

    def audit_rows(self) -> list[audit.Row]:
        """The audit log, oldest first."""
        with self._transaction("reading the audit log", immediate=False) as conn:
            return audit.rows(conn)

    def register_epoch(self, cohort_sha256: str, *, now_ms: int) -> int:
        """The consent epoch of a cohort fingerprint, registered when a node starts on its store: the latest
        epoch if it has this fingerprint, else a new epoch (the next number), even for a fingerprint an
        earlier epoch had (see the ``node.ledger`` docstring: epochs are never revisited)."""
        check_sha256(cohort_sha256, "cohort_sha256")

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
        eps_cap, dlt_cap = units(epsilon_cap, "epsilon cap", up=False), units(delta_cap, "delta cap", up=False)
        row = self._read_one(
            "SELECT (SELECT epsilon_units FROM spent WHERE study_id = ?1), (SELECT delta_units FROM spent"
            " WHERE study_id = ?1), (SELECT answered FROM spent WHERE study_id = ?1), (SELECT"
            " coalesce(sum(epsilon_units), 0) FROM researcher_days WHERE researcher = ?2 AND day >= ?3)",
            (study_id, researcher, first_day(now_ms, period_days)),
            "reading a budget",
        )
        spent_eps, spent_dlt, answered = (v or 0 for v in row[:3])
        return BudgetStatus(
            study_id=study_id,
            epsilon_cap=amount(eps_cap),
            epsilon_spent=amount(spent_eps),
            epsilon_remaining=amount(max(0, eps_cap - spent_eps)),
            delta_cap=amount(dlt_cap),
            delta_spent=amount(spent_dlt),
            queries_answered=answered,
            researcher_epsilon_spent=amount(row[3]) if researcher else Decimal(0),
        )

    def history(self, study_id: str) -> list[LedgerEntry]:
        """Every query id recorded under the study, in the order received (for operators and audits)."""
        with self._transaction("reading history", immediate=False) as conn:
            return inspection.history(conn, study_id)

    def check(self) -> None:
        """Verify the file (SQLite integrity check) and the ledger's invariants (listed at
        ``node.ledger.inspection.problems``) in one read transaction; raise ``StoreError`` if not."""
        with self._transaction("checking", immediate=False) as conn:
            problems = inspection.problems(conn)
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
