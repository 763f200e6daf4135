"""Real server processes for end-to-end tests: start, discover the port through the ready file and the
health service, and always stop (terminate, wait, kill) in ``finally``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from genogate.nodeclient import ClientTLS

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    address: str
    log: Path

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


def start_node(
    config: Path, tls: ClientTLS, *, log: Path, timeout: float = 60.0, env: dict[str, str] | None = None
) -> Proc:
    """Start ``genogate-node serve`` and wait until its ready file names a port that answers SERVING."""
    return start_server("node.cli", config, tls, log=log, timeout=timeout, env=env)


def start_coordinator(
    config: Path, tls: ClientTLS, *, log: Path, timeout: float = 60.0, env: dict[str, str] | None = None
) -> Proc:
    """Start ``genogate-coordinator serve`` the same way."""
    return start_server("coordinator.cli", config, tls, log=log, timeout=timeout, env=env)


def start_server(
    module: str, config: Path, tls: ClientTLS, *, log: Path, timeout: float = 60.0, env: dict[str, str] | None = None
) -> Proc:
    """Start ``python -m MODULE serve --config CONFIG``; ready once its ready file names a SERVING port."""
    ready = config.parent / "ready.json"
    ready.unlink(missing_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    popen = subprocess.Popen(
        [sys.executable, "-m", module, "serve", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{module} exited with {popen.returncode}:\n{log.read_text()[-3000:]}")
        if ready.exists():
            address = json.loads(ready.read_text())["address"]
            if _serving(address, tls):
                return Proc(popen, address, log)
        time.sleep(0.05)
    popen.kill()
    popen.wait(timeout=10)
    raise TimeoutError(f"{module} not ready within {timeout}s:\n{log.read_text()[-3000:]}")


def _serving(address: str, tls: ClientTLS) -> bool:
    creds = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)
    with grpc.secure_channel(address, creds) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


@contextmanager
def running_node(config: Path, tls: ClientTLS, *, log: Path, env: dict[str, str] | None = None) -> Iterator[Proc]:
    proc = start_node(config, tls, log=log, env=env)
    try:
        yield proc
    finally:
        proc.stop()
