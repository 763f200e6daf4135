"""The budget ledger (``node.ledger``): exact arithmetic at the cap, idempotence, same question same answer,
first completion wins, per-study budgets, refusal of foreign files, and no overspend under 200 threads or
two processes on one file. Every ledger lives in ``tmp_path`` and is closed by the test that opens it.
"""

from __future__ import annotations

import contextlib
import decimal
import hashlib
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genogate.errors import (
    AlreadyExists,
    Internal,
    InvalidArgument,
    Reason,
    ResourceExhausted,
    StoreError,
    Unauthenticated,
    Unavailable,
)
from node.ledger import MAX_PERIOD_DAYS, Answered, Charged, Ledger, Pending

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
    **kw: Any,
) -> Charged | Pending | Answered:
    """``ledger.begin`` with defaults: payload and canonical query derived from the query id, researcher
    ``alice`` with no node-wide caps, caller ``coordinator``, epoch 0; ``kw`` are further arguments."""
    kw.setdefault("researcher", "alice")
    kw.setdefault("caller", "coordinator")
    kw.setdefault("epoch", 0)
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
        **kw,
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
    assert err.value.message == (
        "the study's privacy budget at this site is exhausted: the query asks ε 1e-12; the study has ε 0 left of its"
        " cap of ε 1 at this site (ε 1 spent; the cap holds for the study's whole duration)"
    )
    assert ledger.history("study-1") == before
    status = ledger.budget("study-1", Decimal(1), Decimal(0))
    assert (status.epsilon_spent, status.epsilon_remaining, status.queries_answered) == (Decimal(1), Decimal(0), 3)
    # Refused means not recorded: the same query id is free to be asked again, and is refused again.
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q4", eps=UNIT)
    ledger.check()


def test_a_budget_refusal_states_what_was_asked_what_is_left_and_the_cap_and_no_other_studys_spending(
    ledger: Ledger,
) -> None:
    charge(ledger, "other", study="study-2", eps="0.35", cap="10")  # another study of the same researcher
    charge(ledger, "q1", eps="0.6")
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "q2", eps="0.6")
    message = err.value.message
    assert err.value.reason is Reason.BUDGET_EXHAUSTED
    assert "asks ε 0.6" in message and "ε 0.4 left" in message and "cap of ε 1 " in message
    assert "ε 0.6 spent" in message and "δ" not in message  # a pure-ε query is told about ε only
    assert "0.35" not in message and "0.95" not in message and "study-2" not in message
    assert "study-1" not in message  # the detail (logs) names the study; the caller knows which it asked


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
            researcher="alice",
        )


def test_delta_is_accounted_and_capped_independently_of_epsilon(ledger: Ledger) -> None:
    dcap = "1e-6"
    charge(ledger, "q1", eps="0.01", delta="5e-7", dcap=dcap)
    charge(ledger, "q2", eps="0.01", delta="5e-7", dcap=dcap)  # delta exactly at its cap
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "q3", eps="0.01", delta=UNIT, dcap=dcap)  # epsilon fits; delta does not
    assert err.value.reason is Reason.BUDGET_EXHAUSTED
    assert err.value.message.endswith(
        "the query asks ε 0.01; the study has ε 0.98 left of its cap of ε 1 at this site (ε 0.02 spent; the cap holds"
        " for the study's whole duration); it asks δ 1e-12, with δ 0 left of the cap of δ 0.000001 (δ 0.000001 spent)"
    )
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
    assert err.value.message == (
        "the query id was already used with a different query: 'q1' (a new question needs a new query id)"
    )
    assert "q1" in err.value.detail and "study-1" not in err.value.message
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
            researcher="alice",
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
    write_v3(path)
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
    assert con.execute("PRAGMA user_version").fetchone()[0] == 5  # through versions 2, 3 and 4
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
                          epsilon=Decimal("0.01"), delta=Decimal(0), epsilon_cap=cap, delta_cap=Decimal(0), now_ms=1,
                          researcher="alice")
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


