"""Interleaved A/B of the coordinator's relay: two coordinators, one running the code of tree A and one of
tree B, each with its own copy of the same state (the same registered nodes, researcher and approved study,
the same committee key), in front of the same three real node processes (this tree's code; mTLS on loopback).
Queries alternate A, B, A, B, ... one at a time, so both see the same moments of this VM's drifting speed.

Each query is a distinct single-variant allele frequency (a fresh query id, a variant chosen in turn from the
store) at ε 1, asked through the SDK. Reported per side: latency p50/p90 and the coordinator process's CPU
per query (``/proc/PID/stat`` utime+stime over its queries), then the ratios B/A.

    PYTHONPATH=TREE_B .venv/bin/python bench/ab_relay.py TREE_A TREE_B WORK [QUERIES]
        [--threads 8,32 --seconds 5 --rounds 4] [--fsyncs S]

``--threads`` adds the same under load: windows of N client threads of distinct queries, alternating A B B A,
reporting queries/s, p50/p90 and coordinator CPU per query per side; ``--fsyncs S`` counts the coordinator's
fsync/fdatasync calls per query (``strace -f -c`` attached) over S seconds of 8 client threads.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import duckdb

from bench.relay_floor import _drive
from genogate.client import Client
from genogate.config import set_values
from genogate.launch import serving
from genogate.nodeclient import ClientTLS
from genogate.signing import Signer
from genogate_demo import run as demo
from tests.terms import filler

Sides = dict[str, tuple[int, Client]]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(tree: Path, config: Path, tls: ClientTLS) -> tuple[subprocess.Popen[bytes], str]:
    ready = config.parent / "ready.json"
    ready.unlink(missing_ok=True)
    log = open(config.parent / "server.log", "ab")  # noqa: SIM115 - the child owns it
    popen = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,
    )
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ready.exists():
            try:
                address = json.loads(ready.read_text())["address"]
            except (ValueError, KeyError):
                address = None
            if address and serving(address, tls):
                return popen, address
        time.sleep(0.05)
    popen.kill()
    raise TimeoutError(f"coordinator of {tree} not ready")


@contextlib.contextmanager
def _federation(tree_a: Path, tree_b: Path, work: Path) -> Iterator[tuple[Sides, str, list[str]]]:
    """Three nodes (this tree) and two coordinators (trees A and B) on copies of one state: yields each side's
    coordinator pid and SDK client, the approved study and 1,000 variants of the store."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    fed = demo.Federation(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with demo._quiet():
            demo._setup(fed)
            demo._cohorts(work, 3000, 2000, 7)
            caps = {
                "policy.epsilon_per_study_cap": "100000",
                "policy.epsilon_per_researcher_cap": "100000",
                "policy.epsilon_per_node_cap": "100000",
                "policy.rate_limit_per_study_per_minute": 1_000_000,
            }
            for site in demo.SITES:
                set_values(work / site / "node.toml", caps)
            demo._start(fed)
            demo._register(fed)
            out = demo._genogate(
                fed,
                demo.RESEARCHER,
                ["study", "propose", "--title", "relay A/B", "--purpose", "HMB", "--kinds", "allele_frequency"]
                + ["--sites", ",".join(demo.SITES), "--epsilon-total", "100000", "--epsilon-cap", "1"]
                + ["--days", "30", "--json"],
                show=False,
            )
            study = json.loads(out)["study"]["study_id"]
            for member in demo.MEMBERS:
                demo._genogate(fed, member, ["study", "approve", study], show=False)
        assert fed.coordinator is not None
        address = fed.coordinator.address
        fed.coordinator.stop()
        fed.coordinator = None
        coord = work / "coordinator"
        set_values(coord / "coordinator.toml", {"server.listen": address})  # the nodes' revocation source
        shutil.copytree(coord, work / "coordinator-a")
        set_values(work / "coordinator-a" / "coordinator.toml", {"server.listen": "127.0.0.1:0"})
        tls = demo._operator_tls(fed)
        pa, addr_a = _start(tree_a, work / "coordinator-a" / "coordinator.toml", tls)
        procs.append(pa)
        pb, addr_b = _start(tree_b, coord / "coordinator.toml", tls)
        procs.append(pb)
        with duckdb.connect(str(work / demo.SITES[0] / "store.duckdb"), read_only=True) as con:
            rows = con.execute("SELECT chrom, pos, ref, alt FROM variants ORDER BY vid LIMIT 1000").fetchall()
        variants = [f"{c}-{p}-{r}-{a}" for c, p, r, a in rows]
        people = work / "people"
        alice_tls = ClientTLS.from_files(work / "ca/ca.pem", people / "alice.key", people / "alice.pem")
        alice = Signer.from_pem_file(people / "alice.ed25519")
        sides = {"A": (pa.pid, Client(addr_a, alice_tls, alice)), "B": (pb.pid, Client(addr_b, alice_tls, alice))}
        try:
            yield sides, study, variants
        finally:
            for _, client in sides.values():
                client.close()
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        fed.stop()


