"""The ledger survives SIGKILL: no charge that ``begin()`` returned is ever lost.

A child process holds one charge it never completes (a query interrupted between charge and store), then
charges and completes queries in a free-running loop, printing each charge id as soon as ``begin()``
returns and again once ``complete()`` returns. The test SIGKILLs it after reading a given number of charge
lines (so the kill lands wherever the loop happens to be), reopens the file and checks:

* every printed charge is present and counted as spent, and spent equals the sum of the rows exactly
  (at most one charge committed but not yet printed);
* the file passes SQLite's integrity check and the ledger's own invariants, and accepts new charges;
* a retry with the same query id returns ``Pending`` for the interrupted charge (no new charge), the stored
  result for every completed one, and charges nothing.

SIGKILL tests the process crash; durability across power loss rests on ``synchronous=FULL`` (fsync of the
WAL on every commit), which a test cannot observe without cutting power.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from node.ledger import Answered, Charged, Ledger, Pending

EPS = Decimal("0.001")
CAP = Decimal(1000)
STUDY = "study-durable"
TIMEOUT_S = 60.0

CHILD = """
import hashlib, sys
from decimal import Decimal
from node.ledger import Charged, Ledger
path, prefix = sys.argv[1], sys.argv[2]
sha = lambda text: hashlib.sha256(text.encode()).hexdigest()
led = Ledger(path)

def begin(qid):
    r = led.begin(study_id="study-durable", query_id=qid, payload_sha256=sha("payload " + qid),
                  canonical_sha256=sha("canonical " + qid), epsilon=Decimal("0.001"), delta=Decimal(0),
                  epsilon_cap=Decimal(1000), delta_cap=Decimal(0), now_ms=1, researcher="alice")
    assert isinstance(r, Charged), r
    return r.charge_id

print("held", prefix + "held", begin(prefix + "held"), flush=True)  # never completed
i = 0
while True:
    qid = f"{prefix}{i}"
    cid = begin(qid)
    print("charged", qid, cid, flush=True)
    led.complete(cid, ("result of " + qid).encode())
    print("completed", qid, cid, flush=True)
    i += 1
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def retry(led: Ledger, qid: str, **extra: Any) -> Charged | Pending | Answered:
    """``qid``'s charge as the node asks it again (``extra``: e.g. its caller and nonce)."""
    return led.begin(
        study_id=STUDY,
        query_id=qid,
        payload_sha256=sha("payload " + qid),
        canonical_sha256=sha("canonical " + qid),
        epsilon=EPS,
        delta=Decimal(0),
        epsilon_cap=CAP,
        delta_cap=Decimal(0),
        now_ms=2,
        researcher="alice",
        **extra,
    )


