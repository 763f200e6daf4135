"""Interleaved A/B of the coordinator's recording alone (``coordinator.record.record_run``: the audit entry,
synced, then the history row), the part of a federated query that every run waits for and that no node
shares. Each measurement is a fresh subprocess running tree A's or tree B's code on its own real files (an
approved study's state and an audit log, under ``WORK``, on the disk the coordinator would use): ``threads``
threads record distinct runs (a 3-site single-variant entry as ``run_query_entry`` makes it) back to back for
``seconds``. Runs alternate A B B A ... per thread count; reported per side: mean runs/s, p50 latency of
``record_run`` and CPU per run, then B/A.

    PYTHONPATH=TREE_B .venv/bin/python bench/ab_record.py TREE_A TREE_B WORK [--threads 8,32] [--seconds 3]
        [--rounds 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path


def entry(study: str, query_id: str) -> dict[str, object]:
    """A run entry the size of a 3-site single-variant allele frequency's."""
    receipt = {
        "payload_sha256": "a" * 64,
        "result_sha256": "b" * 64,
        "signature": "s" * 88,
        "key_id": "k" * 64,
        "header": {"query_id": query_id, "site": "site-a", "epsilon_charged": "0.1", "released_unix_ms": 1},
    }
    return {
        "event": "run_query",
        "format": 2,
        "caller": "CN=alice",
        "researcher_key": "f" * 64,
        "study": study,
        "query_id": query_id,
        "kind": "allele_frequency",
        "epsilon": "0.1",
        "envelope_sha256": "e" * 64,
        "query": {"allele_frequency": {"variants": [{"chrom": "1", "pos": "12345", "ref": "A", "alt": "G"}]}},
        "sites": [
            {"site": f"site-{c}", "status": "answered", "reason": "UNSPECIFIED", "attempts": 1, "receipt": receipt}
            for c in "abc"
        ],
        "combined_sha256": "c" * 64,
    }


def one(work: Path, threads: int, seconds: float) -> dict[str, float]:
    """One measurement with the code on ``sys.path`` (run as ``ab_record.py --one``)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from coordinator.record import record_run
    from genogate.audit import AuditLog
    from genogate.signing import Signer
    from tests.coordstate import approved, open_world, sqlite_opener

    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as d, open_world(Path(d), sqlite_opener) as w:
        study = approved(w).study_id
        log = AuditLog(w.where / "audit.sqlite", Signer(Ed25519PrivateKey.generate()))
        for i in range(20):  # warm-up: the files' first pages
            record_run(w.state, log, entry(study, f"warm-{i}"), now_ms=1)
        lat: list[float] = []
        ids = itertools.count()
        stop = time.perf_counter() + seconds

        def work_() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                record_run(w.state, log, entry(study, f"q-{next(ids)}"), now_ms=1)
                lat.append(time.perf_counter() - t0)

        pool = [threading.Thread(target=work_) for _ in range(threads)]
        t0, c0 = time.perf_counter(), time.process_time()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        log.close()
    return {
        "runs_per_s": len(lat) / elapsed,
        "p50_ms": statistics.median(lat) * 1e3,
        "cpu_ms_per_run": cpu / len(lat) * 1e3,
    }


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree_a", type=Path)
    ap.add_argument("tree_b", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("--threads", default="8,32")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    here = Path(__file__).resolve()
    trees = {"A": args.tree_a.resolve(), "B": args.tree_b.resolve()}
    out: dict[str, object] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        for r in range(args.rounds):
            for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                done = subprocess.run(
                    [sys.executable, str(here), "--one", str(args.work / side), str(threads), str(args.seconds)],
                    env={**os.environ, "PYTHONPATH": str(trees[side])},
                    cwd=trees[side],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                got[side].append(json.loads(done.stdout))
        row = {side: {k: round(statistics.fmean(m[k] for m in ms), 3) for k in ms[0]} for side, ms in got.items()}
        row["B/A"] = {k: round(row["B"][k] / row["A"][k], 3) for k in row["A"]}
        out[f"{threads} threads"] = row
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))))
    else:
        main(sys.argv[1:])
