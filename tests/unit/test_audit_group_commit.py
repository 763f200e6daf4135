"""The coordinator's audit log commits concurrent appends together (``genogate.groupcommit``): one transaction
and one fsync per batch, the hash chain linked in the order the callers queued, each caller its own position,
and a batch that fails fails for every caller in it with nothing written. Real SQLite files throughout (a full
disk is a small tmpfs, as in tests/e2e/test_faults.py)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.record import FORMAT, record_run, recover_history
from genogate import audit
from genogate.audit import AuditLog
from genogate.errors import StoreError
from genogate.signing import Signer
from tests.coordstate import World, approved, open_world, sqlite_opener
from tests.disks import mount_tmpfs


def _log(path: Path) -> tuple[AuditLog, Signer]:
    signer = Signer(Ed25519PrivateKey.generate())
    return AuditLog(path, signer), signer


def _intact(path: Path, signer: Signer) -> list[audit.Row]:
    rows = audit.read_file(path)
    report = audit.check(rows, audit.keys(signer.public_raw))
    assert report.ok, report.problems
    return rows


def _in_one_batch(
    log: AuditLog,
    entries: list[dict[str, Any]],
    *,
    then: Callable[[int], object] | None = None,
    while_held: Callable[[], object] = lambda: None,
) -> list[int | BaseException]:
    """Append ``entries[0]`` alone; while its ``then`` holds the log's lock, the other entries are appended from
    a thread each and queue behind it, so that they commit as one batch once it lets go (after ``while_held``).
    Each follower's append runs ``then``. Returns each entry's position, or the error its append raised."""
    out: list[int | BaseException] = [StoreError("not run")] * len(entries)
    holding = threading.Event()

    def hold(_seq: int) -> None:
        holding.set()
        deadline = time.monotonic() + 60
        while log.waiting < len(entries) - 1:
            assert time.monotonic() < deadline, f"only {log.waiting} appends queued"
            time.sleep(0.002)
        while_held()

    def run(i: int) -> None:
        try:
            out[i] = log.append(entries[i], then=hold if i == 0 else then)
        except Exception as exc:  # noqa: BLE001 - returned for the test to assert on
            out[i] = exc

    threads = [threading.Thread(target=run, args=(0,))]
    threads[0].start()
    assert holding.wait(60)
    threads += [threading.Thread(target=run, args=(i,)) for i in range(1, len(entries))]
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    return out


def _all(n: int, work: Callable[[int], None]) -> None:
    """``work(0)`` ... ``work(n - 1)``, each in a thread of its own, all at once; returns when all are done."""
    workers = [threading.Thread(target=work, args=(t,)) for t in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert not w.is_alive()


def test_appends_from_many_threads_make_one_valid_chain_each_caller_its_own_entry(tmp_path: Path) -> None:
    log, signer = _log(tmp_path / "audit.sqlite")
    threads, per_thread = 16, 25
    got: dict[int, dict[str, Any]] = {}
    got_lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                entry = {"event": "test", "thread": t, "i": i, "pad": "x" * (t * 7 + i)}
                seq = log.append(entry)
                with got_lock:
                    assert seq not in got, f"position {seq} given twice"
                    got[seq] = entry
        except BaseException as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    _all(threads, work)
    assert not errors, errors[:3]
    n = threads * per_thread
    assert sorted(got) == list(range(1, n + 1))
    log.close()
    rows = _intact(tmp_path / "audit.sqlite", signer)
    assert [r.seq for r in rows] == list(range(1, n + 1))
    for row in rows:  # each caller's position holds the entry it appended
        assert json.loads(row.entry) == got[row.seq]
    # Each thread's own entries are in the order it appended them.
    for t in range(threads):
        mine = [got[s]["i"] for s in sorted(got) if got[s]["thread"] == t]
        assert mine == list(range(per_thread))


def test_queued_appends_commit_as_one_batch_before_any_of_their_callers_returns(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    log, signer = _log(path)
    seen: dict[int, int] = {}

    def then(seq: int) -> None:  # runs once the batch is durable: every entry of the batch is in the file
        seen[seq] = len(audit.read_file(path))

    entries = [{"event": "test", "n": i} for i in range(13)]
    out = _in_one_batch(log, entries, then=then)
    assert out[0] == 1
    assert sorted(out[1:]) == list(range(2, 14))  # type: ignore[type-var]
    # One batch: when the first follower's ``then`` ran, all twelve were already committed (appended one
    # transaction each, the first would have seen 2 entries).
    assert seen == dict.fromkeys(range(2, 14), 13)
    # ... and in the order of their positions (the history rows that ``then`` records follow the entries).
    rows = _intact(path, signer)
    for i, seq in enumerate(out):
        assert json.loads(rows[int(seq) - 1].entry) == entries[i]  # type: ignore[call-overload]
    log.close()


def test_a_then_that_fails_fails_its_own_caller_only_and_the_entry_stays(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    log, signer = _log(path)

    def then(seq: int) -> None:
        if seq % 2:
            raise StoreError(f"history row {seq} not recorded")

    out = _in_one_batch(log, [{"event": "test", "n": i} for i in range(9)], then=then)
    failed = sorted(int(str(e).split()[2]) for e in out[1:] if isinstance(e, StoreError))
    assert failed and all(s % 2 for s in failed)
    assert sorted(x for x in out[1:] if isinstance(x, int)) == [s for s in range(2, 10) if s % 2 == 0]
    assert len(_intact(path, signer)) == 9  # every entry stays
    log.close()


def test_a_closed_log_fails_every_queued_append_with_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    log, signer = _log(path)
    log.append({"event": "test", "n": 0})
    log.close()
    with pytest.raises(StoreError, match="closed"):
        log.append({"event": "test", "n": 1})
    assert len(_intact(path, signer)) == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "small"
    mount_tmpfs(disk, "2m")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_batch_whose_commit_fails_fails_every_caller_and_writes_nothing(small_disk: Path) -> None:
    path = small_disk / "audit.sqlite"
    log, signer = _log(path)
    filler = small_disk / "filler"

    def fill() -> None:  # the disk fills up while the batch waits: its COMMIT cannot write the WAL
        with open(filler, "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\1" * 4096)
            except OSError:
                pass

    entries = [{"event": "test", "n": i, "pad": "y" * 3000} for i in range(9)]
    out = _in_one_batch(log, entries, while_held=fill)
    assert out[0] == 1
    assert all(isinstance(e, StoreError) and "cannot write the audit log" in str(e) for e in out[1:]), out
    rows = _intact(path, signer)
    assert [json.loads(r.entry) for r in rows] == [entries[0]]  # nothing of the failed batch
    filler.unlink()  # room again: the chain goes on from where it was
    assert log.append({"event": "test", "n": "after"}) == 2
    log.close()
    assert [r.seq for r in _intact(path, signer)] == [1, 2]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path, sqlite_opener) as w:
        yield w


def _entry(study: str, query_id: str) -> dict[str, Any]:
    return {
        "event": "run_query",
        "format": FORMAT,
        "study": study,
        "query_id": query_id,
        "kind": "cohort_count",
        "epsilon": "0.5",
        "sites": [{"site": "site-a", "status": "answered"}, {"site": "site-b", "status": "failed"}],
    }


def test_history_rows_follow_the_entries_under_concurrent_runs_and_lost_ones_are_restored(world: World) -> None:
    study = approved(world).study_id
    log = AuditLog(world.where / "audit.sqlite", Signer(Ed25519PrivateKey.generate()))
    threads, per_thread = 8, 6
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                record_run(world.state, log, _entry(study, f"q-{t}-{i}"), now_ms=1_700_000_000_000 + i)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    _all(threads, work)
    assert not errors, errors[:3]
    in_log = [json.loads(r.entry)["query_id"] for r in log.rows()]
    assert len(in_log) == threads * per_thread
    assert [h.query_id for h in world.state.history(study)] == in_log  # history in the order of the entries
    assert world.state.last_audit_seq() == len(in_log)
    # Runs whose history rows a machine crash lost: entries appended as batches, without their rows.
    lost = [_entry(study, f"lost-{i}") for i in range(7)]
    out = _in_one_batch(log, lost)
    assert sorted(out) == list(range(len(in_log) + 1, len(in_log) + 8))  # type: ignore[type-var]
    assert recover_history(world.state, log) == 7
    restored = [h.query_id for h in world.state.history(study)]
    assert restored == in_log + [json.loads(r.entry)["query_id"] for r in log.rows(after=len(in_log))]
    assert sorted(restored[len(in_log) :]) == sorted(e["query_id"] for e in lost)
    assert recover_history(world.state, log) == 0
    log.close()
