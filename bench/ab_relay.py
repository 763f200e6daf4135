"""Interleaved A/B of the coordinator's relay: two coordinators, one running the code of tree A and one of
tree B, each with its own copy of the same state (the same registered nodes, researcher and approved study,
the same committee key), in front of the same three real node processes (this tree's code; mTLS on loopback).
Queries alternate A, B, A, B, ... one at a time, so both see the same moments of this VM's drifting speed.

Each query is a distinct single-variant allele frequency (a fresh query id, a variant chosen in turn from the
store) at ε 1, asked through the SDK. Reported per side: latency p50/p90 and the coordinator process's CPU
per query (``/proc/PID/stat`` utime+stime over its queries), then the ratios B/A.

    PYTHONPATH=TREE_B .venv/bin/python bench/ab_relay.py TREE_A TREE_B WORK [QUERIES]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from genogate.client import Client
from genogate.config import set_values
from genogate.launch import serving
from genogate.nodeclient import ClientTLS
from genogate.signing import Signer
from genogate_demo import run as demo


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


def main(tree_a: Path, tree_b: Path, work: Path, queries: int = 300) -> None:
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
        for _, client in sides.values():
            client.close()
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
        print(json.dumps(out_json))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        fed.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 300)
