"""Where a node's time goes under federated load: the demo federation (a coordinator and three node
processes, committee-signed grants, mTLS, OpenDP, durable ledgers), distinct single-variant allele frequencies
from ``--threads`` client threads through the coordinator, and ``bench.profiled``'s sampler in every node
process (started by ``bench/sitecustomize``).

    python -m bench.node_profile WORK [--samples 10000] [--variants 20000] [--queries 1500] [--threads 8]
        [--tree CHECKOUT]

Prints the top functions by CPU over the three nodes (and leaves ``WORK/prof-*.json``). The demo's study has
ε 4 per site, so at most 4,000 queries of ε 0.001.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from bench.profiled import merged
from genogate.client import Client
from tests.terms import filler

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.node_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("work", type=Path, help="a scratch directory (emptied first)")
    p.add_argument("--samples", type=int, default=10000, help="participants across the three sites")
    p.add_argument("--variants", type=int, default=20000, help="variant sites")
    p.add_argument("--queries", type=int, default=1500, help="queries to send (each distinct)")
    p.add_argument("--threads", type=int, default=8, help="client threads")
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose servers run (default: this one)")
    args = p.parse_args(argv)
    work: Path = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "sitecustomize"), str(args.tree.resolve())]),
        "GENOGATE_SAMPLE_OUT": str(work / "prof-{pid}.json"),
        "GENOGATE_SAMPLE_MODULE": "node.cli",
        "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000000",
    }
    demo = start_demo(work, args.tree, args.samples, args.variants, env)
    try:
        seconds, errors = _load(demo, work, args.queries, args.threads)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.communicate(timeout=60)
    print(f"{args.queries} queries in {seconds:.1f} s ({args.queries / seconds:.1f} q/s), {len(errors)} errors")
    if errors:
        print(repr(errors[0]))
    print(f"{'self %':>7} {'incl %':>7}  function (CPU over the three nodes' profiles)")
    for fn, own, incl in merged(sorted(work.glob("prof-*.json"))):
        print(f"{own:7.1f} {incl:7.1f}  {fn}")
    return 0


def start_demo(work: Path, tree: Path, samples: int, variants: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """The demo federation of ``tree``, set up in ``work / "fed"`` and left running (``wait_up``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "genogate_demo", "--up", str(work / "fed"), "--samples", str(samples)]
        + ["--variants", str(variants)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tree,
    )


def wait_up(demo: subprocess.Popen[str]) -> tuple[str, str]:
    """Wait until the demo federation (``genogate_demo --up``) is up; its study id and client profile."""
    assert demo.stdout is not None
    out = []
    for line in demo.stdout:
        out.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    else:
        raise SystemExit("the demo did not come up:\n" + "".join(out[-40:]))
    text = "".join(out)
    study = re.search(r"export STUDY=(\S+)", text).group(1)  # type: ignore[union-attr]
    profile = re.search(r"export GENOGATE_PROFILE=(\S+)", text).group(1).strip("'")  # type: ignore[union-attr]
    return study, profile


def _load(demo: subprocess.Popen[str], work: Path, queries: int, threads: int) -> tuple[float, list[BaseException]]:
    """Wait until the demo federation is up, then send ``queries`` distinct queries from ``threads`` threads."""
    study, profile = wait_up(demo)
    con = duckdb.connect(str(work / "fed" / "hospital-a" / "store.duckdb"), read_only=True)
    variants = [
        f"{c}-{p}-{r}-{a}"
        for c, p, r, a in con.execute("SELECT chrom, pos, ref, alt FROM variants LIMIT 5000").fetchall()
    ]
    con.close()
    filler(0)  # loads the term list once, before the threads race to it
    counter = itertools.count()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        with Client.from_profile(profile) as client:
            while True:
                with lock:
                    i = next(counter)
                if i >= queries:
                    return
                try:
                    client.allele_frequency(
                        study, [variants[i % len(variants)]], where=f"age>=0 or {filler(i)}", epsilon=0.001
                    )
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(worker)
    return time.perf_counter() - t0, errors


if __name__ == "__main__":
    sys.exit(main())