def seen(ledger: Ledger, study_id: str, query_id: str, canonical_sha256: str, epoch: int = 0) -> bool:
    """Whether ``begin`` would find this query id, or this canonical query in this consent epoch, already
    recorded under the study (a retry or a repeat), read from the file on a connection of its own."""
    with contextlib.closing(sqlite3.connect(f"file:{ledger.path}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM queries WHERE study_id = ?1 AND query_id = ?2)"
            " OR EXISTS (SELECT 1 FROM charges WHERE study_id = ?1 AND canonical_sha256 = ?3 AND epoch = ?4)",
            (study_id, query_id, canonical_sha256, epoch),
        ).fetchone()
    return bool(row is not None and row[0])


def test_seen_knows_retries_and_repeats_but_not_new_questions(ledger: Ledger) -> None:
    assert not seen(ledger, "study-1", "q1", sha("canonical q1"))
    charge(ledger, "q1")
    assert seen(ledger, "study-1", "q1", sha("something else"))  # a retry of the id
    assert seen(ledger, "study-1", "q2", sha("canonical q1"))  # the same question under another id
    assert not seen(ledger, "study-1", "q2", sha("canonical q2"))
    assert not seen(ledger, "study-2", "q1", sha("canonical q1"))  # scoped to the study


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


# Version 3 files -----------------------------------------------------------------------------------------

# The schema version 3 wrote (frozen here: the migration must take exactly such a file to version 4).
V3_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE charges (
    charge_id INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL, canonical_sha256 TEXT NOT NULL,
    query_id TEXT NOT NULL, epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units INTEGER NOT NULL CHECK (delta_units >= 0), charged_ms INTEGER NOT NULL, result BLOB,
    completed_ms INTEGER, UNIQUE (study_id, canonical_sha256)
) STRICT;
CREATE TABLE queries (
    study_id TEXT NOT NULL, query_id TEXT NOT NULL, payload_sha256 TEXT NOT NULL,
    charge_id INTEGER NOT NULL REFERENCES charges (charge_id), received_ms INTEGER NOT NULL,
    PRIMARY KEY (study_id, query_id)
) STRICT;
CREATE TABLE spent (
    study_id TEXT PRIMARY KEY, epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units INTEGER NOT NULL CHECK (delta_units >= 0),
    answered INTEGER NOT NULL DEFAULT 0 CHECK (answered >= 0)
) STRICT;
CREATE INDEX queries_by_charge ON queries (charge_id);
CREATE TABLE recharges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, charge_id INTEGER NOT NULL REFERENCES charges (charge_id),
    query_id TEXT NOT NULL, epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units INTEGER NOT NULL CHECK (delta_units >= 0), charged_ms INTEGER NOT NULL
) STRICT;
CREATE TRIGGER recharges_keep BEFORE DELETE ON recharges BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER recharges_fixed BEFORE UPDATE ON recharges BEGIN SELECT RAISE(ABORT, 'a charge never changes'); END;
{AUDIT}
CREATE TRIGGER charges_keep BEFORE DELETE ON charges BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER charges_fixed BEFORE UPDATE OF
    charge_id, study_id, canonical_sha256, query_id, epsilon_units, delta_units, charged_ms ON charges
    BEGIN SELECT RAISE(ABORT, 'a charge never changes'); END;
CREATE TRIGGER charges_result_once BEFORE UPDATE OF result, completed_ms ON charges
    WHEN OLD.result IS NOT NULL BEGIN SELECT RAISE(ABORT, 'a stored result is never replaced'); END;
