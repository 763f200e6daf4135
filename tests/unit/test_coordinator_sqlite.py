"""What is specific to the SQLite implementation of the coordinator's state (``coordinator.state.sqlite``):
its triggers keep reviews, revocations, the epoch, studies' proposals and query history append-only even
against a raw connection, and a file that is not a coordinator state is refused. The behaviour every
implementation shares is in ``tests/conformance/test_coordinator_state.py``."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.state import CoordinatorState, SqliteCoordinatorState
from genogate.errors import StoreError
from genogate.query import Kind
from genogate.signing import Signer
from genogate.wire.v1 import coordinator_pb2 as cpb
from tests.coordstate import World, approved, new_signer, open_world, review

PATH = "coordinator.sqlite"


def _open(where: Path, signer: Signer, k: int, clock: Callable[[], float]) -> CoordinatorState:
    return SqliteCoordinatorState(where / PATH, signer, k, clock)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path, _open) as w:
        yield w


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def test_history_reviews_revocations_and_proposals_are_append_only_in_the_file(world: World) -> None:
    w = world
    study = approved(w)
    w.state.record_query("q-1", study.study_id, Kind.ALLELE_FREQUENCY, Decimal("0.1"), ["site-a"], {"site-a": "ok"})
    w.state.revoke(review(w.members[2], study, cpb.REVIEW_DECISION_REVOKE))
    history, kept = w.state.history(study.study_id), w.state.get(study.study_id)

    with raw(w.where / PATH) as conn:
        for statement in (
            "UPDATE queries SET epsilon = '0'",
            "DELETE FROM queries",
            "UPDATE reviews SET decision = 2",
            "DELETE FROM reviews",
            "DELETE FROM revocations",
            "UPDATE revocations SET epoch = 0",
            "UPDATE epoch SET value = 0",
            "DELETE FROM studies",
            "UPDATE studies SET state = 'APPROVED'",  # REVOKED -> APPROVED is not a transition
            "UPDATE studies SET proposal = x'00'",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(statement)
    assert w.state.history(study.study_id) == history
    assert w.state.get(study.study_id) == kept


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with raw(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError):
        SqliteCoordinatorState(path, new_signer(), 2)


def test_a_schema_1_file_is_migrated_keeping_its_nodes_at_version_1_pinned_by_certificate(world: World) -> None:
    before = world.state.list_nodes()
    world.state.close()
    path = world.where / "coordinator.sqlite"
    with raw(path) as conn:  # back to schema 1: the node table without the columns issue 15 added
        for column in ("ca_sha256", "version", "updated_ms"):
            conn.execute(f"ALTER TABLE nodes DROP COLUMN {column}")
        conn.execute("DROP INDEX queries_audit")  # and the history without its audit positions (issue 16)
        conn.execute("ALTER TABLE queries DROP COLUMN audit_seq")
        conn.execute("PRAGMA user_version=1")
    state = world.reopen()
    nodes = state.list_nodes()
    assert [(n.name, n.endpoint, n.cert_sha256, n.registered_unix_ms) for n in nodes] == [
        (n.name, n.endpoint, n.cert_sha256, n.registered_unix_ms) for n in before
    ]
    assert all(n.ca_sha256 == "" and n.version == 1 and n.updated_unix_ms == n.registered_unix_ms for n in nodes)
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