def sequential(sides: Sides, study: str, variants: list[str], queries: int) -> dict[str, object]:
    """One query at a time, A and B alternating: latency p50/p90 and coordinator CPU per query per side."""
    lat: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, float] = {"A": 0.0, "B": 0.0}
    for i in range(20):  # warm-up: channels opened, node info cached, caches filled
        for _, client in sides.values():
            client.allele_frequency(study, [variants[i]], epsilon=1.0)
    for i in range(queries):
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        for side in order:
            pid, client = sides[side]
            c0 = _cpu_s(pid)
            t0 = time.perf_counter()
            r = client.allele_frequency(study, [variants[(i + 20) % len(variants)]], epsilon=1.0)
            lat[side].append(time.perf_counter() - t0)
            cpu[side] += _cpu_s(pid) - c0
            assert len(r.answered) == 3, r
    out_json: dict[str, object] = {}
    for side in ("A", "B"):
        xs = sorted(lat[side])
        out_json[side] = {
            "p50_ms": round(statistics.median(xs) * 1e3, 2),
            "p90_ms": round(xs[int(0.9 * len(xs))] * 1e3, 2),
            "cpu_ms_per_query": round(cpu[side] / queries * 1e3, 2),
        }
    a, b = out_json["A"], out_json["B"]
    assert isinstance(a, dict) and isinstance(b, dict)
    out_json["B/A"] = {k: round(b[k] / a[k], 3) for k in a}
    return out_json


def _distinct(study: str, variants: list[str], client: Client) -> Callable[[], None]:
    """One distinct single-variant AF per call (a variant in turn and a filter clause of its own that selects
    nobody, ``tests.terms.filler``, so no node answers from its same-question cache); raises unless all three
    sites answered."""
    counter = itertools.count()

    def call() -> None:
        i = next(counter)
        r = client.allele_frequency(study, [variants[i % len(variants)]], where=f"age>=0 or {filler(i)}", epsilon=1.0)
        if len(r.answered) != 3:
            raise RuntimeError(f"{len(r.answered)} of 3 sites answered")

    return call


def concurrent(
    sides: Sides, study: str, variants: list[str], threads: Sequence[int], seconds: float, rounds: int
) -> dict[str, object]:
    """Throughput and latency under load: for each thread count, ``rounds`` windows of ``seconds`` per side in
    the order A B B A A B ..., each with ``threads`` client threads calling back to back; per side the mean
    queries/s, the p50/p90 latency over all its windows and the coordinator's CPU per query; then B/A."""
    calls = {side: _distinct(study, variants, client) for side, (_, client) in sides.items()}
    for call in calls.values():  # warm-up
        _drive(call, 4, 1.0)
    out: dict[str, object] = {}
    for t in threads:
        qps: dict[str, list[float]] = {"A": [], "B": []}
        lat: dict[str, list[float]] = {"A": [], "B": []}
        cpu: dict[str, float] = {"A": 0.0, "B": 0.0}
        done_n: dict[str, int] = {"A": 0, "B": 0}
        for r in range(rounds):
            for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                pid, _ = sides[side]
                call, times = calls[side], lat[side]

                def timed(call: Callable[[], None] = call, times: list[float] = times) -> None:
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)

                c0 = _cpu_s(pid)
                done, elapsed = _drive(timed, t, seconds)
                cpu[side] += _cpu_s(pid) - c0
                done_n[side] += done
                qps[side].append(done / elapsed)
        row: dict[str, dict[str, float]] = {}
        for side in ("A", "B"):
            xs = sorted(lat[side])
            row[side] = {
                "qps": round(statistics.fmean(qps[side]), 1),
                "p50_ms": round(statistics.median(xs) * 1e3, 2),
                "p90_ms": round(xs[int(0.9 * len(xs))] * 1e3, 2),
                "cpu_ms_per_query": round(cpu[side] / done_n[side] * 1e3, 2),
            }
        row["B/A"] = {k: round(row["B"][k] / row["A"][k], 3) for k in row["A"]}
        out[f"{t} threads"] = row
    return out


def fsyncs(sides: Sides, study: str, variants: list[str], threads: int, seconds: float) -> dict[str, object]:
    """fsync + fdatasync calls per query of each side's coordinator process (``strace -f -c`` attached while
    ``threads`` client threads run queries for ``seconds``)."""
    out: dict[str, object] = {}
    for side, (pid, client) in sides.items():
        call = _distinct(study, variants, client)
        report = Path(f"/tmp/ab-relay-strace-{os.getpid()}-{side}.txt")
        tracer = subprocess.Popen(
            ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(report), "-p", str(pid)],
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # attached to every thread
        done, _ = _drive(call, threads, seconds)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        syncs = 0
        for line in report.read_text().splitlines():
            f = line.split()
            if f and f[-1] in ("fsync", "fdatasync"):
                syncs += int(f[3])
        report.unlink()
        out[side] = {"queries": done, "syncs": syncs, "per_query": round(syncs / done, 3)}
    return out


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree_a", type=Path)
    ap.add_argument("tree_b", type=Path)
    ap.add_argument("work", type=Path)
    ap.add_argument("queries", type=int, nargs="?", default=300, help="sequential queries per side (0: none)")
    ap.add_argument("--threads", default="", help="also under load: client thread counts, e.g. 8,32")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each loaded window")
    ap.add_argument("--rounds", type=int, default=4, help="loaded windows per side and thread count")
    ap.add_argument("--fsyncs", type=float, default=0, help="also count fsyncs per query over this many seconds")
    args = ap.parse_args(argv)
    with _federation(args.tree_a, args.tree_b, args.work) as (sides, study, variants):
        result: dict[str, object] = {}
        if args.queries:
            result["sequential"] = sequential(sides, study, variants, args.queries)
        if args.threads:
            threads = [int(t) for t in args.threads.split(",")]
            result["concurrent"] = concurrent(sides, study, variants, threads, args.seconds, args.rounds)
        if args.fsyncs:
            result["fsyncs"] = fsyncs(sides, study, variants, 8, args.fsyncs)
        print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
