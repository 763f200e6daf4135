"""Assembles and runs the coordinator server from its config.

``create_server(config)`` opens the state ``[state] backend`` names (``coordinator.state.open_state``),
loads the committee members file into it, builds everything and binds the port, returning ``(server, port,
closer)`` without serving; ``serve(config)`` starts it, writes the ready file, and stops gracefully on SIGTERM
or SIGINT (in-flight calls finish within ``server.grace_seconds``; each state change is one transaction, so a
cut call changed all or nothing).

Threading model: gRPC's thread pool (``server.max_workers``) runs the servicer; ``CoordinatorState`` is
shared by all threads and serialises its own calls (see ``coordinator.state.interface``).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import grpc

from coordinator.config import CoordinatorConfig, Member, load_members
from coordinator.fanout import ClientIdentity, FanOut
from coordinator.queries import FederatedQueries, QueryLimits
from coordinator.record import recover_history
from coordinator.servicer import RPC_POLICY, CoordinatorServicer
from coordinator.state import CoordinatorState, open_state
from genogate.audit import AuditLog
from genogate.rpc import max_request_bytes
from genogate.server import build_server, serve_until_signalled
from genogate.signing import Signer
from genogate.wire.v1 import coordinator_pb2_grpc

log = logging.getLogger("genogate.coordinator")
SERVICE_NAME = "genogate.v1.CoordinatorService"
T = TypeVar("T")


def _add_members(state: CoordinatorState, members: list[Member], approvals_required: int) -> None:
    """Add every member of the members file to the state (idempotent: members already present stay; a member
    removed from the file stays in the state, whose registry is append-only)."""
    for member in members:
        state.add_committee_member(member.name, member.public_key)
    n = len(state.committee())
    if n < approvals_required:
        log.warning(
            "fewer committee members than approvals required: no study can be approved",
            extra={"members": n, "approvals_required": approvals_required},
        )


def create_server(config: CoordinatorConfig) -> tuple[grpc.Server, int, Closer]:
    """The bound (not yet started) server, its port, and what to close once it has stopped."""
    closer = Closer()
    try:
        members = load_members(config.committee.members_file)  # a bad file is refused before the state opens
        state = closer.add(open_state(config), "close")
        _add_members(state, members, config.committee.approvals_required)
        audit = closer.add(AuditLog(config.audit.path, Signer.from_pem_file(config.committee.signing_key)), "close")
        recover_history(state, audit)  # history rows a machine crash lost, from the audit log
        fanout = closer.add(
            FanOut(
                ClientIdentity(config.tls.ca_certs, config.tls.cert, config.tls.key),
                config.fanout,
                max_message_mb=config.server.max_message_mb,
            ),
            "close",
        )
        limits = QueryLimits(config.policy.epsilon_per_query_min, config.policy.max_variants_per_query)
        queries = FederatedQueries(state, fanout, audit, limits=limits)
        server, port = build_server(
            config.server,
            config.tls,
            service_name=SERVICE_NAME,
            policy=RPC_POLICY,
            thread_prefix="coordinator-rpc",
            max_receive_bytes=max_request_bytes(config.policy.max_variants_per_query),
            add_servicers=lambda srv: coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(
                CoordinatorServicer(state, config.roles, queries), srv
            ),
        )
    except BaseException:
        closer()
        raise
    closer.state, closer.queries = state, queries
    return server, port, closer


class Closer:
    """Closes what the server uses, newest first (fan-out channels, audit log, state)."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self.state: CoordinatorState | None = None
        self.queries: FederatedQueries | None = None

    def add(self, item: T, method: str) -> T:
        self._items.append(getattr(item, method))
        return item

    def __call__(self) -> None:
        while self._items:
            self._items.pop()()

    close = __call__


def serve(config: CoordinatorConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    server, port, closer = create_server(config)
    return serve_until_signalled(server, port, config.server, name=config.coordinator.name, log=log, on_stop=closer)
