"""The federation's floor: one client -> a minimal gRPC relay -> N echo servers, over genogate's mTLS.

What a federated query costs when the coordinator and the nodes do nothing but move bytes: the client sends
a request of the real query's size to the relay (``bench.relay_server``), which forwards the same bytes to
every echo server (``bench.echo_server``, one process each, standing in for the nodes) at once; each answers
a node release's worth of bytes, and the relay answers the combined response's size once all have answered.
Every link is mutual TLS with certificates from genogate's own ``genogate.tls`` helpers and the channel
options genogate uses, every party its own process on 127.0.0.1. ``bench.federation`` measures genogate
beside it, interleaved (this machine's speed drifts by up to 2x within minutes, so only interleaved samples
compare).

``python -m bench.relay_floor [--quick]`` prints p50/p99 latency against 1, 3, 10 and 32 sites (asyncio and
futures relays interleaved), and throughput with 8 and 32 client threads at 3 sites with the CPU each process
spent per call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import grpc

from bench.cpu import cpu_seconds
from bench.echo_server import MAX_MESSAGE, STATS
from bench.relay_server import METHOD as RELAY
from genogate.tls import issue, new_ca, new_csr, new_key, write_secret

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0  # 32 echo processes starting at once on two busy cores take a while
CALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Sizes:
    request: int  # bytes the client sends the relay; the relay forwards these same bytes to every echo server
    reply: int  # bytes each echo server replies
    combined: int  # bytes the relay replies to the client


# Measured on genogate's real messages by ``python -m bench.message_sizes`` (the demo federation: three node
# processes, an approved study with per-site breakdown; allele-frequency queries as the federation benchmark
# asks them, ε 0.001, a filter made distinct by a phenotype term nobody has; medians of 5 queries):
# ``request`` is the serialized ``QueryRequest`` the coordinator sends each node (the researcher's signed
# envelope and the committee-signed grant), ``reply`` a node's ``QueryResponse`` (its signed release),
# ``combined`` the ``RunQueryResponse`` the coordinator answers (with the three sites' releases, as a study
# with per-site breakdown returns them). ``tests/integration/test_bench_floor.py`` measures them again.
ONE_VARIANT = Sizes(request=1143, reply=431, combined=1715)
THOUSAND_VARIANTS = Sizes(request=17232, reply=90556, combined=480708)


@dataclass(frozen=True)
class _Identity:
    cert: Path
    key: Path


def _issue(ca_key: bytes, ca_cert: bytes, out: Path, name: str, *, server: bool, client: bool) -> _Identity:
    key = new_key()
    sans = [name, "localhost", "127.0.0.1"] if server else []
    cert = issue(ca_key, ca_cert, new_csr(key, name, sans), server=server, client=client, days=2)
    ident = _Identity(out / f"{name}.pem", out / f"{name}.key")
    ident.cert.write_bytes(cert)
    write_secret(ident.key, key, overwrite=True)
    return ident


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log: Path, deadline: float) -> int:
    while time.monotonic() < deadline:
        if ready.exists():
            return int(ready.read_text())
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"{' '.join(map(str, proc.args))} did not become ready (exit {proc.poll()}):\n{tail}")  # type: ignore[arg-type]


class Floor:
    """One relay process and ``sites`` echo server processes on 127.0.0.1, all mutual TLS.

    Its certificates, port files and the processes' logs go to a new directory of its own under ``work``
    (``dir``), so floors may share ``work``. ``call`` is thread-safe: every client thread shares one channel
    to the relay, as the SDK's users share one ``Client``. ``close`` (or leaving the ``with`` block)
    terminates every process and waits for it."""

    def __init__(
        self, work: Path, sites: int, sizes: Sizes, *, relay: Literal["asyncio", "futures"] = "asyncio"
    ) -> None:
        if sites < 1:
            raise ValueError("a floor needs at least one site")
        Path(work).mkdir(parents=True, exist_ok=True)
        # A directory of its own under ``work`` (certificates, ports, logs): floors and whatever else lives in
        # ``work`` never touch each other's files.
        self.dir = Path(tempfile.mkdtemp(prefix=f"floor-{relay}-{sites}-", dir=work))
        self.sites = sites
        self.sizes = sizes
        self.relay_mode = relay
        self._procs: dict[str, list[subprocess.Popen[bytes]]] = {"relay": [], "echo": []}
        self._logs: list[Any] = []
        self._channel: grpc.Channel | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _spawn(self, role: str, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self._procs[role].append(proc)
        return proc

    def _start(self) -> None:
        ca_key, ca_cert = new_ca("floor-ca", 2)
        ca = self.dir / "ca.pem"
        ca.write_bytes(ca_cert)
        relay_id = _issue(ca_key, ca_cert, self.dir, "relay", server=True, client=True)  # as the coordinator's
        client_id = _issue(ca_key, ca_cert, self.dir, "researcher", server=False, client=True)
        names = [f"site-{i}" for i in range(self.sites)]
        echoes = []
        for name in names:
            ident = _issue(ca_key, ca_cert, self.dir, name, server=True, client=False)
            ready = self.dir / f"{name}.port"
            args = ["bench.echo_server", str(ca), str(ident.cert), str(ident.key), str(ready)]
            echoes.append((self._spawn("echo", name, [*args, "--reply", str(self.sizes.reply)]), ready))
        deadline = time.monotonic() + START_TIMEOUT_S
        self._echo_ports = [
            _wait_ready(proc, ready, self.dir / f"{name}.log", deadline)
            for name, (proc, ready) in zip(names, echoes, strict=True)
        ]
        ready = self.dir / "relay.port"
        args = ["bench.relay_server", self.relay_mode, str(ca), str(relay_id.cert), str(relay_id.key), str(ready)]
        args += ["--combined", str(self.sizes.combined)]
        for name, port in zip(names, self._echo_ports, strict=True):
            args += ["--target", f"{name}=127.0.0.1:{port}"]
        relay = self._spawn("relay", "relay", args)
        port = _wait_ready(relay, ready, self.dir / "relay.log", deadline)
        self._names = names
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_cert,
            private_key=client_id.key.read_bytes(),
            certificate_chain=client_id.cert.read_bytes(),
        )
        self._channel = grpc.secure_channel(
            f"127.0.0.1:{port}",
            self._credentials,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        self._relay = self._channel.unary_unary(RELAY)
        self.request = os.urandom(self.sizes.request)
        self.call()  # end to end once: every link is up, or this raises now

    def call(self) -> None:
        """One query through the relay; raises ``grpc.RpcError`` if any link fails, ``RuntimeError`` if the
        reply is not ``sizes.combined`` bytes."""
        self.reply()

    def reply(self) -> bytes:
        """``call``, returning the relay's reply."""
        reply: bytes = self._relay(self.request, timeout=CALL_TIMEOUT_S)
        if len(reply) != self.sizes.combined:
            raise RuntimeError(f"the relay answered {len(reply)} bytes, not {self.sizes.combined}")
        return reply

    def echo_stats(self) -> list[dict[str, Any]]:
        """Each echo server's own count of what it was sent (``bench.echo_server``'s Stats), in site order."""
        out = []
        for name, port in zip(self._names, self._echo_ports, strict=True):
            with grpc.secure_channel(
                f"127.0.0.1:{port}", self._credentials, options=[("grpc.ssl_target_name_override", name)]
            ) as ch:
                out.append(json.loads(ch.unary_unary(STATS)(b"", timeout=CALL_TIMEOUT_S)))
        return out

    def pids(self) -> dict[str, list[int]]:
        return {role: [p.pid for p in procs] for role, procs in self._procs.items()}

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        procs = [p for role in ("relay", "echo") for p in self._procs[role]]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> Floor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``xs``, ``q`` in [0, 1] (0.5 the median, 0.99 the p99), interpolated linearly
    between the closest ranks (numpy's default)."""
    if not 0 <= q <= 1:
        raise ValueError(f"q = {q}: a quantile is in [0, 1] (0.99 for p99)")
    if not xs:
        raise ValueError("no values")
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def interleaved(calls: Sequence[Callable[[], None]], n: int) -> list[list[float]]:
    """Each of ``calls`` ``n`` times, round-robin (A, B, C, A, B, C, ...): seconds per call, one list per
    callable, in call order. Interleaving puts every callable under the same drift of the machine's speed."""
    out: list[list[float]] = [[] for _ in calls]
    clock = time.perf_counter
    for _ in range(n):
        for call, times in zip(calls, out, strict=True):
            t0 = clock()
            call()
            times.append(clock() - t0)
    return out


def _drive(call: Callable[[], None], threads: int, seconds: float) -> tuple[int, float]:
    """``threads`` threads calling ``call`` back to back until ``seconds`` have passed: (calls completed,
    seconds from the start until the last thread finished its last call). The first failure stops every
    thread and is raised."""
    if threads < 1 or seconds <= 0:
        raise ValueError("throughput needs at least one thread and a positive duration")
    counts = [0] * threads
    errors: list[BaseException] = []
    stop = threading.Event()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    def worker(i: int) -> None:
        try:
            while not stop.is_set() and time.perf_counter() < deadline:
                call()
                counts[i] += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors.append(exc)
            stop.set()

    pool = [threading.Thread(target=worker, args=(i,), name=f"client-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts), time.perf_counter() - t0


def throughput(call: Callable[[], None], threads: int, seconds: float) -> float:
    """Completed calls per second with ``threads`` client threads calling ``call`` for ``seconds``."""
    done, elapsed = _drive(call, threads, seconds)
    return done / elapsed


# The command ---------------------------------------------------------------------------------------------


def _ms(xs: Sequence[float]) -> tuple[float, float]:
    return percentile(xs, 0.5) * 1e3, percentile(xs, 0.99) * 1e3


def _latency(work: Path, sites: Sequence[int], sizes: Sizes, n: int) -> None:
    print(f"latency, {n} calls each, asyncio and futures relays interleaved (ms):")
    print(f"  {'sites':>5}  {'asyncio p50':>11}  {'p99':>7}  {'futures p50':>11}  {'p99':>7}")
    p50: dict[int, tuple[float, float]] = {}
    for k in sites:
        with Floor(work, k, sizes, relay="asyncio") as a, Floor(work, k, sizes, relay="futures") as f:
            interleaved([a.call, f.call], max(3, n // 10))  # warm up
            ta, tf = interleaved([a.call, f.call], n)
        (a50, a99), (f50, f99) = _ms(ta), _ms(tf)
        p50[k] = a50, f50
        print(f"  {k:>5}  {a50:>11.2f}  {a99:>7.2f}  {f50:>11.2f}  {f99:>7.2f}")
    lo, hi = min(p50), max(p50)
    if hi > lo:
        da, df = ((p50[hi][i] - p50[lo][i]) / (hi - lo) for i in (0, 1))
        print(f"  per extra site ({lo} -> {hi} sites, p50): asyncio +{da:.2f} ms, futures +{df:.2f} ms")


def _throughput(work: Path, sizes: Sizes, seconds: float) -> None:
    print(f"throughput at 3 sites, {seconds:g} s per run; CPU ms per call (client, relay, each echo server):")
    for mode in ("asyncio", "futures"):
        with Floor(work, 3, sizes, relay=mode) as fl:
            for threads in (8, 32):
                pids = fl.pids()
                before = [cpu_seconds(os.getpid()), *(cpu_seconds(p) for p in pids["relay"] + pids["echo"])]
                done, elapsed = _drive(fl.call, threads, seconds)
                after = [cpu_seconds(os.getpid()), *(cpu_seconds(p) for p in pids["relay"] + pids["echo"])]
                per = [(b - a) / done * 1e3 for a, b in zip(before, after, strict=True)]
                echo = " ".join(f"{x:.2f}" for x in per[2:])
                print(
                    f"  {mode:8} {threads:>2} threads: {done / elapsed:7.1f} calls/s   CPU/call: client {per[0]:.2f},"
                    f" relay {per[1]:.2f}, echo {echo}, total {sum(per):.2f}"
                )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.relay_floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1, 3 and 10 sites, fewer calls, shorter runs")
    p.add_argument("--vector", action="store_true", help="sizes of the 1,000-variant query (default: 1 variant)")
    args = p.parse_args(argv)
    sizes = THOUSAND_VARIANTS if args.vector else ONE_VARIANT
    print(f"sizes: request {sizes.request} B, each echo reply {sizes.reply} B, combined reply {sizes.combined} B")
    with tempfile.TemporaryDirectory(prefix="relay-floor-") as tmp:
        work = Path(tmp)
        if args.quick:
            _latency(work, (1, 3, 10), sizes, 100)
            _throughput(work, sizes, 3.0)
        else:
            _latency(work, (1, 3, 10, 32), sizes, 400)
            _throughput(work, sizes, 10.0)


if __name__ == "__main__":
    main()
