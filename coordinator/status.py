"""``genogate-coordinator status --config FILE``: the coordinator's server, its registry (nodes, each probed
over mTLS with the coordinator's own certificate, the way fan-out reaches it), studies, query history and
audit log at a glance. The state is read through ``coordinator.state.read_summary`` (read-only: status never
creates or changes it), whichever ``[state] backend`` holds it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from coordinator.config import CoordinatorConfig, StateSettings, load_coordinator_config
from coordinator.state import read_summary
from genogate import status
from genogate.launch import check_health
from genogate.nodeclient import ClientTLS
from genogate.words import plural


def run(config_path: Path, *, as_json: bool, probe_timeout_s: float = 2.0) -> int:
    config = load_coordinator_config(config_path)
    sections = [
        status.server(config.server.ready_file),
        status.guarded("state", lambda: _state(config.state)),
        status.guarded("nodes", lambda: _nodes(config, probe_timeout_s)),
        status.audit_section(config.audit.path, config.committee.signing_key),
    ]
    return status.emit(f"coordinator {config.coordinator.name} ({config_path})", sections, as_json=as_json)


def _state(settings: StateSettings) -> status.Section:
    summary = read_summary(settings)
    by_state = dict(summary.studies)
    studies = ", ".join(f"{n} {s}" for s, n in by_state.items()) or "none"
    return status.Section(
        "state",
        True,
        f"{settings.path}: studies {studies}; {plural(summary.researchers, 'researcher')}; "
        f"{plural(summary.queries, 'federated query', 'federated queries')}",
        facts={
            "path": str(settings.path),
            "studies": by_state,
            "researchers": summary.researchers,
            "queries": summary.queries,
        },
    )


def _nodes(config: CoordinatorConfig, timeout_s: float) -> status.Section:
    nodes = list(read_summary(config.state).nodes)
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
