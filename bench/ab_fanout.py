"""Interleaved A/B of the coordinator's fan-out alone: ``FanOut`` of one source file against ``FanOut`` of
another, in one process, both asking the same stand-in nodes, alternately (A, B, B, A, ...).

Each stand-in node is a process of its own (``python -m bench.ab_fanout node ...``): a gRPC server with the
node's certificate (mutual TLS, pinned by the fan-out as a real node is) that answers ``Query`` with a
release signed by its own Ed25519 key naming the query, site and payload hash (what the fan-out checks), and
``GetNodeInfo`` with that key; no data, no noise, so what is measured is the relay. One run is what
``FederatedQueries.run`` asks of the fan-out per query: ``infos`` twice (the ε floor and label checks), then
``run``. Reported per side: wall time p50 and this process's CPU per run (all its threads), and B/A.

    .venv/bin/python -m bench.ab_fanout OLD/coordinator/fanout.py NEW/coordinator/fanout.py WORK SITES [RUNS]
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import FanoutSettings
from genogate import envelope
from genogate.kinds.cohort_count import CohortCount
from genogate.rpc import max_envelope_bytes
from genogate.signing import Signer
from genogate.tls import fingerprint_sha256
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import node_pb2 as npb


def node(ca: Path, cert: Path, key: Path, name: str, ready: Path) -> None:
    """Serve as the stand-in node ``name`` until SIGTERM; the bound port is written to ``ready``."""
    signer = Signer(Ed25519PrivateKey.generate())

    def query(request: bytes, context: Any) -> bytes:
        signed = npb.QueryRequest.FromString(request).signed_query
        env = pb.QueryEnvelope.FromString(signed.payload)
        body = pb.ReleaseBody(
            query_id=env.query_id,
            study_id=env.study_id,
            site=name,
            query_sha256=hashlib.sha256(signed.payload).digest(),
            epsilon_charged=env.epsilon,
        )
        body.result.cohort_count.count.SetInParent()
        payload = body.SerializeToString()
        release = pb.Release(payload=payload, node_signature=signer.sign("genogate.v1.ReleaseBody", payload))
        return npb.QueryResponse(release=release).SerializeToString()

    def info(request: bytes, context: Any) -> bytes:
        return npb.GetNodeInfoResponse(name=name, receipt_public_key=signer.public_raw).SerializeToString()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    methods = {"Query": query, "GetNodeInfo": info}
    handlers = {m: grpc.unary_unary_rpc_method_handler(f) for m, f in methods.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("genogate.v1.NodeService", handlers),))
    creds = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=ca.read_bytes(), require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    ready.write_text(str(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(a_file: Path, b_file: Path, work: Path, sites: int, runs: int = 300) -> None:
    from node.admin import dev_ca_client, dev_ca_init, dev_ca_issue, init_node

    modules = {"A": _load(a_file, "fanout_a"), "B": _load(b_file, "fanout_b")}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ca = work / "ca"
    dev_ca_init(ca)
    dev_ca_client(ca, "coord", work / "clients")
    procs: list[subprocess.Popen[bytes]] = []
    fans: dict[str, Any] = {}
    try:
        nodes = []
        for i in range(sites):
            name, d = f"site-{i}", work / f"site-{i}"
            init_node(d, name, "127.0.0.1:0")
            dev_ca_issue(ca, d / "tls/node.csr", d / "tls/node.pem", server=True, client=False)
            ready = d / "port"
            args = [str(ca / "ca.pem"), str(d / "tls/node.pem"), str(d / "tls/node.key"), name, str(ready)]
            procs.append(subprocess.Popen([sys.executable, "-m", "bench.ab_fanout", "node", *args]))
            while not (ready.exists() and ready.read_text()):
                time.sleep(0.05)
            pin = fingerprint_sha256((d / "tls/node.pem").read_bytes())
            nodes.append(cpb.NodeInfo(name=name, endpoint=f"127.0.0.1:{ready.read_text()}", cert_sha256=pin))
        for side, module in modules.items():
            identity = module.ClientIdentity(ca / "ca.pem", work / "clients/coord.pem", work / "clients/coord.key")
            fans[side] = module.FanOut(identity, FanoutSettings())
        signer = Signer(Ed25519PrivateKey.generate())

        def one(fan: Any) -> None:
            payload, signature = envelope.sign(envelope.build(CohortCount(), study_id="S1", epsilon=0.5), signer)
            opened = envelope.open_envelope(payload, signature, signer.public_raw, max_bytes=max_envelope_bytes(10))
            fan.infos(nodes)
            fan.infos(nodes)
            results = fan.run(nodes, opened, pb.StudyGrant(), timeout_ms=30_000)
            if not all(r.status == pb.SITE_STATUS_ANSWERED for r in results):
                raise RuntimeError(f"not all sites answered: {results}")

        for _ in range(20):  # links opened, infos cached
            for fan in fans.values():
                one(fan)
        wall: dict[str, list[float]] = {"A": [], "B": []}
        cpu = {"A": 0.0, "B": 0.0}
        for i in range(runs):
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                c0, t0 = time.process_time(), time.perf_counter()
                one(fans[side])
                wall[side].append(time.perf_counter() - t0)
                cpu[side] += time.process_time() - c0
        out: dict[str, Any] = {"sites": sites, "runs": runs}
        for side in ("A", "B"):
            out[side] = {
                "p50_ms": round(statistics.median(wall[side]) * 1e3, 3),
                "cpu_ms": round(cpu[side] / runs * 1e3, 3),
            }
        out["B/A"] = {k: round(out["B"][k] / out["A"][k], 3) for k in ("p50_ms", "cpu_ms")}
        print(json.dumps(out))
    finally:
        for fan in fans.values():
            fan.close()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    if sys.argv[1] == "node":
        node(*(Path(a) for a in sys.argv[2:5]), sys.argv[5], Path(sys.argv[6]))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), *map(int, sys.argv[5:6]))
