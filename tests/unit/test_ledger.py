"""The budget ledger (``node.ledger``): exact arithmetic at the cap, idempotence, same question same answer,
first completion wins, per-study budgets, refusal of foreign files, and no overspend under 200 threads or
two processes on one file. Every ledger lives in ``tmp_path`` and is closed by the test that opens it.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from genogate.errors import (
    AlreadyExists,
    Internal,
    InvalidArgument,
    Reason,
    ResourceExhausted,
    StoreError,
    Unavailable,
)
from node.ledger import Answered, Charged, Ledger, Pending

UNIT = Decimal("1e-12")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def begin(
    ledger: Ledger,
    qid: str,
    *,
    study: str = "study-1",
    payload: str | None = None,
    canonical: str | None = None,
    eps: Decimal | str = "0.1",
    delta: Decimal | str = "0",
    cap: Decimal | str = "1",
    dcap: Decimal | str = "0",
    now_ms: int = 1_700_000_000_000,
) -> Charged | Pending | Answered:
    """``ledger.begin`` with defaults: payload and canonical query derived from the query id."""
    return ledger.begin(
        study_id=study,
        query_id=qid,
        payload_sha256=sha(payload if payload is not None else f"payload {qid}"),
        canonical_sha256=sha(canonical if canonical is not None else f"canonical {qid}"),
        epsilon=Decimal(eps),
        delta=Decimal(delta),
        epsilon_cap=Decimal(cap),
        delta_cap=Decimal(dcap),
        now_ms=now_ms,
    )


def charge(ledger: Ledger, qid: str, **kw: object) -> int:
    """Begin (expecting a new charge) and complete with ``result of <qid>``; the charge id."""
    r = begin(ledger, qid, **kw)  # type: ignore[arg-type]
    assert isinstance(r, Charged), r
    assert ledger.complete(r.charge_id, f"result of {qid}".encode()) == f"result of {qid}".encode()
    return r.charge_id


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger(path) as led:
        yield led


def spent(ledger: Ledger, study: str = "study-1") -> Decimal:
    return ledger.budget(study, Decimal(1), Decimal(1)).epsilon_spent


# The cap, exactly -------------------------------------------------------------------------------------


def test_exactly_at_the_cap_passes_and_one_unit_more_is_refused_recording_nothing(ledger: Ledger) -> None:
    charge(ledger, "q1", eps="0.4")
    charge(ledger, "q2", eps=Decimal("0.6") - UNIT)
    charge(ledger, "q3", eps=UNIT)  # spent == cap exactly
    assert spent(ledger) == Decimal(1)
    before = ledger.history("study-1")
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "q4", eps=UNIT)
    assert err.value.reason is Reason.BUDGET_EXHAUSTED
    assert err.value.message == "the study's privacy budget at this site is exhausted"
    assert ledger.history("study-1") == before
    status = ledger.budget("study-1", Decimal(1), Decimal(0))
    assert (status.epsilon_spent, status.epsilon_remaining, status.queries_answered) == (Decimal(1), Decimal(0), 3)
    # Refused means not recorded: the same query id is free to be asked again, and is refused again.
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q4", eps=UNIT)
    ledger.check()


def test_a_single_charge_equal_to_the_cap_passes_and_one_unit_more_fails(ledger: Ledger) -> None:
    with pytest.raises(ResourceExhausted):
        begin(ledger, "big", eps=Decimal("0.5") + UNIT, cap="0.5")
    assert ledger.history("study-1") == []
    charge(ledger, "exact", eps="0.5", cap="0.5")
    assert spent(ledger) == Decimal("0.5")


def test_ten_charges_of_a_tenth_spend_a_cap_of_one_exactly(ledger: Ledger) -> None:
    for i in range(10):
        charge(ledger, f"q{i}", eps="0.1", cap="1.0")
    status = ledger.budget("study-1", Decimal("1.0"), Decimal(0))
    assert status.epsilon_spent == Decimal(1) and status.epsilon_remaining == 0
    assert str(status.epsilon_spent) == "1"
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q10", eps=UNIT, cap="1.0")


@pytest.mark.parametrize(
    ("eps", "charged"),
    [
        ("1e-15", "1e-12"),  # below one unit: one unit, never zero
        ("0.0000000000001", "1e-12"),
        ("0.1000000000001", "0.100000000001"),  # 13th decimal rounds up
        ("0.1000000000009", "0.100000000001"),
        ("0." + "3" * 40, "0.333333333334"),  # more digits than any default precision
        ("0.5", "0.5"),  # exact values are not rounded
        ("0", "0"),
    ],
)
def test_charges_round_up_to_the_next_unit(ledger: Ledger, eps: str, charged: str) -> None:
    charge(ledger, "q", eps=eps)
    assert spent(ledger) == Decimal(charged)
    assert ledger.history("study-1")[0].epsilon_charged == Decimal(charged)


def test_caps_round_down_so_the_last_sub_unit_is_never_granted(ledger: Ledger) -> None:
    cap = "0.9999999999999"  # rounds down to 0.999999999999
    charge(ledger, "q1", eps="0.999999999999", cap=cap)
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q2", eps="1e-15", cap=cap)  # rounds up to one unit: one past the cap
    assert ledger.budget("study-1", Decimal(cap), Decimal(0)).epsilon_cap == Decimal("0.999999999999")


def test_rounding_is_exact_whatever_the_callers_decimal_context(ledger: Ledger) -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        charge(ledger, "q", eps="0.123456789012345")
        status = ledger.budget("study-1", Decimal("0.99999999999"), Decimal(0))
    assert status.epsilon_spent == Decimal("0.123456789013")
    assert status.epsilon_cap == Decimal("0.99999999999")


@pytest.mark.parametrize("bad", ["-0.1", "NaN", "sNaN", "Infinity", "1000001", "1e999999"])
def test_out_of_range_amounts_are_refused(ledger: Ledger, bad: str) -> None:
    for field in ("eps", "delta", "cap", "dcap"):
        with pytest.raises(InvalidArgument) as err:
            begin(ledger, "q", **{field: Decimal(bad)})  # type: ignore[arg-type]
        assert err.value.reason is Reason.INVALID_EPSILON
    assert ledger.history("study-1") == []


def test_a_float_is_refused(ledger: Ledger) -> None:
    with pytest.raises(TypeError):
        ledger.begin(
            study_id="s",
            query_id="q",
            payload_sha256=sha("p"),
            canonical_sha256=sha("c"),
            epsilon=0.1,  # type: ignore[arg-type]
            delta=Decimal(0),
            epsilon_cap=Decimal(1),
            delta_cap=Decimal(0),
            now_ms=1,
        )


def test_delta_is_accounted_and_capped_independently_of_epsilon(ledger: Ledger) -> None:
    dcap = "1e-6"
    charge(ledger, "q1", eps="0.01", delta="5e-7", dcap=dcap)
    charge(ledger, "q2", eps="0.01", delta="5e-7", dcap=dcap)  # delta exactly at its cap
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "q3", eps="0.01", delta=UNIT, dcap=dcap)  # epsilon fits; delta does not
    assert err.value.reason is Reason.BUDGET_EXHAUSTED
    charge(ledger, "q4", eps="0.01", delta="0", dcap=dcap)  # pure epsilon still fits
    status = ledger.budget("study-1", Decimal(1), Decimal(dcap))
    assert status.delta_spent == Decimal("1e-6") and status.delta_cap == Decimal("1e-6")
    assert status.epsilon_spent == Decimal("0.03")


# Idempotence and same question, same answer -----------------------------------------------------------


def test_a_retry_with_the_same_id_and_payload_is_answered_and_charges_nothing(ledger: Ledger) -> None:
    first = begin(ledger, "q1")
    assert isinstance(first, Charged)
    assert begin(ledger, "q1") == Pending(first.charge_id)  # retried before the result was stored
    ledger.complete(first.charge_id, b"released")
    assert begin(ledger, "q1") == Answered(b"released", "q1", from_store=False)
    assert begin(ledger, "q1", cap="0.1") == Answered(b"released", "q1", from_store=False)  # no budget needed
    assert spent(ledger) == Decimal("0.1")
    assert [e.query_id for e in ledger.history("study-1")] == ["q1"]


def test_the_same_id_with_another_payload_is_refused(ledger: Ledger) -> None:
    charge(ledger, "q1")
    before = ledger.history("study-1")
    with pytest.raises(AlreadyExists) as err:
        begin(ledger, "q1", payload="something else", canonical="something else")
    assert err.value.reason is Reason.QUERY_ID_REUSED
    assert err.value.message == "the query id was already used with a different query"
    assert "q1" in err.value.detail
    assert ledger.history("study-1") == before and spent(ledger) == Decimal("0.1")


def test_query_ids_are_scoped_to_their_study(ledger: Ledger) -> None:
    charge(ledger, "q1", study="a")
    charge(ledger, "q1", study="b", payload="another payload")
    assert spent(ledger, "a") == spent(ledger, "b") == Decimal("0.1")


def test_the_same_canonical_query_under_another_id_is_answered_from_the_store_at_no_cost(ledger: Ledger) -> None:
    charge(ledger, "q1", canonical="count women")
    replay = begin(ledger, "q2", canonical="count women", eps="0.7")
    assert replay == Answered(b"result of q1", "q1", from_store=True)
    assert spent(ledger) == Decimal("0.1")
    entries = {e.query_id: e for e in ledger.history("study-1")}
    assert entries["q2"].epsilon_charged == 0 and entries["q2"].original_query_id == "q1"
    assert entries["q2"].charge_id == entries["q1"].charge_id
    # A retry of the replay gets what the replay got; the budget counts both query ids as answered.
    assert begin(ledger, "q2", canonical="count women") == replay
    assert ledger.budget("study-1", Decimal(1), Decimal(0)).queries_answered == 2
    ledger.check()


def test_a_stored_answer_is_replayed_even_when_the_budget_is_spent(ledger: Ledger) -> None:
    charge(ledger, "q1", canonical="c", eps="1")
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q2", canonical="other")
    assert begin(ledger, "q3", canonical="c") == Answered(b"result of q1", "q1", from_store=True)


def test_the_same_canonical_query_under_another_study_is_charged_again(ledger: Ledger) -> None:
    charge(ledger, "q1", study="a", canonical="c")
    charge(ledger, "q1", study="b", canonical="c")
    assert spent(ledger, "a") == spent(ledger, "b") == Decimal("0.1")


def test_a_charge_without_a_result_is_pending_after_a_crash_and_still_spent(path: Path) -> None:
    crashed = Ledger(path)
    try:
        first = begin(crashed, "q1", canonical="c")
        assert isinstance(first, Charged)
        # Another Ledger on the file sees what a restarted node would: the charge, and no result.
        with Ledger(path) as reopened:
            assert spent(reopened) == Decimal("0.1")
            assert begin(reopened, "q1", canonical="c") == Pending(first.charge_id)
            # Another id asking the same question joins the pending charge at no cost.
            assert begin(reopened, "q2", canonical="c") == Pending(first.charge_id)
            assert spent(reopened) == Decimal("0.1")
            assert reopened.budget("study-1", Decimal(1), Decimal(0)).queries_answered == 0
            assert reopened.complete(first.charge_id, b"late") == b"late"
            assert begin(reopened, "q2", canonical="c") == Answered(b"late", "q1", from_store=True)
            assert reopened.budget("study-1", Decimal(1), Decimal(0)).queries_answered == 2
            reopened.check()
    finally:
        crashed.close()


def test_the_first_completion_wins(ledger: Ledger) -> None:
    first = begin(ledger, "q1", canonical="c")
    second = begin(ledger, "q2", canonical="c")
    assert isinstance(first, Charged) and second == Pending(first.charge_id)
    assert ledger.complete(second.charge_id, b"draw A") == b"draw A"
    assert ledger.complete(first.charge_id, b"draw B") == b"draw A"  # draw B is discarded unreleased
    assert begin(ledger, "q1", canonical="c") == Answered(b"draw A", "q1", from_store=False)


def test_concurrent_identical_queries_release_one_value(ledger: Ledger) -> None:
    barrier = threading.Barrier(8, timeout=30)
    released: list[bytes] = []
    outcomes: list[object] = []

    def ask(i: int) -> None:
        barrier.wait()
        r = begin(ledger, f"q{i}", canonical="same question")
        outcomes.append(r)
        if not isinstance(r, Answered):
            released.append(ledger.complete(r.charge_id, f"draw {i}".encode()))
        else:
            released.append(r.result)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(released) == 8 and len(set(released)) == 1
    assert sum(isinstance(o, Charged) for o in outcomes) == 1
    assert spent(ledger) == Decimal("0.1")


def test_completing_an_unknown_charge_is_an_internal_error(ledger: Ledger) -> None:
    with pytest.raises(Internal):
        ledger.complete(12345, b"x")


def test_budgets_are_per_study(ledger: Ledger) -> None:
    for i in range(5):
        charge(ledger, f"a{i}", study="a", eps="0.2")
    with pytest.raises(ResourceExhausted):
        begin(ledger, "a5", study="a", eps=UNIT)
    charge(ledger, "b0", study="b", eps="1")  # study b still has its whole cap
    a = ledger.budget("a", Decimal(1), Decimal(0))
    b = ledger.budget("b", Decimal(1), Decimal(0))
    assert (a.epsilon_spent, a.queries_answered) == (Decimal(1), 5)
    assert (b.epsilon_spent, b.queries_answered) == (Decimal(1), 1)
    fresh = ledger.budget("never-seen", Decimal("2.5"), Decimal(0))
    assert (fresh.epsilon_spent, fresh.epsilon_remaining, fresh.queries_answered) == (Decimal(0), Decimal("2.5"), 0)


def test_a_lowered_cap_leaves_nothing_remaining_and_refuses(ledger: Ledger) -> None:
    charge(ledger, "q1", eps="0.8")
    assert ledger.budget("study-1", Decimal("0.5"), Decimal(0)).epsilon_remaining == 0
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q2", eps=UNIT, cap="0.5")


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"qid": ""}, Reason.INVALID_QUERY),
        ({"qid": "x" * 257}, Reason.INVALID_QUERY),
        ({"study": ""}, Reason.INVALID_STUDY),
    ],
)
def test_malformed_ids_are_refused(ledger: Ledger, kw: dict[str, str], reason: Reason) -> None:
    qid = kw.pop("qid", "q")
    with pytest.raises(InvalidArgument) as err:
        begin(ledger, qid, **kw)  # type: ignore[arg-type]
    assert err.value.reason is reason


def test_malformed_hashes_are_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidArgument):
        ledger.begin(
            study_id="s",
            query_id="q",
            payload_sha256="ABC",
            canonical_sha256=sha("c"),
            epsilon=Decimal("0.1"),
            delta=Decimal(0),
            epsilon_cap=Decimal(1),
            delta_cap=Decimal(0),
            now_ms=1,
        )


# The file ----------------------------------------------------------------------------------------------


def test_the_file_is_wal_with_the_ledger_marks(path: Path) -> None:
    Ledger(path).close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47474C44
        assert con.execute("SELECT value FROM meta WHERE key = 'unit'").fetchone()[0] == "1e-12"
    finally:
        con.close()


def test_reopening_keeps_everything(path: Path) -> None:
    with Ledger(path) as led:
        charge(led, "q1", now_ms=5)
    with Ledger(path) as led:
        assert begin(led, "q1") == Answered(b"result of q1", "q1", from_store=False)
        assert led.history("study-1")[0].received_ms == 5


def test_a_text_file_is_refused_untouched(path: Path) -> None:
    path.write_text("epsilon = 1.0\n")
    with pytest.raises(StoreError, match="not a genogate ledger"):
        Ledger(path)
    assert path.read_text() == "epsilon = 1.0\n"


def test_another_applications_sqlite_database_is_refused_untouched(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE charges (x)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        Ledger(path)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + "-wal").exists()


def test_a_ledger_of_another_schema_version_is_refused(path: Path) -> None:
    Ledger(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Ledger(path)


def test_a_version_1_ledger_is_upgraded_in_place_keeping_every_charge(path: Path) -> None:
    """Version 1 had no answered count (it was counted on every read); opening one adds and fills it."""
    with Ledger(path) as ledger:
        charge(ledger, "q1", canonical="c")
        assert isinstance(begin(ledger, "q2", canonical="c"), Answered)
        assert isinstance(begin(ledger, "q3", canonical="pending"), Charged)
    con = sqlite3.connect(path)  # take the file back to what version 1 wrote
    con.executescript(
        "DROP TRIGGER spent_grows; DROP INDEX queries_by_charge; ALTER TABLE spent DROP COLUMN answered;"
        "DROP TABLE audit; DROP TABLE recharges;"
        "CREATE TRIGGER spent_grows BEFORE UPDATE ON spent WHEN NEW.epsilon_units < OLD.epsilon_units"
        " BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END; PRAGMA user_version = 1;"
    )
    con.close()
    with Ledger(path) as upgraded:
        status = upgraded.budget("study-1", Decimal(1), Decimal(0))
        assert (status.epsilon_spent, status.queries_answered) == (Decimal("0.2"), 2)
        upgraded.check()
        charge(upgraded, "q4")
        assert upgraded.budget("study-1", Decimal(1), Decimal(0)).queries_answered == 3
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3  # through version 2, with recharges
    with pytest.raises(sqlite3.IntegrityError, match="never decreases"):
        con.execute("UPDATE spent SET answered = 0")
    con.close()


def test_a_wrong_answered_count_fails_the_check(ledger: Ledger, path: Path) -> None:
    charge(ledger, "q1")
    con = sqlite3.connect(path)
    con.execute("UPDATE spent SET answered = 5")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="answered count 5 != 1"):
        ledger.check()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Ledger(tmp_path)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        Ledger(tmp_path / "absent" / "ledger.sqlite")


def test_an_empty_file_becomes_a_ledger(path: Path) -> None:
    path.touch()
    with Ledger(path) as led:
        charge(led, "q1")


def test_a_closed_ledger_refuses_calls(path: Path) -> None:
    led = Ledger(path)
    led.close()
    led.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        begin(led, "q1")


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM charges",
        "DELETE FROM queries",
        "DELETE FROM spent",
        "UPDATE charges SET epsilon_units = 0",
        "UPDATE charges SET result = x'00'",  # replacing a stored result
        "UPDATE queries SET payload_sha256 = 'x'",
        "UPDATE spent SET epsilon_units = 0",
    ],
)
def test_the_schema_refuses_giving_budget_back(path: Path, statement: str) -> None:
    with Ledger(path) as led:
        charge(led, "q1")
    con = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute(statement)
    finally:
        con.close()


def test_check_reports_a_total_that_disagrees_with_the_charges(path: Path) -> None:
    with Ledger(path) as led:
        charge(led, "q1")
        led.check()
    con = sqlite3.connect(path)
    con.execute("UPDATE spent SET epsilon_units = epsilon_units + 1")
    con.commit()
    con.close()
    with Ledger(path) as led, pytest.raises(StoreError, match="sum of charges"):
        led.check()


def test_a_write_lock_held_elsewhere_too_long_is_unavailable_and_records_nothing(path: Path) -> None:
    with Ledger(path, busy_timeout_s=0.2) as led:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(Unavailable):
                begin(led, "q1")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert led.history("study-1") == []
        charge(led, "q1")


# Concurrency ---------------------------------------------------------------------------------------------


def test_200_threads_never_overspend(ledger: Ledger) -> None:
    n_threads, allowed, eps = 200, 37, Decimal("0.01")
    cap = allowed * eps
    barrier = threading.Barrier(n_threads, timeout=60)
    outcomes: list[str] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        barrier.wait()
        try:
            r = begin(ledger, f"q{i}", eps=eps, cap=cap)
            assert isinstance(r, Charged)
            ledger.complete(r.charge_id, b"r")
            outcome = "charged"
        except ResourceExhausted as exc:
            outcome = exc.reason.name
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert sorted(outcomes) == ["BUDGET_EXHAUSTED"] * (n_threads - allowed) + ["charged"] * allowed
    rows = ledger.history("study-1")
    assert len(rows) == allowed and sum(e.epsilon_charged for e in rows) == cap
    status = ledger.budget("study-1", cap, Decimal(0))
    assert status.epsilon_spent == cap and status.epsilon_remaining == 0 and status.queries_answered == allowed
    ledger.check()


def test_a_failing_write_in_a_group_commit_leaves_no_trace_and_spares_the_others(ledger: Ledger) -> None:
    """Writes queued together share one transaction, each in its own savepoint: 120 threads mixing new
    charges (some over the cap), reused ids with another payload, retries and repeats of one question all
    get their own outcome, and the file holds exactly what the successful ones wrote."""
    charge(ledger, "taken", canonical="popular")
    n, allowed, eps = 120, 20, Decimal("0.01")
    cap = Decimal("0.1") + allowed * eps  # "taken" already spent 0.1
    barrier = threading.Barrier(n, timeout=60)
    outcomes: dict[int, str] = {}
    lock = threading.Lock()

    def ask(i: int) -> None:
        barrier.wait()
        try:
            if i % 4 == 0:
                r = begin(ledger, "taken", payload=f"another payload {i}", eps=eps, cap=cap)
            elif i % 4 == 1:
                r = begin(ledger, f"repeat{i}", canonical="popular", eps=eps, cap=cap)
            else:
                r = begin(ledger, f"new{i}", eps=eps, cap=cap)
                assert isinstance(r, Charged)
                ledger.complete(r.charge_id, b"r")
            outcome = type(r).__name__
        except (AlreadyExists, ResourceExhausted) as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes[i] = outcome

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert {outcomes[i] for i in range(0, n, 4)} == {"AlreadyExists"}
    assert {outcomes[i] for i in range(1, n, 4)} == {"Answered"}
    new = [outcomes[i] for i in range(n) if i % 4 > 1]
    assert new.count("Charged") == allowed and new.count("ResourceExhausted") == len(new) - allowed
    status = ledger.budget("study-1", cap, Decimal(0))
    assert status.epsilon_spent == cap and status.queries_answered == 1 + n // 4 + allowed
    ledger.check()


WORKER = """
import hashlib, json, sys, time
from decimal import Decimal
from node.ledger import Charged, Ledger
from genogate.errors import ResourceExhausted
path, name, attempts, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), Decimal(sys.argv[4])
sha = lambda text: hashlib.sha256(text.encode()).hexdigest()
with Ledger(path, busy_timeout_s=60) as led:
    print("ready", flush=True)
    sys.stdin.readline()
    charged, refused = [], 0
    for i in range(attempts):
        time.sleep(0.0005)  # let the other process in: SQLite's busy handler is not fair to a waiter
        try:
            qid = f"{name}-{i}"
            r = led.begin(study_id="study-1", query_id=qid, payload_sha256=sha(qid), canonical_sha256=sha(qid),
                          epsilon=Decimal("0.01"), delta=Decimal(0), epsilon_cap=cap, delta_cap=Decimal(0), now_ms=1)
        except ResourceExhausted:
            refused += 1
            continue
        assert isinstance(r, Charged)
        led.complete(r.charge_id, b"r")
        charged.append(r.charge_id)
