"""``genogate-coordinator status --config FILE``: the coordinator's server, its registry (nodes, each probed
over mTLS with the coordinator's own certificate, the way fan-out reaches it), studies, query history and
audit log at a glance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from coordinator.config import CoordinatorConfig, load_coordinator_config
from genogate import status
from genogate.launch import check_health
from genogate.nodeclient import ClientTLS
from genogate.sqlitedb import read_only


def run(config_path: Path, *, as_json: bool, probe_timeout_s: float = 2.0) -> int:
    config = load_coordinator_config(config_path)
    sections = [
        status.server(config.server.ready_file),
        status.guarded("state", lambda: _state(config.state.path)),
        status.guarded("nodes", lambda: _nodes(config, probe_timeout_s)),
        status.audit_section(config.audit.path, config.committee.signing_key),
    ]
    return status.emit(f"coordinator {config.coordinator.name} ({config_path})", sections, as_json=as_json)


def _read(path: Path, sql: str) -> list[tuple[object, ...]]:
    return read_only(path, "coordinator state", sql, missing="the coordinator creates it when it first serves")


def _state(path: Path) -> status.Section:
    rows = _read(path, "SELECT lower(state), count(*) FROM studies GROUP BY state ORDER BY state")
    by_state = {str(s): int(str(n)) for s, n in rows}
    queries = int(str(_read(path, "SELECT count(*) FROM queries")[0][0]))
    researchers = int(str(_read(path, "SELECT count(*) FROM researchers")[0][0]))
    studies = ", ".join(f"{n} {s}" for s, n in by_state.items()) or "none"
    return status.Section(
        "state",
        True,
        f"{path}: studies {studies}; {researchers} researchers; {queries} federated queries",
        facts={"path": str(path), "studies": by_state, "researchers": researchers, "queries": queries},
    )


def _nodes(config: CoordinatorConfig, timeout_s: float) -> status.Section:
    nodes = [(str(n), str(e)) for n, e in _read(config.state.path, "SELECT name, endpoint FROM nodes ORDER BY name")]
    if not nodes:
        return status.Section("nodes", True, "none registered", facts={"nodes": []})
    tls = ClientTLS.from_settings(config.tls)

    def probe(node: tuple[str, str]) -> str:
        name, endpoint = node
        try:
            state = check_health(endpoint, tls, server_name=name, timeout_s=timeout_s)
        except grpc.RpcError as exc:
            return f"unreachable ({exc.code().name.lower()})"
        return "serving" if state == "SERVING" else "not serving"

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        states = list(pool.map(probe, nodes))
    up = sum(s == "serving" for s in states)
    return status.Section(
        "nodes",
        up == len(nodes),
        f"{up} of {len(nodes)} registered nodes serving",
        [f"{name:<16} {endpoint:<24} {state}" for (name, endpoint), state in zip(nodes, states, strict=True)],
        facts={"nodes": [{"name": n, "endpoint": e, "state": s} for (n, e), s in zip(nodes, states, strict=True)]},
    )