CREATE TRIGGER queries_keep BEFORE DELETE ON queries BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER queries_fixed BEFORE UPDATE ON queries BEGIN SELECT RAISE(ABORT, 'a recorded query never changes'); END;
CREATE TRIGGER spent_keep BEFORE DELETE ON spent BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER spent_grows BEFORE UPDATE ON spent
    WHEN NEW.study_id IS NOT OLD.study_id OR NEW.epsilon_units < OLD.epsilon_units
      OR NEW.delta_units < OLD.delta_units OR NEW.answered < OLD.answered
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
"""
T0 = 1_700_000_000_000  # the test helpers' default clock
DAY = 86_400_000
TENTH = 10**11  # 0.1 in ledger units


def write_v3(path: Path, *, recharge: bool = False) -> None:
    """A ledger file as version 3 left it: study-1 with q1 charged and answered, q2 a replay of it, q3 charged
    and pending; study-2 with r1 (0.5, two days earlier); with ``recharge``, q3 paid again a day later."""
    from genogate import audit
    from genogate.sqlitedb import statements

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("BEGIN")
    for statement in statements(V3_SCHEMA.replace("{AUDIT}", audit.SCHEMA.strip())):
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('unit', '1e-12')")
    con.executemany(
        "INSERT INTO charges VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
        [
            (1, "study-1", sha("c"), "q1", TENTH, T0, b"result of q1", T0),
            (2, "study-1", sha("pending"), "q3", TENTH, T0, None, None),
            (3, "study-2", sha("c"), "r1", 5 * TENTH, T0 - 2 * DAY, b"result of r1", T0 - 2 * DAY),
        ],
    )
    con.executemany(
        "INSERT INTO queries VALUES (?, ?, ?, ?, ?)",
        [
            ("study-1", "q1", sha("payload q1"), 1, T0),
            ("study-1", "q2", sha("payload q2"), 1, T0),
            ("study-1", "q3", sha("payload q3"), 2, T0),
            ("study-2", "r1", sha("payload r1"), 3, T0 - 2 * DAY),
        ],
    )
    extra = TENTH if recharge else 0
    con.executemany(
        "INSERT INTO spent VALUES (?, ?, 0, ?)", [("study-1", 2 * TENTH + extra, 2), ("study-2", 5 * TENTH, 1)]
    )
    if recharge:
        con.execute(
            "INSERT INTO recharges (charge_id, query_id, epsilon_units, delta_units, charged_ms)"
            " VALUES (2, 'q3', ?, 0, ?)",
            (TENTH, T0 + DAY),
        )
    con.execute("COMMIT")
    con.execute(f"PRAGMA application_id = {0x47474C44}")
    con.execute("PRAGMA user_version = 3")
    con.close()


def test_a_version_3_ledger_is_upgraded_keeping_every_charge_for_the_node_cap_and_no_stored_answer(path: Path) -> None:
    write_v3(path, recharge=True)
    with Ledger(path) as led:
        led.check()  # per-day totals rebuilt from the charges and the recharge
        assert spent(led) == Decimal("0.3") and spent(led, "study-2") == Decimal("0.5")
        entries = {e.query_id: e for e in led.history("study-1")}
        assert {(e.charge_id, e.researcher, e.epoch, e.caller) for e in entries.values()} == {
            (1, "", 0, ""),
            (2, "", 0, ""),
        }
        # The old charges count toward the node's cap (0.8 in the window) but toward no researcher's.
        now = T0 + DAY
        with pytest.raises(ResourceExhausted) as err:
            begin(led, "n1", eps="0.3", node_cap=Decimal("1"), now_ms=now)
        assert err.value.reason is Reason.NODE_BUDGET_EXHAUSTED
        charge(led, "n2", eps="0.1", node_cap=Decimal("1"), researcher_cap=Decimal("0.1"), now_ms=now, cap="2")
        # An old query id keeps its first answer for its (unknown, '') caller only.
        assert begin(led, "q1", caller="") == Answered(b"result of q1", "q1", from_store=False)
        with pytest.raises(Unauthenticated) as replay:
            begin(led, "q1", caller="coordinator")
        assert replay.value.reason is Reason.REPLAYED_NONCE
        # A repeat of an old question under a new id, in a registered epoch, is a new charge: no stored
        # answer of unknown epoch is served again.
        epoch = led.register_epoch(sha("cohort"), now_ms=now)
        assert epoch == 1
        again = begin(led, "q9", canonical="c", epoch=epoch, now_ms=now, cap="2")
        assert isinstance(again, Charged) and again.charge_id == 5  # ids go on from the old ones
        led.check()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 5
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("UPDATE charges SET epoch = 3")
    finally:
        con.close()


# Budgets above the study ---------------------------------------------------------------------------------


def test_a_researcher_cap_counts_every_study_exactly_at_the_limit(ledger: Ledger) -> None:
    caps = {"researcher_cap": Decimal(1), "cap": "10"}
    charge(ledger, "a1", study="a", eps="0.4", **caps)
    charge(ledger, "b1", study="b", eps=Decimal("0.6") - UNIT, **caps)
    charge(ledger, "c1", study="c", eps=UNIT, **caps)  # exactly at the cap
    before = ledger.history("d")
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "d1", study="d", eps=UNIT, **caps)
    assert err.value.reason is Reason.RESEARCHER_BUDGET_EXHAUSTED
    assert err.value.message == (
        "the researcher's privacy budget at this site across all their studies over the last 365 days is exhausted:"
        " the query asks ε 1e-12; the researcher has ε 0 left of this site's cap of ε 1 per researcher per 365 days"
        " (ε 1 spent across their studies)"
    )
    assert ledger.history("d") == before == [] and spent(ledger, "d") == 0
    charge(ledger, "d1", study="d", eps="1", researcher="bob", **caps)  # another researcher: their own cap
    status = ledger.budget("a", Decimal(10), Decimal(0), researcher="alice", now_ms=T0)
    assert status.researcher_epsilon_spent == Decimal(1) and status.epsilon_spent == Decimal("0.4")
    assert ledger.budget("a", Decimal(10), Decimal(0), researcher="bob", now_ms=T0).researcher_epsilon_spent == 1
    ledger.check()


def test_a_node_cap_counts_everyone_and_says_nothing_of_their_spending(ledger: Ledger) -> None:
    caps = {"node_cap": Decimal("1"), "cap": "10"}
    charge(ledger, "a1", study="a", eps="0.7", researcher="alice", **caps)
    charge(ledger, "b1", study="b", eps="0.3", researcher="bob", **caps)
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "c1", study="c", eps=UNIT, researcher="carol", **caps)
    assert err.value.reason is Reason.NODE_BUDGET_EXHAUSTED
    assert err.value.message == (
        "this site's privacy budget across all researchers over the last 365 days is exhausted: the query asks"
        " ε 1e-12 and this site's cap across everyone is ε 1 per 365 days (what other studies spent is not disclosed)"
    )
    assert "0.7" not in err.value.message and "alice" not in err.value.message
    ledger.check()


def test_the_study_cap_is_reported_before_the_node_wide_ones(ledger: Ledger) -> None:
    with pytest.raises(ResourceExhausted) as err:
        begin(ledger, "q", eps="2", cap="1", researcher_cap=Decimal(1), node_cap=Decimal(1))
    assert err.value.reason is Reason.BUDGET_EXHAUSTED


@pytest.mark.parametrize("period", [1, 2, 30])
def test_a_charge_leaves_the_rolling_window_after_the_period_never_before(ledger: Ledger, period: int) -> None:
    caps = {"researcher_cap": Decimal(1), "period_days": period, "cap": "10"}
    t = T0 + 12_345  # not on a day boundary
    charge(ledger, "q0", study="s0", eps="1", now_ms=t, **caps)
    for i, later in enumerate([1, DAY, period * DAY - 1, period * DAY]):  # within the period: still counted
        with pytest.raises(ResourceExhausted) as err:
            begin(ledger, f"early{i}", study="s1", eps=UNIT, now_ms=t + later, **caps)
        assert err.value.reason is Reason.RESEARCHER_BUDGET_EXHAUSTED
    # By whole UTC days, the charge counts until the end of its day + period: released a day later at most.
    charge(ledger, "late", study="s1", eps="1", now_ms=t + (period + 1) * DAY, **caps)
    status = ledger.budget(
        "s1", Decimal(10), Decimal(0), researcher="alice", now_ms=t + (period + 1) * DAY, period_days=period
    )
    assert status.researcher_epsilon_spent == Decimal(1)
    ledger.check()


def test_a_clock_stepped_back_still_counts_later_charges(ledger: Ledger) -> None:
    charge(ledger, "q0", eps="1", now_ms=T0 + 5 * DAY, researcher_cap=Decimal(1))
    with pytest.raises(ResourceExhausted):
        begin(ledger, "q1", study="s2", eps=UNIT, now_ms=T0, researcher_cap=Decimal(1))


@pytest.mark.parametrize("period", [0, -1, MAX_PERIOD_DAYS + 1])
def test_a_period_out_of_range_is_refused(ledger: Ledger, period: int) -> None:
    with pytest.raises(InvalidArgument):
        begin(ledger, "q", period_days=period)


def test_a_recharge_is_paid_by_the_researcher_asking_now_and_within_their_cap(path: Path) -> None:
    crashed = Ledger(path, boot=lambda: "boot-A")
    first = begin(crashed, "q1", eps="0.5", researcher_cap=Decimal(1))
    assert isinstance(first, Charged)
    with Ledger(path, boot=lambda: "boot-B") as after:
        charge(after, "q2", study="s2", eps="0.5", researcher_cap=Decimal(1))  # alice: 1.0 spent
        with pytest.raises(ResourceExhausted) as err:
            begin(after, "q1", eps="0.5", researcher_cap=Decimal(1))
        assert err.value.reason is Reason.RESEARCHER_BUDGET_EXHAUSTED
        assert begin(after, "q1", eps="0.5", researcher_cap=Decimal("1.5")) == Charged(first.charge_id)
        assert after.budget(
            "x", Decimal(1), Decimal(0), researcher="alice", now_ms=T0
        ).researcher_epsilon_spent == Decimal("1.5")
        after.check()
    crashed.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "carol"]),
            st.integers(0, 5),  # study
            st.integers(0, 60),  # ε in hundredths
            st.integers(0, 3 * DAY),  # time since the previous step
        ),
        min_size=1,
        max_size=40,
    ),
    period=st.integers(1, 4),
)
def test_no_sequence_of_charges_lets_anyone_exceed_a_cap_in_any_window(
    steps: list[tuple[str, int, int, int]], period: int
) -> None:
    """Whatever researchers, studies, amounts and times: in every window of ``period`` days ending at a
    charge, no researcher's charges exceed the researcher cap and nobody's together exceed the node cap;
    refusals record nothing, and the ledger's check holds."""
    r_cap, n_cap = Decimal("1"), Decimal("2")
    made: list[tuple[str, int, Decimal]] = []
    with tempfile.TemporaryDirectory() as d, Ledger(Path(d) / "ledger.sqlite") as led:
        now = T0
        for i, (who, study_no, hundredths, gap) in enumerate(steps):
            now += gap
            eps = Decimal(hundredths) / 100
            try:
                charge(
                    led,
                    f"q{i}",
                    study=f"s{study_no}",
                    eps=eps,
                    cap="100",
                    now_ms=now,
                    researcher=who,
                    researcher_cap=r_cap,
                    node_cap=n_cap,
                    period_days=period,
                )
                made.append((who, now, eps))
            except ResourceExhausted as exc:
                assert exc.reason in (Reason.RESEARCHER_BUDGET_EXHAUSTED, Reason.NODE_BUDGET_EXHAUSTED)
        for _, end, _ in made:
            window = [(w, e) for w, t, e in made if end - period * DAY < t <= end]
            assert sum((e for _, e in window), Decimal(0)) <= n_cap
            for who in ("alice", "bob", "carol"):
                assert sum((e for w, e in window if w == who), Decimal(0)) <= r_cap
        assert sum(len(led.history(f"s{k}")) for k in range(6)) == len(made)
        led.check()


