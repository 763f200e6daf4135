"""Server processes started by another program (the demo, tests, benchmarks): start ``python -m MODULE serve
--config FILE``, learn its address from the ready file, wait until the gRPC health service answers SERVING,
and stop it (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from genogate.nodeclient import ClientTLS

ROOT = Path(__file__).resolve().parents[1]
"""The checkout (or installed tree) holding ``genogate``, ``node`` and ``coordinator``."""


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    address: str
    log: Path

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (the server drains in-flight calls), then SIGKILL if it has not exited in ``timeout``."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


def start_server(
    module: str,
    config: Path,
    tls: ClientTLS,
    *,
    log: Path,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> Proc:
    """Start ``python -m MODULE serve --config CONFIG`` with its output appended to ``log``; return once its
    ready file (``ready.json`` beside the config) names an address whose health service answers SERVING to
    a client presenting ``tls``. Raises ``RuntimeError`` (with the log's tail) if it exits first and
    ``TimeoutError`` if it is not ready in time. ``wrapper``: Python arguments before ``-m MODULE`` (the
    benchmark runs a server under its profiler: ``-m bench.profiled OUT.json --``)."""
    ready = config.parent / "ready.json"
    ready.unlink(missing_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    popen = subprocess.Popen(
        [sys.executable, *wrapper, "-m", module, "serve", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )
    out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{module} exited with {popen.returncode}:\n{log.read_text()[-3000:]}")
        if ready.exists():
            try:
                address = json.loads(ready.read_text())["address"]
            except (ValueError, KeyError):  # being written
                address = None
            if address and serving(address, tls):
                return Proc(popen, address, log)
        time.sleep(0.05)
    popen.kill()
    popen.wait(timeout=10)
    raise TimeoutError(f"{module} not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def check_health(address: str, tls: ClientTLS, *, server_name: str | None = None, timeout_s: float = 2.0) -> str:
    """The overall status the gRPC health service at ``address`` reports over mTLS (``"SERVING"``, ...);
    ``server_name`` is the name its certificate must carry when it is not the address's host. Raises
    ``grpc.RpcError`` when the server cannot be reached or refuses the probe."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    with grpc.secure_channel(address, tls.credentials(), options=options) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def serving(address: str, tls: ClientTLS, timeout_s: float = 2.0) -> bool:
    """Whether the gRPC health service at ``address`` answers SERVING (overall) over mTLS."""
    try:
        return check_health(address, tls, timeout_s=timeout_s) == "SERVING"
    except grpc.RpcError:
        return False
