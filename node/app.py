"""Assembles and runs a node server from its config.

``create_server(config)`` builds everything and binds the port, returning ``(server, port, service)``
without serving; ``serve(config)`` starts it, writes the ready file, and stops gracefully on SIGTERM or
SIGINT (in-flight queries finish within ``server.grace_seconds``; a charge already made stays made).

Threading model: gRPC's thread pool (``server.max_workers``) runs the servicer; the query service is
thread-safe (see ``node.service``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

import grpc

from genogate import __version__, duo
from genogate.errors import ConfigError
from genogate.nodeclient import ClientTLS
from genogate.rpc import max_envelope_bytes, max_request_bytes
from genogate.server import build_server, serve_until_signalled
from genogate.signing import Signer, key_id
from genogate.wire.v1 import common_pb2 as pb  # noqa: F401 - named in a cast
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import coordinator_pb2_grpc, node_pb2_grpc
from genogate.wire.v1 import node_pb2 as npb
from node.backend import open_backend
from node.config import NodeConfig
from node.consent import ConsentStore, consent_path
from node.dp import OpenDPNoise
from node.grants import GrantVerifier, RevocationCache
from node.ledger import Ledger
from node.nonces import NonceStore
from node.ontology import read_mondo
from node.policy import Policy
from node.service import QueryService
from node.servicer import RPC_POLICY, NodeServicer
from node.studies import Study, load_studies

log = logging.getLogger("genogate.node")
SERVICE_NAME = "genogate.v1.NodeService"


def policy_of(config: NodeConfig) -> Policy:
    p = config.policy
    return Policy(
        epsilon_per_query_cap=p.epsilon_per_query_cap,
        epsilon_per_query_min=p.epsilon_per_query_min,
        epsilon_per_study_cap=p.epsilon_per_study_cap,
        delta_per_query=p.delta_per_query,
        delta_per_study_cap=p.delta_per_study_cap,
        min_reportable_count=p.min_reportable_count,
        allowed_kinds=p.kinds,
        allowed_purposes=frozenset(p.allowed_purposes),
        max_variants_per_query=p.max_variants_per_query,
        rate_limit_per_study_per_minute=p.rate_limit_per_study_per_minute,
        public_site_catalogue=p.public_site_catalogue,
        epsilon_per_researcher_cap=p.epsilon_per_researcher_cap,
        epsilon_per_node_cap=p.epsilon_per_node_cap,
        budget_period_days=p.budget_period_days,
        preview_participants=p.preview_participants,
    )


def studies_provider(path: Path) -> Callable[[], Mapping[str, Study]]:
    """The trusted studies, re-read when the file changes (the data steward edits it while serving)."""
    state: dict[str, object] = {"mtime": None, "studies": load_studies(path), "checked": time.monotonic()}
    state["mtime"] = path.stat().st_mtime_ns
    lock = threading.Lock()

    def current() -> Mapping[str, Study]:
        with lock:
            if time.monotonic() - float(state["checked"]) >= 1.0:  # type: ignore[arg-type]
                state["checked"] = time.monotonic()
                mtime = path.stat().st_mtime_ns
                if mtime != state["mtime"]:
                    try:
                        state["studies"] = load_studies(path)
                        state["mtime"] = mtime
                        log.info("reloaded trusted studies", extra={"file": str(path)})
                    except ConfigError as exc:  # keep serving the last good list
                        log.error(
                            "trusted studies file is invalid; keeping the previous list", extra={"error": str(exc)}
                        )
            return state["studies"]  # type: ignore[return-value]

    return current


def grant_verifier(config: NodeConfig, ledger: Ledger) -> GrantVerifier | None:
    """The node's own verifier of signed grants, or None when it trusts no committee. Nonces are kept in
    ``ledger``'s file (a separate ``[grants] nonce_store`` of earlier versions is imported, ``node.nonces``)."""
    g = config.grants
    if not g.committee_keys:
        return None
    trusted = {key_id(raw): raw for raw in (bytes.fromhex(h) for h in g.committee_keys)}
    cache = RevocationCache(trusted, int(g.revocation_max_staleness_seconds * 1000))
    window_ms = int(g.timestamp_window_seconds * 1000)
    return GrantVerifier(
        site=config.node.name,
        trusted_committee=trusted,
        revocations=cache,
        nonces=NonceStore(ledger, window_ms, legacy=g.nonce_store),
        timestamp_window_ms=window_ms,
        opted_in=frozenset(g.opted_in) if g.require_opt_in else None,
        refused=frozenset(g.refused),
        max_payload_bytes=max_envelope_bytes(config.policy.max_variants_per_query),
    )


