"""Measure the sizes of genogate's real messages for the floor (``bench.relay_floor.ONE_VARIANT`` and
``THOUSAND_VARIANTS``): ``python -m bench.message_sizes [DIR]``.

Starts the demo federation (``genogate-demo --up``: a coordinator and three nodes as processes, mTLS, an
approved study with per-site breakdown, as the federation benchmark sets one up), then, as the researcher,
asks allele frequencies of 1 and of 1,000 variants the way the federation benchmark asks them (ε 0.001, a
filter made distinct by a phenotype term nobody has) and prints, per query, the serialized sizes of:

* ``request``: the ``QueryRequest`` the coordinator sends each node (the signed envelope and the study's
  committee-signed grant, read back from the coordinator);
* ``reply``: a node's ``QueryResponse`` (its signed release, as the coordinator hands it on per site);
* ``combined``: the ``RunQueryResponse`` the coordinator answers the researcher.

gRPC frames each with the same 5-byte prefix, so these are what the floor's byte messages must weigh.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import duckdb

from genogate import envelope
from genogate.coordclient import CoordinatorClient
from genogate.filter import parse_filter
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.profile import resolve
from genogate.query import Variant
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import node_pb2 as npb
from tests.processes import demo_up
from tests.terms import filler

QUERIES = 5  # per size; the sizes vary by a few bytes (filter text, noisy values' varint lengths)


def _variants(root: Path, n: int) -> list[Variant]:
    copy = root / "variants-copy.duckdb"  # the node holds its store open; read a copy
    shutil.copy(root / "hospital-a" / "store.duckdb", copy)
    con = duckdb.connect(str(copy), read_only=True)
    try:
        rows = con.execute("SELECT chrom, pos, ref, alt FROM variants ORDER BY vid LIMIT ?", [n]).fetchall()
    finally:
        con.close()
        copy.unlink()
    return [Variant(c, p, r, a) for c, p, r, a in rows]


def measure(root: Path) -> dict[str, dict[str, float]]:
    env = {**os.environ, "GENOGATE_NODE_POLICY__MAX_VARIANTS_PER_QUERY": "1000"}
    proc, output = demo_up(root, "--samples", "600", "--variants", "2000", env=env)
    try:
        found = re.search(r"export GENOGATE_PROFILE=(\S+)", output), re.search(r"export STUDY=(\S+)", output)
        if found[0] is None or found[1] is None:
            raise RuntimeError(f"the demo did not come up:\n{output[-3000:]}")
        profile = resolve(Path(found[0].group(1)))
        study_id = found[1].group(1)
        variants = _variants(root, 1000)
        signer = profile.signer()
        out: dict[str, dict[str, float]] = {}
        with CoordinatorClient(profile.coordinator, profile.client_tls(), timeout_s=120) as c:
            grant = c.stub.GetStudy(cpb.GetStudyRequest(study_id=study_id), timeout=30).study.grant
            for name, count in (("ONE_VARIANT", 1), ("THOUSAND_VARIANTS", 1000)):
                sizes: dict[str, list[int]] = {"request": [], "reply": [], "combined": []}
                for i in range(QUERIES):
                    query = AlleleFrequency(
                        tuple(variants[i : i + count]), filter=parse_filter(f"age>={i} or {filler(count + i)}")
                    )
                    signed = envelope.signed_query(envelope.build(query, study_id=study_id, epsilon=0.001), signer)
                    response = c.run_query(signed)
                    releases = [s.release for s in response.sites if s.HasField("release")]
                    if len(releases) != len(response.sites):
                        raise RuntimeError(f"not every site released: {response}")
                    sizes["request"].append(npb.QueryRequest(signed_query=signed, grant=grant).ByteSize())
                    sizes["reply"] += [npb.QueryResponse(release=r).ByteSize() for r in releases]
                    sizes["combined"].append(response.ByteSize())
                out[name] = {k: statistics.median(v) for k, v in sizes.items()}
        return out
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # reads what it says on the way out and closes the pipe


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="message-sizes-") as tmp:
        root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "demo"
        for name, sizes in measure(root).items():
            fields = ", ".join(f"{k}={round(v)}" for k, v in sizes.items())
            print(f"{name} = Sizes({fields})")


if __name__ == "__main__":
    main()
