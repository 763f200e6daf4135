"""One sample of an interleaved A/B of the node's query latency: single-variant allele frequency and cohort
count over gRPC (real node process, mTLS, ledger, OpenDP), each query followed by a bare mTLS echo call (the
floor measured at the same moments), as ``bench.node_latency`` does. Prints one JSON line.

Run it alternately from two work trees (``cd TREE && PYTHONPATH=TREE python bench/ab_latency.py STORE WORK``),
each against a store its own code built from the same seed (``genogate-node synth --store``), several
rounds each: this VM's speed drifts by up to 2x within minutes, so only interleaved samples compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import bench.node_latency as nl


def main(store: Path, work: Path, n: int = 300, path: str = "memory") -> None:
    """``path``: "memory" (the node's in-memory copy of the calls) or "duckdb" (rows read through DuckDB)."""
    b = nl.setup(store, work)
    with nl._echo_server(b.ca, work, b.tls) as echo:
        if path == "duckdb":
            env = {**b.env, "GENOGATE_NODE_STORE__MEMORY_MB": "0"}
            out = nl._run_cases(b.node_dir, work, b.tls, env, b.variants, echo, n, "d", cases=(nl.AF_1, nl.AF_1000))
        else:
            out = nl._run_cases(b.node_dir, work, b.tls, b.env, b.variants, echo, n, "m", cases=(nl.AF_1, nl.COHORT))
    print(json.dumps({k: vars(v) for k, v in out.items()}))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python bench/ab_latency.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Run it from the work tree under test, with PYTHONPATH set to that tree.",
    )
    p.add_argument("store", type=Path, help="a store built by this tree's 'genogate-node synth --store'")
    p.add_argument("work", type=Path, help="a scratch directory (emptied first)")
    p.add_argument(
        "path",
        nargs="?",
        choices=("memory", "duckdb"),
        default="memory",
        help="memory: the node's in-memory copy of the calls (single-variant AF, cohort count); duckdb: rows "
        "read through DuckDB (single-variant and 1,000-variant AF) (default: memory)",
    )
    p.add_argument("-n", type=int, default=300, help="queries per case (the 1,000-variant case: n/6, at least 50)")
    return p


if __name__ == "__main__":
    args = parser().parse_args()
    main(args.store, args.work, n=args.n, path=args.path)
