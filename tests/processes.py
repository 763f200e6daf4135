"""Real server processes for end-to-end tests: start, discover the port through the ready file and the
health service, and always stop (terminate, wait, kill) in ``finally`` (``genogate.launch`` does the work)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genogate.launch import ROOT, Proc, serving, start_server
from genogate.nodeclient import ClientTLS

__all__ = ["ROOT", "Proc", "running_node", "serving", "start_coordinator", "start_node", "start_server"]


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