# Consent epochs ------------------------------------------------------------------------------------------


def test_epochs_follow_the_cohort_and_never_return(ledger: Ledger) -> None:
    assert ledger.register_epoch(sha("cohort A"), now_ms=1) == 1
    assert ledger.register_epoch(sha("cohort A"), now_ms=2) == 1  # a restart on the same cohort
    assert ledger.register_epoch(sha("cohort B"), now_ms=3) == 2  # a withdrawal
    assert ledger.register_epoch(sha("cohort A"), now_ms=4) == 3  # reverted: a new epoch, not epoch 1 again
    assert ledger.register_epoch(sha("cohort A"), now_ms=5) == 3
    ledger.check()
    with pytest.raises(InvalidArgument):
        ledger.register_epoch("not a hash", now_ms=6)


def test_a_stored_release_answers_repeats_only_within_its_epoch(ledger: Ledger) -> None:
    e1 = ledger.register_epoch(sha("before"), now_ms=T0)
    first = begin(ledger, "q1", canonical="c", epoch=e1)
    assert isinstance(first, Charged) and first.epoch == e1
    ledger.complete(first.charge_id, b"epoch 1 answer")
    assert seen(ledger, "study-1", "q9", sha("c"), e1)
    e2 = ledger.register_epoch(sha("after a withdrawal"), now_ms=T0)
    assert not seen(ledger, "study-1", "q9", sha("c"), e2)
    # The same question under a new id in the new epoch: a new charge.
    second = begin(ledger, "q2", canonical="c", epoch=e2)
    assert isinstance(second, Charged) and second.charge_id != first.charge_id and second.epoch == e2
    ledger.complete(second.charge_id, b"epoch 2 answer")
    # A third time: the new epoch's stored release, at no cost.
    third = begin(ledger, "q3", canonical="c", epoch=e2)
    assert third == Answered(b"epoch 2 answer", "q2", from_store=True) and third.epoch == e2
    # A retry of the first query id keeps its first answer, which says its epoch.
    retry = begin(ledger, "q1", canonical="c", epoch=e2)
    assert retry == Answered(b"epoch 1 answer", "q1", from_store=False) and retry.epoch == e1
    assert spent(ledger) == Decimal("0.2")
    ledger.check()


