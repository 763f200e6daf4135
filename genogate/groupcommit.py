"""Group commit for the small durable SQLite files: writes that queue up while another batch is committing run
together, each in its own savepoint, under one COMMIT (``genogate.sqlitedb.transaction``), so concurrent callers
share an fsync instead of queueing for one each. A node's ledger (``node.ledger.ledger``) commits this way (a
signed query's nonce, ``node.nonces``, is written by the charging op itself, so it shares the charge's commit),
and so does the coordinator's audit log (``genogate.audit.AuditLog``).

No caller sees a value before the COMMIT that made it durable has returned; an op that raises leaves no trace
and does not disturb the others in its batch; if the batch itself fails (BEGIN or COMMIT: a full disk, a file
made read-only, a closed connection), every op in it fails with the batch's typed error and nothing of the
batch is written (and the ledger's set of suspect charges, which ops may settle, is restored). The ops run in
the order their callers queued them, one after another on the batch's connection, so each sees what the ops
before it wrote: the audit log's hash chain links entry to entry within a batch. A write's ``then`` runs once
its batch is durable, still under the file's lock and in the batch's order (the coordinator records its query
history this way, in the order of the audit entries). What the ops write is the caller's; this module only
batches and commits them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from genogate.errors import GenogateError, Internal
from genogate.sqlitedb import transaction, write_error

T = TypeVar("T")


class Ticket(Generic[T]):
    """One queued write: its op, then its value or error once its batch is over."""

    __slots__ = ("op", "durable", "then", "value", "error", "finished")

    def __init__(
        self, op: Callable[[sqlite3.Connection], T], durable: bool, then: Callable[[T], object] | None = None
    ) -> None:
        self.op = op
        self.durable = durable
        self.then = then
        self.value: T | None = None
        self.error: BaseException | None = None
        self.finished = False

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set when the op returned


def db_error(exc: sqlite3.Error, doing: str, path: Path) -> GenogateError:
    return write_error(exc, "ledger", doing, path)


class _Undone(Exception):
    """Raised out of a batch of one whose op failed: its transaction rolls back, the op's caller gets the
    op's own error."""


class GroupCommit:
    """The write queue of one file.

    ``lock`` is the file's in-process lock (held for the whole of each transaction, the owner's reads
    included); ``connection(durable)`` is the connection a batch commits on (the synced one if any op in
    it must be durable), read under that lock; ``suspect`` is the ledger's set of suspect charges, restored
    to what it was at the start of a batch that fails (an empty set where nothing is suspect); ``what``
    names the file in errors; ``error``, given, maps an SQLite error of the batch (BEGIN, COMMIT) or of an op
    to the error its callers get (default ``genogate.sqlitedb.write_error``)."""

    __slots__ = ("_path", "_lock", "_connection", "_suspect", "_queue_lock", "_queue", "_what", "_map")

    def __init__(
        self,
        path: Path,
        lock: threading.Lock,
        connection: Callable[[bool], sqlite3.Connection | None],
        suspect: set[int],
        what: str = "ledger",
        error: Callable[[sqlite3.Error], GenogateError] | None = None,
    ) -> None:
        self._what = what
        self._map = error
        self._path = path
        self._lock = lock
        self._connection = connection
        self._suspect = suspect
        self._queue_lock = threading.Lock()
        self._queue: list[Ticket[Any]] = []

    @property
    def waiting(self) -> int:
        """Writes queued for the next batch (what tests watch)."""
        with self._queue_lock:
            return len(self._queue)

    def write(
        self,
        op: Callable[[sqlite3.Connection], T],
        doing: str,
        durable: bool,
        then: Callable[[T], object] | None = None,
    ) -> T:
        """Run ``op`` in a write transaction and return its value once that transaction is durable (synced;
        or, with ``durable=False``, committed to the WAL, which a process crash cannot lose). ``then(value)``
        runs after that commit, under the lock, in the batch's order; if it raises, its caller gets that error
        and what ``op`` wrote stays."""
        ticket = Ticket(op, durable, then)
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.finished:  # else a batch led by another thread carried it, durably
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run_batch(batch, doing)
        return ticket.outcome()

    def _run_batch(self, batch: list[Ticket[Any]], doing: str) -> None:
        """One write transaction for ``batch`` (under the lock); every ticket ends finished."""
        db = self._connection(any(t.durable for t in batch))
        suspect = set(self._suspect)  # ops may settle suspect charges: undone if the batch fails
        try:
            with transaction(lambda: db, None, what=self._what, doing=doing, path=self._path, error=self._map) as conn:
                if len(batch) == 1:  # alone in its transaction: rolling that back undoes exactly this op
                    t = batch[0]
                    try:
                        t.value = t.op(conn)
                    except Exception as exc:  # noqa: BLE001 - it is the op's caller's error, raised there
                        t.error = self._error(exc, doing)
                        raise _Undone from None  # (the transaction rolls back; the batch did not fail)
                for i, t in enumerate(batch if len(batch) > 1 else ()):
                    conn.execute(f"SAVEPOINT op{i}")
                    try:
                        t.value = t.op(conn)
                    except Exception as exc:  # noqa: BLE001 - it is the op's caller's error, raised there
                        conn.execute(f"ROLLBACK TO op{i}")
                        t.error = self._error(exc, doing)
                    conn.execute(f"RELEASE op{i}")
        except _Undone:
            pass
        except BaseException as exc:  # noqa: BLE001 - nothing in the batch happened: each caller gets it
            self._suspect.clear()
            self._suspect.update(suspect)
            for t in batch:
                t.value, t.error = (
                    None,
                    exc if isinstance(exc, Exception) else Internal(f"{self._what} {doing}: {exc!r}"),
                )
            if not isinstance(exc, Exception):
                raise
        else:
            interrupted: BaseException | None = None
            for t in batch:  # durable now: each caller's follow-up, in the order of the batch
                if t.then is not None and t.error is None:
                    try:
                        t.then(t.value)
                    except Exception as exc:  # noqa: BLE001 - it is that caller's error, raised there
                        t.error = exc
                    except BaseException as exc:  # noqa: BLE001 - the others' follow-ups still run first
                        t.error, interrupted = Internal(f"{self._what} {doing}: {exc!r}"), exc
            if interrupted is not None:
                raise interrupted
        finally:
            for t in batch:
                t.finished = True

    def _error(self, exc: Exception, doing: str) -> Exception:
        if not isinstance(exc, sqlite3.Error):
            return exc
        return write_error(exc, self._what, doing, self._path) if self._map is None else self._map(exc)
