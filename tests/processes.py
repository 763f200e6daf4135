"""Real server processes for end-to-end tests: start, discover the port through the ready file and the
health service, and always stop (terminate, wait, kill) in ``finally`` (``genogate.launch`` does the work)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genogate.launch import ROOT, Proc, serving, start_server
from genogate.nodeclient import ClientTLS

__all__ = ["ROOT", "Proc", "demo_up", "running_node", "serving", "start_coordinator", "start_node", "start_server"]


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


@contextmanager
def running_node(config: Path, tls: ClientTLS, *, log: Path, env: dict[str, str] | None = None) -> Iterator[Proc]:
    proc = start_node(config, tls, log=log, env=env)
    try:
        yield proc
    finally:
        proc.stop()


def demo_up(
    directory: Path, *args: str, env: dict[str, str], timeout: float = 300.0
) -> tuple[subprocess.Popen[str], str]:
    """Start ``genogate-demo --up DIRECTORY`` and read its output until it says the federation is up ("Press
    Ctrl-C"); returns the process (the caller stops it: SIGINT) and the output so far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "genogate_demo", "--up", str(directory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    return proc, "".join(lines)