def test_a_charge_in_an_unregistered_epoch_fails_the_check(ledger: Ledger) -> None:
    charge(ledger, "q1", epoch=7)
    with pytest.raises(StoreError, match="epoch 7, which was never registered"):
        ledger.check()


# Callers and what each outcome says about its charge -----------------------------------------------------


def test_a_query_id_is_answered_again_only_to_its_first_caller(ledger: Ledger) -> None:
    charge(ledger, "q1", caller="coordinator")
    pending = begin(ledger, "q2", caller="coordinator")
    for qid in ("q1", "q2"):
        before = ledger.history("study-1")
        with pytest.raises(Unauthenticated) as err:
            begin(ledger, qid, caller="mallory")
        assert err.value.reason is Reason.REPLAYED_NONCE
        assert err.value.message == "the query was already sent by another caller"
        assert ledger.history("study-1") == before
    assert begin(ledger, "q1", caller="coordinator") == Answered(b"result of q1", "q1", from_store=False)
    assert isinstance(pending, Charged) and begin(ledger, "q2", caller="coordinator") == Pending(pending.charge_id)
    # A new query id for the same question is not a replay: any caller the service let through may ask it.
    assert begin(ledger, "q3", canonical="canonical q1", caller="mallory") == Answered(
        b"result of q1", "q1", from_store=True
    )


