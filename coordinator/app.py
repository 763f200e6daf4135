"""Assembles and runs the coordinator server from its config.

``create_server(config)`` opens the state, loads the committee members file into it, builds everything and
binds the port, returning ``(server, port, state)`` without serving; ``serve(config)`` starts it, writes the
ready file, and stops gracefully on SIGTERM or SIGINT (in-flight calls finish within
``server.grace_seconds``; each state change is one transaction, so a cut call changed all or nothing).

Threading model: gRPC's thread pool (``server.max_workers``) runs the servicer; ``CoordinatorState`` is
shared by all threads and serialises its own calls (see ``coordinator.state``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coordinator.config import CoordinatorConfig, load_members
from coordinator.servicer import RPC_POLICY, CoordinatorServicer
from coordinator.state import CoordinatorState
from genogate.config import read_file
from genogate.errors import ConfigError
from genogate.rpc import PolicyInterceptor
from genogate.signing import Signer
from genogate.wire.v1 import coordinator_pb2_grpc

log = logging.getLogger("genogate.coordinator")
SERVICE_NAME = "genogate.v1.CoordinatorService"


def open_state(config: CoordinatorConfig) -> CoordinatorState:
    """The state file with the committee signer, and every member of the members file added (idempotent:
    members already present stay; a member removed from the file stays in the state, whose registry is
    append-only)."""
    signer = Signer.from_pem_file(config.committee.signing_key)
    members = load_members(config.committee.members_file)
    state = CoordinatorState(config.state.path, signer, config.committee.approvals_required)
    try:
        for member in members:
            state.add_committee_member(member.name, member.public_key)
    except BaseException:
        state.close()
        raise
    n = len(state.committee())
    if n < config.committee.approvals_required:
        log.warning(
            "fewer committee members than approvals required: no study can be approved",
            extra={"members": n, "approvals_required": config.committee.approvals_required},
        )
    return state


def create_server(config: CoordinatorConfig) -> tuple[grpc.Server, int, CoordinatorState]:
    credentials = grpc.ssl_server_credentials(
        [(read_file(config.tls.key, "TLS key"), read_file(config.tls.cert, "TLS certificate"))],
        root_certificates=read_file(config.tls.ca_certs, "CA bundle"),
        require_client_auth=True,
    )
    state = open_state(config)
    try:
        limit = config.server.max_message_mb * 2**20
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.server.max_workers, thread_name_prefix="coordinator-rpc"),
            interceptors=[PolicyInterceptor(RPC_POLICY)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorServicer(state, config.roles), server)
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        port = server.add_secure_port(config.server.listen, credentials)
        if port == 0:
            raise ConfigError(f"[server] listen: cannot bind {config.server.listen}")
    except BaseException:
        state.close()
        raise
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, state


def serve(config: CoordinatorConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    server, port, state = create_server(config)
    server.start()
    host = config.server.listen.rsplit(":", 1)[0]
    _write_ready(
        config.server.ready_file,
        {"address": f"{host}:{port}", "port": port, "pid": os.getpid(), "name": config.coordinator.name},
    )
    log.info("serving", extra={"address": f"{host}:{port}", "coordinator": config.coordinator.name})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping", extra={"grace_seconds": config.server.grace_seconds})
    server.stop(config.server.grace_seconds).wait()
    state.close()
    config.server.ready_file.unlink(missing_ok=True)
    return 0


def _write_ready(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)
