"""Disk syncs and latency per federated query, for an interleaved A/B of two checkouts: the demo federation (a
coordinator and three node processes, committee-signed grants, mTLS, OpenDP, durable ledgers) started from
``--tree``, distinct single-variant allele frequencies through the coordinator, one at a time. Prints one JSON
line: the client's p50/p90 latency over ``--queries`` queries, then the fsync and fdatasync calls the three
node processes made (``strace -f -c`` attached to them) over ``--traced`` more queries, per query.

    python -m bench.node_fsync WORK [--tree CHECKOUT] [--samples 3000] [--variants 3000] [--queries 200]
        [--traced 100]

Run it alternately for the two trees: this machine's speed drifts by up to 2x within minutes, so only
interleaved samples compare (and strace's own overhead makes the traced queries unfit for timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.node_profile import start_demo, wait_up
from genogate.client import Client
from tests.terms import filler

ROOT = Path(__file__).resolve().parents[1]


def _descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _node_pids(demo: int) -> list[int]:
    pids = []
    for pid in _descendants(demo):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"node" in part for part in cmd) and b"serve" in cmd:
            pids.append(pid)
    return pids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.node_fsync", description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path, help="a scratch directory (emptied first)")
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose servers run (default: this one)")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--variants", type=int, default=3000)
    p.add_argument("--queries", type=int, default=200, help="timed queries, one at a time")
    p.add_argument("--traced", type=int, default=100, help="queries under strace")
    args = p.parse_args(argv)
    work: Path = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(args.tree.resolve()),
        "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000000",
    }
    demo = start_demo(work, args.tree, args.samples, args.variants, env)
    try:
        result = _measure(demo, work, args.queries, args.traced)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    print(json.dumps({"tree": str(args.tree), **result}))
    return 0


def _measure(demo: subprocess.Popen[str], work: Path, queries: int, traced: int) -> dict[str, object]:
    study, profile = wait_up(demo)
    import duckdb

    con = duckdb.connect(str(work / "fed" / "hospital-a" / "store.duckdb"), read_only=True)
    variants = [
        f"{c}-{p}-{r}-{a}" for c, p, r, a in con.execute("SELECT chrom, pos, ref, alt FROM variants").fetchall()
    ]
    con.close()
    nodes = _node_pids(demo.pid)
    if len(nodes) != 3:
        raise SystemExit(f"expected three node processes, found {nodes}")
    times: list[float] = []
    with Client.from_profile(profile) as client:

        def ask(i: int) -> None:
            client.allele_frequency(study, [variants[i % len(variants)]], where=f"age>=0 or {filler(i)}", epsilon=0.001)

        for i in range(20):  # warm up
            ask(i)
        for i in range(20, 20 + queries):
            t0 = time.perf_counter()
            ask(i)
            times.append(time.perf_counter() - t0)
        summary = work / "strace.txt"
        tracer = subprocess.Popen(
            ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(summary)]
            + [a for pid in nodes for a in ("-p", str(pid))],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # strace attaches to every thread
        for i in range(20 + queries, 20 + queries + traced):
            ask(i)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
    calls = {name: 0 for name in ("fsync", "fdatasync")}
    for line in summary.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in calls:
            calls[parts[-1]] = int(parts[3])
    times.sort()
    return {
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p90_ms": round(times[int(0.9 * len(times))] * 1000, 2),
        "syncs_per_query_per_node": round(sum(calls.values()) / traced / 3, 2),
        **{f"{k}_total": v for k, v in calls.items()},
        "traced": traced,
    }


if __name__ == "__main__":
    sys.exit(main())