def test_every_outcome_names_the_original_charge(ledger: Ledger) -> None:
    first = begin(ledger, "q1", canonical="c", eps="0.3", delta="1e-7", dcap="1")
    assert isinstance(first, Charged)
    assert (first.original_epsilon, first.original_delta, first.original_query_id) == (
        Decimal("0.3"),
        Decimal("1e-7"),
        "q1",
    )
    joined = begin(ledger, "q2", canonical="c", eps="0.9", dcap="1")  # joins the charge being computed: pays 0
    assert isinstance(joined, Pending)
    assert (joined.original_epsilon, joined.original_query_id) == (Decimal("0.3"), "q1")
    ledger.complete(first.charge_id, b"r")
    later = begin(ledger, "q3", canonical="c", eps="0.5", dcap="1")
    assert isinstance(later, Answered) and (later.original_epsilon, later.original_delta) == (
        Decimal("0.3"),
        Decimal("1e-7"),
    )
    assert spent(ledger) == Decimal("0.3")


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM researcher_days",
        "UPDATE researcher_days SET epsilon_units = 0",
        "DELETE FROM node_days",
        "UPDATE node_days SET epsilon_units = 0",
        "DELETE FROM epochs",
        "UPDATE epochs SET cohort_sha256 = 'x'",
        "UPDATE charges SET researcher = 'someone else'",
        "UPDATE charges SET epoch = 2",
    ],
)
def test_the_schema_refuses_giving_node_wide_budget_back(path: Path, statement: str) -> None:
    with Ledger(path) as led:
        led.register_epoch(sha("cohort"), now_ms=1)
        charge(led, "q1", epoch=1)
    con = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute(statement)
    finally:
        con.close()


@pytest.mark.parametrize(("table", "match"), [("researcher_days", "researcher 'alice' day"), ("node_days", "node day")])
def test_check_reports_a_day_total_that_disagrees_with_the_charges(path: Path, table: str, match: str) -> None:
    with Ledger(path) as led:
        charge(led, "q1")
        led.check()
    con = sqlite3.connect(path)
    con.execute(f"UPDATE {table} SET epsilon_units = epsilon_units + 1")
    con.commit()
    con.close()
    with Ledger(path) as led, pytest.raises(StoreError, match=match):
        led.check()