def run_and_kill(path: Path, prefix: str, kill_after: int, child: str = CHILD) -> list[tuple[str, str, int]]:
    """Start the child, read lines until ``kill_after`` charges were printed, SIGKILL it; the lines read."""
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(path), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[tuple[str, str, int]] = []
    try:
        while sum(kind == "charged" for kind, _, _ in seen) < kill_after:
            try:
                line = lines.get(timeout=TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"the child printed nothing for {TIMEOUT_S} s")
            if line is None:
                assert proc.stderr is not None
                pytest.fail(f"the child exited early: {proc.wait(timeout=TIMEOUT_S)} {proc.stderr.read()}")
            kind, qid, cid = line.split()
            seen.append((kind, qid, int(cid)))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT_S)
        reader.join(timeout=TIMEOUT_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    # The child runs on while we read and kill: every line it printed before the kill is in the pipe, and the
    # pump has read them all by now (it ends at the pipe's end), so the drained queue is everything printed. A
    # last line without its newline was cut by the kill: not printed (its charge is the one the tests allow).
    while (line := lines.get_nowait() if not lines.empty() else None) is not None and line.endswith("\n"):
        kind, qid, cid = line.split()
        seen.append((kind, qid, int(cid)))
    return seen


@pytest.mark.parametrize("kill_after", [1, 17, 150])
def test_sigkill_mid_stream_loses_no_charge(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "ledger.sqlite"
    seen = run_and_kill(path, "a-", kill_after)
    held = [(qid, cid) for kind, qid, cid in seen if kind == "held"]
    printed = {qid: cid for kind, qid, cid in seen if kind in ("held", "charged")}
    completed = {qid for kind, qid, _ in seen if kind == "completed"}
    assert len(held) == 1 and len(printed) >= kill_after + 1

    with Ledger(path) as led:
        led.check()  # integrity_check plus totals == sum of charges
        rows = led.history(STUDY)
        recorded = {e.query_id: e.charge_id for e in rows}
        assert printed.items() <= recorded.items(), "a charge the child was told about is missing"
        assert len(recorded) - len(printed) in (0, 1)  # killed between commit and print, at most once
        status = led.budget(STUDY, CAP, Decimal(0))
        assert status.epsilon_spent == EPS * len(rows)

        held_qid, held_cid = held[0]
        assert retry(led, held_qid) == Pending(held_cid)
        for qid, cid in printed.items():
            again = retry(led, qid)
            if qid in completed:
                assert again == Answered(f"result of {qid}".encode(), qid, from_store=False)
            elif qid != held_qid:  # the kill came between begin() and complete(), or just after complete()
                assert again in (Pending(cid), Answered(f"result of {qid}".encode(), qid, from_store=False))
        assert led.budget(STUDY, CAP, Decimal(0)).epsilon_spent == status.epsilon_spent  # retries are free

        # The interrupted query can be finished, and the file takes new charges.
        assert led.complete(held_cid, b"late") == b"late"
        assert retry(led, held_qid) == Answered(b"late", held_qid, from_store=False)
        assert isinstance(retry(led, "after-the-crash"), Charged)
        led.check()


def test_repeated_kills_on_one_file_accumulate_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    printed: dict[str, int] = {}
    for round_ in range(3):
        seen = run_and_kill(path, f"r{round_}-", 10 + 7 * round_)
        printed.update({qid: cid for kind, qid, cid in seen if kind in ("held", "charged")})
    with Ledger(path) as led:
        led.check()
        rows = led.history(STUDY)
        assert printed.items() <= {e.query_id: e.charge_id for e in rows}.items()
        assert led.budget(STUDY, CAP, Decimal(0)).epsilon_spent == EPS * len(rows)
        assert len({e.charge_id for e in rows}) == len(rows)


# A signed query's nonce commits in its charge's transaction (``node.nonces``): the child checks each nonce,
# charges with it (``begin(nonce=...)``), stores the result and prints as above.
NONCE_CHILD = """
import hashlib, sys
from decimal import Decimal
from node.ledger import Charged, Ledger
from node.nonces import NonceStore
path, prefix = sys.argv[1], sys.argv[2]
sha = lambda text: hashlib.sha256(text.encode()).hexdigest()
led = Ledger(path)
nonces = NonceStore(led, 300_000)
i = 0
while True:
    qid = f"{prefix}{i}"
    claim = nonces.check(hashlib.sha256(qid.encode()).digest()[:16], sha("payload " + qid), 10**12, 10**12,
                         "coordinator")
    r = led.begin(study_id="study-durable", query_id=qid, payload_sha256=sha("payload " + qid),
                  canonical_sha256=sha("canonical " + qid), epsilon=Decimal("0.001"), delta=Decimal(0),
                  epsilon_cap=Decimal(1000), delta_cap=Decimal(0), now_ms=1, researcher="alice",
                  caller="coordinator", nonce=claim)
    assert isinstance(r, Charged), r
    print("charged", qid, r.charge_id, flush=True)
    led.complete(r.charge_id, ("result of " + qid).encode())
    print("completed", qid, r.charge_id, flush=True)
    i += 1
"""


@pytest.mark.parametrize("kill_after", [1, 40])
def test_sigkill_keeps_each_nonce_with_its_charge(tmp_path: Path, kill_after: int) -> None:
    """After SIGKILL anywhere in the loop: a nonce is on disk exactly when its charge is; the retry of a
    printed query (same nonce, payload and caller) passes the nonce check and is answered from the stored
    result, or found pending, with no second charge; the same nonce from another caller is refused."""
    from genogate.errors import Reason, Unauthenticated
    from node.nonces import NonceStore

    path = tmp_path / "ledger.sqlite"
    seen = run_and_kill(path, "n-", kill_after, child=NONCE_CHILD)
    printed = {qid: cid for kind, qid, cid in seen if kind == "charged"}
    completed = {qid for kind, qid, _ in seen if kind == "completed"}
    with Ledger(path) as led:
        led.check()
        charged = {e.query_id: e.charge_id for e in led.history(STUDY)}
        assert printed.items() <= charged.items() and len(charged) - len(printed) in (0, 1)
        nonces = NonceStore(led, 300_000)
        try:
            nonce = {qid: hashlib.sha256(qid.encode()).digest()[:16] for qid in charged}
            assert len(nonces) == len(charged)  # no nonce without its charge, no charge without its nonce
            spent = led.budget(STUDY, CAP, Decimal(0)).epsilon_spent
            assert spent == EPS * len(charged)
            for qid in charged:
                claim = nonces.check(nonce[qid], sha("payload " + qid), 10**12, 10**12 + 5, "coordinator")
                again = retry(led, qid, caller="coordinator", nonce=claim)
                stored = Answered(f"result of {qid}".encode(), qid, from_store=False)
                if qid in completed:
                    assert again == stored
                else:  # killed between begin() and complete(), or just after complete()
                    assert again in (Pending(charged[qid]), stored)
                with pytest.raises(Unauthenticated) as replay:
                    nonces.check(nonce[qid], sha("payload " + qid), 10**12, 10**12 + 5, "eve")
                assert replay.value.reason is Reason.REPLAYED_NONCE
            assert led.budget(STUDY, CAP, Decimal(0)).epsilon_spent == spent  # no second charge
            assert len(nonces) == len(charged)
        finally:
            nonces.close()
