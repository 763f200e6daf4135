"""``genogate.sqlitedb.transaction``: the one BEGIN/COMMIT/ROLLBACK wrapper of the ledger, the nonce store, the
audit log and the coordinator's state, on real SQLite files."""

from __future__ import annotations

import ast
import sqlite3
import threading
from pathlib import Path

import pytest

from genogate.errors import Reason, StoreError, Unavailable
from genogate.sqlitedb import open_database, reopen, transaction

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = [
    "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    "CREATE TABLE child (k INTEGER REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED)",  # checked at COMMIT
]


def _open(path: Path) -> sqlite3.Connection:
    return open_database(path, what="test file", application_id=0x47475454, schema_version=1, schema=SCHEMA)


def _rows(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return conn.execute("SELECT k, v FROM t ORDER BY k").fetchall()


def test_commits_the_body_under_the_lock(tmp_path: Path) -> None:
    conn = _open(tmp_path / "f.db")
    lock = threading.Lock()
    with transaction(lambda: conn, lock, what="test file", doing="writing", path=tmp_path) as tx:
        assert tx is conn and lock.locked() and conn.in_transaction
        tx.execute("INSERT INTO t VALUES (1, 'a')")
    assert not lock.locked() and not conn.in_transaction
    other = reopen(tmp_path / "f.db", what="test file", synchronous="FULL")
    assert _rows(other) == [(1, "a")]  # committed: another connection sees it


def test_any_exception_rolls_back_and_propagates_unchanged(tmp_path: Path) -> None:
    conn = _open(tmp_path / "f.db")
    lock = threading.Lock()
    with (
        pytest.raises(KeyError, match="boom"),
        transaction(lambda: conn, lock, what="test file", doing="writing", path=tmp_path) as tx,
    ):
        tx.execute("INSERT INTO t VALUES (1, 'a')")
        raise KeyError("boom")
    assert not conn.in_transaction and not lock.locked()
    assert _rows(conn) == []


def test_sqlite_errors_are_mapped_by_write_error_and_roll_back(tmp_path: Path) -> None:
    conn = _open(tmp_path / "f.db")
    with pytest.raises(StoreError, match="test file error while writing") as info:
        with transaction(lambda: conn, None, what="test file", doing="writing", path=tmp_path) as tx:
            tx.execute("INSERT INTO t VALUES (1, 'a')")
            tx.execute("INSERT INTO t VALUES (1, 'b')")  # primary key taken
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert not conn.in_transaction and _rows(conn) == []


def test_a_caller_may_map_sqlite_errors_its_own_way(tmp_path: Path) -> None:
    conn = _open(tmp_path / "f.db")
    with pytest.raises(StoreError, match=r"^mine: ") as info:
        with transaction(
            lambda: conn,
            None,
            what="test file",
            doing="writing",
            path=tmp_path,
            error=lambda e: StoreError(f"mine: {e}"),
        ) as tx:
            tx.execute("INSERT INTO no_such_table VALUES (1)")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert not conn.in_transaction


def test_a_closed_connection_is_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"f\.db: the test file is closed"):
        with transaction(lambda: None, threading.Lock(), what="test file", doing="writing", path=tmp_path / "f.db"):
            pytest.fail("the body must not run")


def test_immediate_takes_the_write_lock_at_begin_and_a_busy_file_is_retryable(tmp_path: Path) -> None:
    first = _open(tmp_path / "f.db")
    second = reopen(tmp_path / "f.db", what="test file", synchronous="FULL", busy_timeout_s=0.05)
    with transaction(lambda: first, None, what="test file", doing="reading", path=tmp_path, immediate=False):
        # a deferred BEGIN holds no lock: the other connection can still write
        with transaction(lambda: second, None, what="test file", doing="writing", path=tmp_path) as tx:
            tx.execute("INSERT INTO t VALUES (1, 'a')")
    with transaction(lambda: first, None, what="test file", doing="writing", path=tmp_path):
        with pytest.raises(Unavailable, match="test file busy while writing") as info:
            with transaction(lambda: second, None, what="test file", doing="writing", path=tmp_path):
                pytest.fail("BEGIN IMMEDIATE must wait for the write lock")
        assert info.value.reason == Reason.UNAVAILABLE
    assert not second.in_transaction and _rows(second) == [(1, "a")]


def test_a_failing_commit_rolls_back_releases_the_lock_and_is_mapped(tmp_path: Path) -> None:
    conn = _open(tmp_path / "f.db")
    lock = threading.Lock()
    with pytest.raises(StoreError, match="test file error while writing") as info:
        with transaction(lambda: conn, lock, what="test file", doing="writing", path=tmp_path) as tx:
            tx.execute("INSERT INTO t VALUES (1, 'a')")
            tx.execute("INSERT INTO child VALUES (2)")  # no parent: the deferred foreign key fails the COMMIT
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert not conn.in_transaction and not lock.locked()
    assert _rows(conn) == []


def test_the_lock_is_released_whatever_happens(tmp_path: Path) -> None:
    conn = _open(tmp_path / "f.db")
    second = reopen(tmp_path / "f.db", what="test file", synchronous="FULL", busy_timeout_s=0.01)
    lock = threading.Lock()
    with pytest.raises(KeyboardInterrupt), transaction(lambda: conn, lock, what="t", doing="d", path=tmp_path):
        raise KeyboardInterrupt
    assert not lock.locked() and not conn.in_transaction
    with transaction(lambda: conn, None, what="t", doing="writing", path=tmp_path):
        with pytest.raises(Unavailable):  # BEGIN fails
            with transaction(lambda: second, lock, what="t", doing="writing", path=tmp_path):
                pytest.fail("BEGIN IMMEDIATE must wait for the write lock")
        assert not lock.locked()
    with (
        pytest.raises(StoreError, match="is closed"),
        transaction(lambda: None, lock, what="t", doing="d", path=tmp_path),
    ):
        pytest.fail("the body must not run")
    assert not lock.locked()


def test_no_module_but_sqlitedb_begins_commits_or_rolls_back_an_sqlite_transaction() -> None:
    """The wrapper exists once: any other SQLite code that runs BEGIN, COMMIT or ROLLBACK itself (a
    savepoint's ``ROLLBACK TO`` aside) is a second copy of it."""
    found, scanned = [], 0
    for path in sorted(p for d in ("genogate", "node", "coordinator") for p in (ROOT / d).rglob("*.py")):
        if path == ROOT / "genogate" / "sqlitedb.py" or "wire" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        if not any(isinstance(n, ast.Import) and any(a.name == "sqlite3" for a in n.names) for n in ast.walk(tree)):
            continue  # (DuckDB's transactions, in ingest, are another matter)
        scanned += 1
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "execute"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                word = node.args[0].value.strip().upper()
                if word.startswith(("BEGIN", "COMMIT", "ROLLBACK", "END")) and not word.startswith("ROLLBACK TO"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.args[0].value}")
    assert found == []
    assert scanned >= 4  # the ledger, the nonce store, the audit log, the coordinator's state at least