print(json.dumps({"charged": charged, "refused": refused}), flush=True)
"""


def test_two_processes_on_one_file_never_overspend(path: Path) -> None:
    Ledger(path).close()
    attempts, allowed = 150, 100
    cap = str(Decimal("0.01") * allowed)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), name, str(attempts), cap],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p", "q")
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for p in procs:  # both start together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate(timeout=10)
    ids = [c for r in results for c in r["charged"]]
    assert len(ids) == len(set(ids)) == allowed
    assert sum(r["refused"] for r in results) == 2 * attempts - allowed
    with Ledger(path) as led:
        assert spent(led) == Decimal(cap)
        assert len(led.history("study-1")) == allowed
        led.check()


def test_seen_knows_retries_and_repeats_but_not_new_questions(ledger: Ledger) -> None:
    assert not ledger.seen("study-1", "q1", sha("canonical q1"))
    charge(ledger, "q1")
    assert ledger.seen("study-1", "q1", sha("something else"))  # a retry of the id
    assert ledger.seen("study-1", "q2", sha("canonical q1"))  # the same question under another id
    assert not ledger.seen("study-1", "q2", sha("canonical q2"))
    assert not ledger.seen("study-2", "q1", sha("canonical q1"))  # scoped to the study


def _commits(ledger: Ledger) -> list[tuple[int, str]]:
    """Records (synchronous setting of the connection, statement) of every COMMIT the ledger runs from now."""
    seen: list[tuple[int, str]] = []
    for conn in (ledger._conn, ledger._lazy):
        if conn is not None:
            mode = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            conn.set_trace_callback(lambda sql, mode=mode: seen.append((mode, sql)) if sql == "COMMIT" else None)
    return seen


def test_charges_are_synced_and_results_written_to_the_wal_where_the_boot_is_known(path: Path) -> None:
    with Ledger(path, boot=lambda: "boot-A") as ledger:
        commits = _commits(ledger)
        first = begin(ledger, "q1")
        assert isinstance(first, Charged) and commits == [(2, "COMMIT")]  # FULL: the charge's COMMIT fsyncs
        ledger.complete(first.charge_id, b"r1")
        assert commits[1:] == [(1, "COMMIT")]  # NORMAL: written to the WAL; the next charge's fsync covers it
        charge(ledger, "q2")
        assert [mode for mode, _ in commits] == [2, 1, 2, 1]
        retry = begin(ledger, "q1")  # charged through one connection, its result stored through the other
        assert isinstance(retry, Answered) and retry.result == b"r1"
    with Ledger(path, boot=lambda: None) as elsewhere:  # no boot id: every result is synced too
        commits = _commits(elsewhere)
        third = begin(elsewhere, "q3")
        assert isinstance(third, Charged)
        elsewhere.complete(third.charge_id, b"r3")
        assert [mode for mode, _ in commits] == [2, 2]


def test_an_unclean_stop_under_another_boot_charges_a_retry_again(path: Path) -> None:
    """The machine crashed (another boot) after an unclean stop: a charge without a result may have had
    its release sent and its result lost, so drawing for it again is paid again; answered ones are not."""
    crashed = Ledger(path, boot=lambda: "boot-A")
    try:
        first = begin(crashed, "q1", canonical="c")
        assert isinstance(first, Charged)
        charge(crashed, "q2")
        # The process died here (no close); the machine restarted. A new process opens the ledger:
        with Ledger(path, boot=lambda: "boot-B") as after:
            assert spent(after) == Decimal("0.2")
            assert begin(after, "q1", canonical="c") == Charged(first.charge_id)  # paid again
            assert spent(after) == Decimal("0.3")
            assert begin(after, "q1", canonical="c") == Pending(first.charge_id)  # once: now this process's
            assert after.complete(first.charge_id, b"late") == b"late"
            assert begin(after, "q1", canonical="c") == Answered(b"late", "q1", from_store=False)
            assert begin(after, "q2") == Answered(b"result of q2", "q2", from_store=False)
            assert spent(after) == Decimal("0.3")
            after.check()  # spent == charges + recharges
        con = sqlite3.connect(path)
        assert con.execute("SELECT charge_id, query_id FROM recharges").fetchall() == [(first.charge_id, "q1")]
        con.close()
    finally:
        crashed.close()


def test_a_clean_stop_or_the_same_boot_keeps_retries_free(path: Path) -> None:
    stopped = Ledger(path, boot=lambda: "boot-A")
    first = begin(stopped, "q1")
    assert isinstance(first, Charged)
    stopped.close()  # clean: everything synced, so nothing released was lost
    with Ledger(path, boot=lambda: "boot-B") as after:
        assert begin(after, "q1") == Pending(first.charge_id) and spent(after) == Decimal("0.1")
    crashed = Ledger(path, boot=lambda: "boot-B")  # unclean stop, but the machine did not restart
    second = begin(crashed, "q2")
    assert isinstance(second, Charged)
    with Ledger(path, boot=lambda: "boot-B") as after:
        assert begin(after, "q2") == Pending(second.charge_id) and spent(after) == Decimal("0.2")
    crashed.close()


def test_a_recharge_over_the_cap_is_refused_and_records_nothing(path: Path) -> None:
    crashed = Ledger(path, boot=lambda: "boot-A")
    first = begin(crashed, "q1", cap="0.1")
    assert isinstance(first, Charged)
    with Ledger(path, boot=lambda: "boot-B") as after:
        with pytest.raises(ResourceExhausted):
            begin(after, "q1", cap="0.1")
        assert spent(after) == Decimal("0.1")
        after.check()
        assert begin(after, "q1", cap="0.2") == Charged(first.charge_id)  # still owed a recharge
    crashed.close()
