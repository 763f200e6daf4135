"""Node query latency and throughput on a large store, beside a bare mTLS gRPC echo server (the floor).

Measures, over real processes on loopback with mTLS, signed releases, the durable ledger and OpenDP noise:
single-variant allele frequency, a 1,000-variant allele-frequency vector and a cohort count. Every query
is distinct (so none is answered from the same-question cache). Latency: one client, sequential, each
query followed by one echo call, so every case has a floor measured at the same moments (this VM's speed
drifts by up to 2x within minutes). Throughput: 8 client threads.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import grpc

from genogate import envelope
from genogate.filter import parse_filter
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import ClientTLS, NodeClient
from genogate.query import Variant
from node.admin import dev_ca_client, dev_ca_init, dev_ca_issue, init_node
from tests.processes import start_node
from tests.terms import filler

ROOT = Path(__file__).resolve().parents[1]
AF_1 = "allele frequency, 1 variant"
AF_1000 = "allele frequency, 1,000 variants"
COHORT = "cohort count"


# Each run of the cases asks questions of its own (its filler terms), so none is answered from the cache.
_TAGS = {"m": 0, "d": 10_000}


@dataclass(frozen=True)
class Stats:
    p50_ms: float
    p99_ms: float
    qps: float
    floor_p50_ms: float  # the echo server's p50, measured interleaved with this case's latency calls


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _measure(call: Callable[[int], None], n: int, floor: Callable[[], None], threads: int = 8) -> Stats:
    for i in range(5):  # warm up channels and caches
        call(10_000_000 + i)
        floor()
    lat, floor_lat = [], []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        t1 = time.perf_counter()
        floor()
        floor_lat.append((time.perf_counter() - t1) * 1e3)
        lat.append((t1 - t0) * 1e3)
    counter = iter(range(n, n + 4 * n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            call(i)

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return Stats(
        statistics.median(lat),
        _percentile(lat, 0.99),
        4 * n / (time.perf_counter() - t0),
        statistics.median(floor_lat),
    )


@dataclass(frozen=True)
class Bench:
    """A node directory over ``store`` with a local study, a CA, a client identity and the query variants."""

    work: Path
    ca: Path
    node_dir: Path
    tls: ClientTLS
    variants: list[Variant]
    env: dict[str, str]


def setup(store: Path, work: Path) -> Bench:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ca = work / "ca"
    dev_ca_init(ca)
    node_dir = work / "node"
    init_node(node_dir, "bench-node", "127.0.0.1:0")
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
    env = {
        "GENOGATE_NODE_STUDIES__LOCAL": "true",
        "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "100000",
        "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "100000",
        "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "1000000",
        "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000000",
        "GENOGATE_NODE_POLICY__MAX_VARIANTS_PER_QUERY": "1000",
        "GENOGATE_NODE_POLICY__DELTA_PER_STUDY_CAP": "0.01",
        "GENOGATE_NODE_LOG__LEVEL": "warning",
    }
    return Bench(work, ca, node_dir, tls, [Variant(c, p, r, a) for c, p, r, a in rows], env)


def run(store: Path, work: Path, n: int = 300) -> dict[str, Stats]:
    b = setup(store, work)
    ca, node_dir, tls, variants, env = b.ca, b.node_dir, b.tls, b.variants, b.env
    with _echo_server(ca, work, tls) as echo:
        out = _run_cases(node_dir, work, tls, env, variants, echo, n, "m")
        # The same node reading every query's rows through DuckDB, as it does when its store is too big for
        # the in-memory copy of the calls ([store] memory_mb). New filter terms: no question repeats.
        duck_env = {**env, "GENOGATE_NODE_STORE__MEMORY_MB": "0"}
        duck = _run_cases(node_dir, work, tls, duck_env, variants, echo, n, "d", cases=(AF_1, AF_1000))
        out.update({f"{name}, rows read through DuckDB": stats for name, stats in duck.items()})
        out["bare gRPC echo (mTLS), the floor"] = _measure(lambda i: echo(), n, echo)
        return out


def _run_cases(
    node_dir: Path,
    work: Path,
    tls: ClientTLS,
    env: dict[str, str],
    variants: list[Variant],
    echo: Callable[[], None],
    n: int,
    tag: str,
    cases: tuple[str, ...] = (AF_1, AF_1000, COHORT),
) -> dict[str, Stats]:
    proc = start_node(node_dir / "node.toml", tls, log=work / "node.log", env=env)
    out: dict[str, Stats] = {}
    try:
        client = NodeClient(proc.address, tls)
        calls: dict[str, Callable[[int], None]] = {
            AF_1: lambda i: (
                client.send(
                    envelope.build(
                        AlleleFrequency(
                            (variants[i % len(variants)],), filter=parse_filter(f"age>=0 or {filler(_TAGS[tag] + i)}")
                        ),
                        study_id="B",
                        epsilon=0.001,
                    )
                )
                and None
            ),
            AF_1000: lambda i: (
                client.send(
                    envelope.build(
                        AlleleFrequency(
                            tuple(variants[(i * 7) % 19000 : (i * 7) % 19000 + 1000]),
                            filter=parse_filter(f"age>={i % 90} or {filler(_TAGS[tag] + i)}"),
                        ),
                        study_id="B",
                        epsilon=0.001,
                    )
                )
                and None
            ),
            COHORT: lambda i: (
                client.send(
                    envelope.build(
                        CohortCount(parse_filter(f"age>={i % 90} or {filler(_TAGS[tag] + i)}")),
                        study_id="B",
                        epsilon=0.001,
                    )
                )
                and None
            ),
        }
        for name in cases:
            out[name] = _measure(calls[name], n if name != AF_1000 else max(50, n // 6), echo)
        client.close()
    finally:
        proc.stop()
    return out


@contextlib.contextmanager
def _echo_server(ca: Path, work: Path, tls: ClientTLS) -> Iterator[Callable[[], None]]:
    """A bare gRPC echo server (same mTLS) in its own process; yields one echo call of a 128-byte payload."""
    from genogate.tls import new_csr, new_key

    key = new_key()
    (work / "echo.key").write_bytes(key)
    (work / "echo.csr").write_bytes(new_csr(key, "echo", ["localhost", "127.0.0.1"]))
    dev_ca_issue(ca, work / "echo.csr", work / "echo.pem", server=True, client=False)
    ready = work / "echo.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.echo_server",
            str(ca / "ca.pem"),
            str(work / "echo.pem"),
            str(work / "echo.key"),
            str(ready),
        ],
        cwd=ROOT,
    )
    try:
        for _ in range(200):
            if ready.exists() and ready.read_text():
                break
            time.sleep(0.05)
        channel = grpc.secure_channel(f"127.0.0.1:{ready.read_text()}", tls.credentials())
        echo = channel.unary_unary("/bench.Echo/Echo")
        payload = uuid.uuid4().bytes * 8
        try:
            yield lambda: echo(payload, timeout=10) and None
        finally:
            channel.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    store = Path(sys.argv[1])
    for name, s in run(store, ROOT / "bench" / "work" / "latency").items():
        print(
            f"{name:40} p50 {s.p50_ms:7.2f} ms  p99 {s.p99_ms:7.2f} ms  {s.qps:8.0f} q/s"
            f"  (echo p50 meanwhile {s.floor_p50_ms:.2f} ms)"
        )
