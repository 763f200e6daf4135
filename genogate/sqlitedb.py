"""Opening the small durable SQLite files genogate keeps (a node's ledger and consent store, the
coordinator's state and audit log): one way, so all of them refuse foreign files alike and are equally durable.

``open_database`` refuses, without writing a byte to it, a file that is not this kind of genogate file
(not a regular file, not SQLite, another application's database, another schema version); otherwise it
switches to WAL with ``synchronous=FULL`` and, for an empty file, creates the schema under the write lock
(so two processes opening a new file at once cannot both create it). The connection is shared by threads
(``check_same_thread=False``): callers serialise their transactions with their own lock.

``transaction`` is the one BEGIN/COMMIT/ROLLBACK wrapper all of them use: under the caller's lock, a closed
connection refused, rolled back on any exception, SQLite's errors mapped by ``write_error`` (or the caller's
own mapping).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from genogate.errors import GenogateError, Reason, StoreError, Unavailable

SQLITE_HEADER = b"SQLite format 3\x00"


def statements(script: str) -> Iterator[str]:
    """Split a script into statements (``executescript`` would commit the open transaction first)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""


def open_database(
    path: Path,
    *,
    what: str,
    application_id: int,
    schema_version: int,
    schema: Iterable[str],
    busy_timeout_s: float = 10.0,
    foreign_keys: bool = True,
    on_create: Callable[[sqlite3.Connection], object] | None = None,
    migrations: Mapping[int, Iterable[str]] | None = None,
) -> sqlite3.Connection:
    """Open (creating if absent or empty) the genogate ``what`` at ``path``; ``StoreError`` if it is not one.

    ``migrations[v]`` holds the statements that take a file of schema version ``v`` to ``v + 1``; a file of an
    older version with a migration path is upgraded in one transaction under the write lock (all steps or
    none), any other version is refused."""
    path = Path(path)
    if path.exists():
        if not path.is_file():
            raise StoreError(f"{path}: not a genogate {what} (not a regular file)")
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise StoreError(f"{path}: not a genogate {what} (not an SQLite database)")
    conn = _connect(path, what, busy_timeout_s)
    try:
        _initialise(
            conn,
            path,
            what,
            application_id,
            schema_version,
            list(schema),
            foreign_keys,
            on_create,
            {v: list(steps) for v, steps in (migrations or {}).items()},
        )
    except BaseException:
        conn.close()
        raise
    return conn


