"""One sample of an interleaved A/B of the node's query latency: single-variant allele frequency and cohort
count over gRPC (real node process, mTLS, ledger, OpenDP), each query followed by a bare mTLS echo call (the
floor measured at the same moments), as ``bench.node_latency`` does. Prints one JSON line.

Run it alternately from two work trees (``cd TREE && PYTHONPATH=TREE python bench/ab_latency.py STORE WORK``),
each against a store its own code built from the same seed (``genogate-node synth --store``), several
rounds each: this VM's speed drifts by up to 2x within minutes, so only interleaved samples compare.
"""

from __future__ import annotations

import json
import sys
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


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), path=sys.argv[3] if len(sys.argv) > 3 else "memory")