class RevocationRefresher:
    """Fetches the committee-signed revocation list from the coordinator every few seconds (a daemon
    thread). A failed fetch keeps the last good list; once it is too old, grant queries are refused."""

    def __init__(self, config: NodeConfig, cache: RevocationCache):
        self.cache = cache
        self.every = config.grants.revocation_refresh_seconds
        self.channel = grpc.secure_channel(config.grants.coordinator, ClientTLS.from_settings(config.tls).credentials())
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="revocations", daemon=True)

    def fetch(self) -> cpb.SignedRevocationList:
        response: cpb.GetRevocationsResponse = self.stub.GetRevocations(cpb.GetRevocationsRequest(), timeout=10)
        return response.revocations

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.cache.refresh(self.fetch):
                log.warning("could not refresh the revocation list", extra={"error": str(self.cache.last_error)})
            self.stop.wait(self.every)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.channel.close()


def create_server(
    config: NodeConfig, interceptors: Sequence[grpc.ServerInterceptor] = ()
) -> tuple[grpc.Server, int, QueryService]:
    signer = Signer.from_pem_file(config.keys.identity_key)
    policy = policy_of(config)
    diseases, disease_releases = duo.ICD10_ONLY, {}
    if config.ontologies.mondo is not None:
        mondo, release = read_mondo(config.ontologies.mondo)
        diseases, disease_releases = duo.Diseases(mondo), {"MONDO": release}
    backend = open_backend(config.store.path, config.store.backend, config.store.memory_mb)
    consent = None
    try:
        # Consent changes made while serving (``genogate-node consent``), applied at the next query.
        consent = ConsentStore(consent_path(config.store.path))
        ledger = Ledger(config.ledger.path, audit_signer=signer)
        service = QueryService(
            name=config.node.name,
            backend=backend,
            ledger=ledger,
            studies=studies_provider(config.studies.trusted_file) if config.studies.local else dict,
            policy=policy,
            noise=OpenDPNoise(),
            signer=signer,
            grants=grant_verifier(config, ledger),
            build=config.node.genome_build,
            covered_bed=config.store.covered_regions,
            diseases=diseases,
            disease_releases=disease_releases,
            coordinator_common_name=config.grants.coordinator_common_name,
            consent=consent,
        )
    except BaseException:
        if consent is not None:
            consent.close()
        backend.close()
        raise
    catalogue = service.catalogue
    info = npb.GetNodeInfoResponse(
        name=config.node.name,
        genome_build=catalogue.build,
        contigs=catalogue.contigs,
        covered_regions=[str(r) for r in catalogue.covered_regions()],
        kinds=[cast("pb.QueryKind.ValueType", k.value) for k in sorted(policy.allowed_kinds, key=lambda k: k.value)],
        max_variants_per_query=policy.max_variants_per_query,
        min_reportable_count=policy.min_reportable_count,
        version=__version__,
        accepted_purposes=sorted(policy.allowed_purposes),
        epsilon_total_cap=float(policy.epsilon_per_study_cap),
        epsilon_per_query_cap=float(policy.epsilon_per_query_cap),
        epsilon_per_query_min=float(policy.epsilon_per_query_min),
        receipt_public_key=signer.public_raw,
        receipt_key_id=signer.key_id,
        labels=[npb.LabelSet(attribute=a, labels=labels) for a, labels in service.labels()],
        ontologies=[npb.OntologyRelease(name=n, release=r) for n, r in sorted(service.ontologies().items())],
    )
    server, port = build_server(
        config.server,
        config.tls,
        service_name=SERVICE_NAME,
        policy=RPC_POLICY,
        thread_prefix="node-rpc",
        interceptors=interceptors,
        max_receive_bytes=max_request_bytes(policy.max_variants_per_query),
        add_servicers=lambda srv: node_pb2_grpc.add_NodeServiceServicer_to_server(NodeServicer(service, info), srv),
    )
    return server, port, service


def serve(config: NodeConfig, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    server, port, service = create_server(config, interceptors)
    refresher = None
    if service.revocations is not None and config.grants.coordinator:
        refresher = RevocationRefresher(config, service.revocations)
        refresher.start()

    def on_stop() -> None:
        if refresher is not None:
            refresher.close()
        service.close()

    return serve_until_signalled(
        server,
        port,
        config.server,
        name=config.node.name,
        log=log,
        on_stop=on_stop,
        log_extra={"samples": service.n_samples},
    )