def _connect(path: Path, what: str, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (callers BEGIN themselves) that any thread may use under the caller's
    own lock; ``StoreError`` naming the file if SQLite cannot open it."""
    try:
        private(path)
        return sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the {what}: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the {what}: {exc.strerror or exc}") from None


def private(path: Path) -> None:
    """Make ``path`` the owner's alone (0600), creating it empty if missing, before SQLite opens it: SQLite
    gives its -wal and -shm files the database file's mode, so they are private too, whatever the umask.
    (Ledgers, nonce stores and audit logs hold budgets, released values and who asked what.)"""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def reopen(
    path: Path, *, what: str, synchronous: str, busy_timeout_s: float = 10.0, foreign_keys: bool = True
) -> sqlite3.Connection:
    """A further connection to a database ``open_database`` has opened (WAL, schema checked), whose COMMITs
    sync as ``synchronous`` says (``"FULL"`` or ``"NORMAL"``): one connection per durability, so no commit
    has to switch the setting first."""
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    conn = _connect(path, what, busy_timeout_s)
    try:
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"{path}: cannot open the {what}: {exc}") from exc
    return conn


def _initialise(
    conn: sqlite3.Connection,
    path: Path,
    what: str,
    application_id: int,
    schema_version: int,
    schema: list[str],
    foreign_keys: bool,
    on_create: Callable[[sqlite3.Connection], object] | None,
    migrations: dict[int, list[str]],
) -> None:
    def upgradable(version: int) -> bool:
        return all(v in migrations for v in range(version, schema_version)) and version < schema_version

    def cannot_open(exc: sqlite3.Error) -> GenogateError:
        return StoreError(f"{path}: cannot open the {what}: {exc}")

    def is_new() -> bool:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == 0 and conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0:
            return True
        if app_id != application_id:
            raise StoreError(f"{path}: not a genogate {what} (an SQLite database of another application)")
        if version != schema_version and not upgradable(version):
            raise StoreError(f"{path}: {what} schema version {version}; this genogate reads {schema_version}")
        return False

    try:
        is_new()  # before any write: never convert someone else's database to WAL
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: the filesystem does not support WAL (journal_mode={mode})")
        conn.execute("PRAGMA synchronous=FULL")
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys=ON")
        with transaction(lambda: conn, None, what=what, doing="opening", path=path, error=cannot_open):
            if is_new():  # again under the write lock: another process may have created it meanwhile
                for statement in schema:
                    conn.execute(statement)
                if on_create is not None:
                    on_create(conn)
                conn.execute(f"PRAGMA application_id={application_id}")
                conn.execute(f"PRAGMA user_version={schema_version}")
            elif (version := conn.execute("PRAGMA user_version").fetchone()[0]) < schema_version:
                for v in range(version, schema_version):
                    for statement in migrations[v]:
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={schema_version}")
    except sqlite3.Error as exc:
        raise cannot_open(exc) from exc


def read_only(path: Path, what: str, sql: str, params: Iterable[object] = (), *, missing: str = "") -> list[Any]:
    """Rows of one query on a SQLite file opened read-only (a running server may hold it open: WAL lets it).
    ``StoreError`` names the file and ``what`` it is when it is missing (with ``missing`` as the hint),
    cannot be opened or cannot be read."""
    if not Path(path).is_file():
        raise StoreError(f"{path}: no such {what}" + (f" ({missing})" if missing else ""))
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the {what}: {exc}") from None
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the {what}: {exc}") from None
    finally:
        conn.close()


_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_CANNOT_WRITE = (8, 10, 13, 14)  # SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN


def write_error(exc: sqlite3.Error, what: str, doing: str, path: Path) -> GenogateError:
    """The error a failed transaction on a server's durable state stands for. All of these rolled back, so
    nothing was recorded: busy or locked (another process held the write lock too long) is retryable as
    UNAVAILABLE; so is a file that cannot be written (disk full, read-only, I/O error), with reason
    STORAGE_FULL and the file named for the operator; anything else is a ``StoreError``."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in _BUSY:
        return Unavailable(f"{path}: {what} busy while {doing}: {exc}")
    if code in _CANNOT_WRITE:
        return Unavailable(
            f"{path}: cannot write the {what} while {doing} ({exc}); the disk may be full or the file unwritable",
            reason=Reason.STORAGE_FULL,
            message=f"the server cannot write its {what} (storage full or unwritable); nothing new was recorded; "
            "try again later",
        )
    return StoreError(f"{path}: {what} error while {doing}: {exc}")


def transaction(
    connection: Callable[[], sqlite3.Connection | None],
    lock: contextlib.AbstractContextManager[object] | None,
    *,
    what: str,
    doing: str,
    path: Path,
    immediate: bool = True,
    error: Callable[[sqlite3.Error], GenogateError] | None = None,
) -> contextlib.AbstractContextManager[sqlite3.Connection]:
    """One transaction on the ``what`` at ``path``, as a context manager that yields the connection: under
    ``lock`` (``None``: the caller holds its lock), ``BEGIN IMMEDIATE`` (``immediate=False``: a deferred
    ``BEGIN``, for reads), the body, ``COMMIT``.

    ``connection`` is read under the lock; ``None`` (the caller has closed it) raises ``StoreError``. Any
    exception from BEGIN, the body or COMMIT rolls back what is still open (a failing ROLLBACK is ignored:
    the original error is the one to report) and propagates, an ``sqlite3.Error`` mapped to
    ``write_error(exc, what, doing, path)`` or, given, ``error(exc)``. A caller sees what the body returns
    only after COMMIT succeeded."""
    return _Transaction(connection, lock, what, doing, path, "BEGIN IMMEDIATE" if immediate else "BEGIN", error)


class _Transaction:
    """``transaction``'s context manager (a class, not a generator: it runs twice per query on the ledger)."""

    __slots__ = ("_connection", "_lock", "_what", "_doing", "_path", "_begin", "_error", "_conn")

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection | None],
        lock: contextlib.AbstractContextManager[object] | None,
        what: str,
        doing: str,
        path: Path,
        begin: str,
        error: Callable[[sqlite3.Error], GenogateError] | None,
    ) -> None:
        self._connection = connection
        self._lock = lock
        self._what = what
        self._doing = doing
        self._path = path
        self._begin = begin
        self._error = error
        self._conn: sqlite3.Connection | None = None

    def _mapped(self, exc: sqlite3.Error) -> GenogateError:
        return write_error(exc, self._what, self._doing, self._path) if self._error is None else self._error(exc)

    def __enter__(self) -> sqlite3.Connection:
        if self._lock is not None:
            self._lock.__enter__()
        try:
            conn = self._connection()
            if conn is None:
                raise StoreError(f"{self._path}: the {self._what} is closed")
            try:
                conn.execute(self._begin)
            except sqlite3.Error as exc:
                raise self._mapped(exc) from exc
        except BaseException:
            if self._lock is not None:
                self._lock.__exit__(None, None, None)
            raise
        self._conn = conn
        return conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if exc is None:
                try:
                    conn.execute("COMMIT")
                    return
                except BaseException as failed:
                    exc = failed
                    _rollback(conn)
                    if isinstance(exc, sqlite3.Error):
                        raise self._mapped(exc) from exc
                    raise
            _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._mapped(exc) from exc
        finally:
            self._conn = None
            if self._lock is not None:
                self._lock.__exit__(None, None, None)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is still open (SQLite may have rolled back already, e.g. on a full disk); a failing
    ROLLBACK is ignored: the original error is the one to report."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
