"""One sample of an interleaved A/B of the node's query latency: single-variant allele frequency and cohort
count over gRPC (real node process, mTLS, ledger, OpenDP), each query followed by a bare mTLS echo call (the
floor measured at the same moments), as ``bench.node_latency`` does. Prints one JSON line.

Run it alternately from two work trees (``cd TREE && PYTHONPATH=TREE python bench/ab_latency.py STORE WORK``),
each against a store its own code built from the same seed (``genogate-node synth --store``), several
rounds each: this VM's speed drifts by up to 2x within minutes, so only interleaved samples compare.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import duckdb

import bench.node_latency as nl
from genogate.nodeclient import ClientTLS
from genogate.query import Variant
from node.admin import dev_ca_client, dev_ca_init, dev_ca_issue, init_node


def main(store: Path, work: Path, n: int = 300) -> None:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ca = work / "ca"
    dev_ca_init(ca)
    node_dir = work / "node"
    init_node(node_dir, "bench-node")
    dev_ca_issue(ca, node_dir / "tls" / "node.csr", node_dir / "tls" / "node.pem", server=True, client=False)
    shutil.copy(ca / "ca.pem", node_dir / "tls" / "ca.pem")
    (node_dir / "store.duckdb").symlink_to(store.resolve())
    (node_dir / "studies.toml").write_text(
        '[[study]]\nid = "B"\npurpose = "GRU"\nkinds = ["allele_frequency", "cohort_count"]\n'
        'epsilon_total = 100000\nepsilon_per_query_cap = 1\nresearchers = ["bench"]\n'
    )
    dev_ca_client(ca, "bench", work / "client")
    tls = ClientTLS.from_files(ca / "ca.pem", work / "client" / "bench.key", work / "client" / "bench.pem")
    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("SELECT chrom, pos, ref, alt FROM variants ORDER BY vid LIMIT 20000").fetchall()
    con.close()
    variants = [Variant(c, p, r, a) for c, p, r, a in rows]
    env = {
        "GENOGATE_NODE_STUDIES__LOCAL": "true",
        "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "100000",
        "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000000",
        "GENOGATE_NODE_POLICY__MAX_VARIANTS_PER_QUERY": "1000",
        "GENOGATE_NODE_POLICY__DELTA_PER_STUDY_CAP": "0.01",
        "GENOGATE_NODE_LOG__LEVEL": "warning",
    }
    with nl._echo_server(ca, work, tls) as echo:
        out = nl._run_cases(node_dir, work, tls, env, variants, echo, n, "m", cases=(nl.AF_1, nl.COHORT))
    print(json.dumps({k: vars(v) for k, v in out.items()}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
