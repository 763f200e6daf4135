"""Live consent changes (``node.consent``, ``node.consent_view``): the consent store records changes all or
nothing and append-only, a node notices another process's commit at its next query, and the query service
then counts with the codes in force in a new consent epoch; ingest applies the recorded changes to any sheet
it loads, so the node restarted on a re-ingested store keeps that epoch. Real DuckDB stores and ledger files;
zero noise (as in ``test_service.py``) so counts are exact."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from genogate import duo
from genogate.errors import StoreError
from genogate.kinds.cohort_count import CohortCount
from node.consent import Change, ConsentStore, apply_overrides, consent_path, overrides_sha256, read_overrides
from node.ingest import default_key_path, ingest, pseudonym
from node.ingest.sheet import Participant
from node.service import QueryService
from node.store import Store
from tests.unit.test_service import SHEET, VCF, ask, make, study
from tests.unit.test_service import memory_mb as memory_mb  # noqa: F401 - the fixture, both ways of reading rows


@pytest.fixture
def store(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    d.mkdir()
    (d / "c.vcf").write_text(VCF)
    (d / "s.tsv").write_text(SHEET)
    ingest(d / "store.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    return d / "store.duckdb"


def who(store: Path, sample: str) -> str:
    return pseudonym(bytes.fromhex(default_key_path(store).read_text().strip()), sample)


def withdraw(store: Path, *samples: str, by: str = "op") -> list[Change]:
    """What ``genogate-node consent withdraw`` records: from a connection of its own, like another process."""
    with ConsentStore(consent_path(store)) as writer:
        todo = [Change(who(store, s), "withdraw", (duo.WITHDRAWN,), ("GRU",), by, "form 7") for s in samples]
        return writer.record(todo, batch="b1", at_ms=1_000)


def test_changes_are_recorded_all_or_nothing_and_never_edited(tmp_path: Path) -> None:
    path = tmp_path / "x.consent.sqlite"
    with ConsentStore(path) as cs:
        a = Change("p" * 32, "withdraw", (duo.WITHDRAWN,), ("GRU",), "alice", "")
        b = Change("q" * 32, "update", ("HMB",), ("GRU",), "alice", "re-consented")
        done = cs.record([a, b], batch="one", at_ms=5)
        assert [c.seq for c in done] == [1, 2] and cs.overrides() == {"p" * 32: ("WITHDRAWN",), "q" * 32: ("HMB",)}

        def fail(_: object) -> None:
            raise StoreError("the audit log is unwritable")

        with pytest.raises(StoreError, match="unwritable"):
            cs.record(
                [Change("p" * 32, "update", ("GRU",), ("WITHDRAWN",), "bob", "")], batch="two", at_ms=6, audit=fail
            )
        assert cs.overrides()["p" * 32] == ("WITHDRAWN",) and len(cs.history()) == 2  # nothing of batch two
        cs.record([Change("p" * 32, "update", ("GRU",), ("WITHDRAWN",), "bob", "")], batch="three", at_ms=7)
        assert cs.overrides()["p" * 32] == ("GRU",)  # the latest change is in force
        assert [c.by for c in cs.history(["p" * 32])] == ["alice", "bob"]
    raw = sqlite3.connect(path)
    try:
        for sql in ("UPDATE changes SET codes = 'GRU'", "DELETE FROM changes"):
            with pytest.raises(sqlite3.IntegrityError, match="consent change"):
                raw.execute(sql)
    finally:
        raw.close()
    assert read_overrides(tmp_path / "x.duckdb") == {"p" * 32: ("GRU",), "q" * 32: ("HMB",)}
    assert read_overrides(tmp_path / "none.duckdb") == {}


def test_the_version_changes_exactly_when_another_connection_commits(tmp_path: Path) -> None:
    path = tmp_path / "x.consent.sqlite"
    with ConsentStore(path) as node, ConsentStore(path) as command:
        v = node.version()
        assert node.version() == v
        command.record([Change("p" * 32, "withdraw", (duo.WITHDRAWN,), (), "a", "")], batch="b", at_ms=1)
        assert node.version() != v
        v2 = node.version()
        assert node.version() == v2
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            node.version()
        per_call = (time.perf_counter() - t0) / n
    assert per_call < 100e-6, f"checking for a change took {per_call * 1e6:.0f} µs"  # measured: ~3 µs


def test_a_withdrawal_counts_from_the_next_query_in_a_new_epoch(
    store: Path, tmp_path: Path, memory_mb: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="genogate.node")
    cs = ConsentStore(consent_path(store))
    svc = make(store, tmp_path, study("GRU"), memory_mb=memory_mb, consent=cs)
    try:
        first = ask(svc, CohortCount(), query_id="q1")
        assert first.result.cohort_count.count.estimate == 5 and first.consent_epoch == 1  # GRU: P0 P2 P4 P6 P7
        withdraw(store, "P0", "P2")
        second = ask(svc, CohortCount(), query_id="q2")
        assert second.result.cohort_count.count.estimate == 3 and second.consent_epoch == 2
        assert second.epsilon_charged == 0.5 and not second.from_store  # a new release, charged
        third = ask(svc, CohortCount(), query_id="q3")
        assert third.from_store and third.consent_epoch == 2 and third.epsilon_charged == 0
        # Re-consent is a change like any other: yet another epoch (never an old one revisited).
        with ConsentStore(consent_path(store)) as writer:
            writer.record([Change(who(store, "P0"), "update", ("GRU",), ("WITHDRAWN",), "op", "")], batch="b2", at_ms=2)
        fourth = ask(svc, CohortCount(), query_id="q4")
        assert fourth.result.cohort_count.count.estimate == 4 and fourth.consent_epoch == 3
    finally:
        svc.close()
    said = [r.__dict__.get("epoch") for r in caplog.records if r.getMessage() == "consent epoch"]
    assert said == [1, 2, 3]  # the node logs each epoch it starts (the audit entry: test_consent_cli.py)


def test_a_reingested_old_sheet_keeps_the_withdrawal_and_the_epoch(store: Path, tmp_path: Path) -> None:
    cs = ConsentStore(consent_path(store))
    svc = make(store, tmp_path, study("GRU"), consent=cs)
    try:
        withdraw(store, "P0")
        live = ask(svc, CohortCount(), query_id="q1")
        fingerprint = svc._consent.current().fingerprint
    finally:
        svc.close()
    assert live.result.cohort_count.count.estimate == 4 and live.consent_epoch == 2
    # The operator re-ingests the sheet of before the withdrawal, whose P0 consents to GRU.
    sheet = store.parent / "s.tsv"
    summary = ingest(store, [store.parent / "c.vcf"], sheet, build="GRCh37")
    assert summary.changed and summary.consent_overrides == 1 and summary.withdrawn == 2  # P8 and P0
    assert any("1 participant keeps the consent recorded" in line for line in summary.lines())
    s = Store.open(store)
    try:
        assert s.cohort_sha256() == fingerprint  # what the node computed live, as ingest records it
        codes = dict(s.con.execute("SELECT pseudonym, consent FROM samples").fetchall())
        assert codes[who(store, "P0")] == ["WITHDRAWN"]
    finally:
        s.close()
    assert ingest(store, [store.parent / "c.vcf"], sheet, build="GRCh37").changed is False  # idempotent again
    restarted = make(store, tmp_path, study("GRU"), consent=ConsentStore(consent_path(store)))
    try:
        again = ask(restarted, CohortCount(), query_id="q2")
    finally:
        restarted.close()
    assert again.from_store and again.consent_epoch == 2 and again.result == live.result  # the same epoch


def test_ingest_into_a_fresh_store_beside_a_consent_store_applies_it(store: Path, tmp_path: Path) -> None:
    withdraw(store, "P4")
    fresh = store.parent / "fresh.duckdb"
    shutil.copy(consent_path(store), consent_path(fresh))
    overridden, n = apply_overrides(fresh, {who(store, "P4"): _participant("GRU"), "x" * 32: _participant("GRU")})
    assert (
        n == 1 and overridden[who(store, "P4")].consent == ("WITHDRAWN",) and overridden["x" * 32].consent == ("GRU",)
    )
    assert overrides_sha256(read_overrides(fresh)) != overrides_sha256({})


def test_a_node_without_a_consent_store_answers_as_before(store: Path, tmp_path: Path) -> None:
    svc: QueryService = make(store, tmp_path, study("GRU"))
    try:
        assert ask(svc, CohortCount()).result.cohort_count.count.estimate == 5 and svc.epoch == 1
    finally:
        svc.close()


def _participant(consent: str) -> Participant:
    return Participant("S", "F", None, None, (), (consent,))


def test_queries_racing_withdrawals_each_count_exactly_their_own_epoch(store: Path, tmp_path: Path) -> None:
    """Threads ask while another process-like writer withdraws participants one by one: every release's count
    is the one its consent epoch implies (the state a query uses is swapped whole, never seen half built)."""
    import threading

    svc = make(store, tmp_path, study("GRU"), consent=ConsentStore(consent_path(store)))
    got: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def asker(worker: int) -> None:
        i = 0
        try:
            while not done.is_set() or i < 3:
                body = ask(svc, CohortCount(), query_id=f"w{worker}-{i}")
                got.append((body.consent_epoch, body.result.cohort_count.count.estimate))
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=asker, args=(w,)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        for sample in ("P0", "P2", "P4", "P6"):  # GRU admits P0 P2 P4 P6 P7: 5, then 4, 3, 2, 1
            time.sleep(0.05)
            withdraw(store, sample)
        time.sleep(0.05)
        done.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        done.set()
        svc.close()
    assert not errors, errors
    expected = {1: 5, 2: 4, 3: 3, 4: 2, 5: 1}
    assert got and all(expected.get(epoch) == count for epoch, count in got), sorted(set(got))
    assert max(epoch for epoch, _ in got) == 5  # the last withdrawal reached the next queries
