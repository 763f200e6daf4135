"""Prometheus metrics of a genogate server (node or coordinator), served over HTTP at ``/metrics`` when
``[server] metrics_listen`` is set.

One registry per process (a process runs one server). Labels never carry data values or participant
attributes: only RPC and query-kind names, outcomes and reasons, study ids and site names, which the
operator already knows. Counts of queries are the node's and coordinator's own traffic, not cohort sizes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RPCS = Counter(
    "genogate_rpc_requests",
    "gRPC calls handled, by method and outcome (ok, or the lower-case gRPC status code).",
    ("method", "outcome", "reason"),
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "genogate_rpc_duration_seconds",
    "Time to handle a gRPC call, by method.",
    ("method",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
NODE_QUERIES = Counter(
    "genogate_node_queries",
    "Queries decided by this node, by kind and decision (charged, retry, replay, refused, failed).",
    ("kind", "decision"),
    registry=REGISTRY,
)
NODE_EPSILON = Counter(
    "genogate_node_epsilon_charged",
    "Epsilon charged to studies' budgets in this node's ledger, by study.",
    ("study",),
    registry=REGISTRY,
)
COORD_QUERIES = Counter(
    "genogate_coordinator_queries",
    "Federated queries, by kind and outcome (answered: every site; partial: some; failed: none).",
    ("kind", "outcome"),
    registry=REGISTRY,
)
COORD_SECONDS = Histogram(
    "genogate_coordinator_query_duration_seconds",
    "Time from a federated query's arrival to its combined answer, by kind.",
    ("kind",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SITE_RESULTS = Counter(
    "genogate_coordinator_site_results",
    "Per-site outcomes of fanned-out queries (answered, timed_out, refused, failed), by site and reason.",
    ("site", "status", "reason"),
    registry=REGISTRY,
)
SITE_SECONDS = Histogram(
    "genogate_coordinator_site_duration_seconds",
    "Time each site took to answer a fanned-out query (retries included), by site.",
    ("site",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SITE_EPSILON = Counter(
    "genogate_coordinator_epsilon_charged",
    "Epsilon the sites report having charged for fanned-out queries, by site.",
    ("site",),
    registry=REGISTRY,
)
UP_SINCE = Gauge("genogate_start_time_seconds", "Unix time this server started.", registry=REGISTRY)


M = TypeVar("M", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}


def child(metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, looked up once per label set and kept: a call on a hot path (every RPC,
    every query) costs one dict lookup instead of prometheus_client's validation and locking. The label
    values are drawn from small fixed sets (RPC and kind names, outcomes, reasons, study ids and site
    names), which prometheus_client keeps a child for anyway, so this holds no more than it does.
    Thread-safe: two threads racing on a new label set both get prometheus_client's one child."""
    key = (id(metric), labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found  # type: ignore[return-value]


@dataclass(frozen=True)
class SiteOutcome:
    site: str
    status: str
    reason: str
    seconds: float
    epsilon_charged: float


def node_query(kind: str, decision: str, study: str = "", charged: Decimal | float = 0) -> None:
    """One query this node decided; ``charged`` is the ε its ledger charged for it (0 for a refusal, a retry
    or a replay of a stored answer)."""
    child(NODE_QUERIES, kind or "unknown", decision).inc()
    if charged > 0:
        child(NODE_EPSILON, study).inc(float(charged))


def coordinator_query(kind: str, seconds: float, sites: Iterable[SiteOutcome]) -> None:
    answered = total = 0
    for s in sites:
        total += 1
        answered += s.status == "answered"
        SITE_RESULTS.labels(s.site, s.status, s.reason).inc()
        SITE_SECONDS.labels(s.site).observe(s.seconds)
        if s.epsilon_charged > 0:
            SITE_EPSILON.labels(s.site).inc(s.epsilon_charged)
    outcome = "answered" if total and answered == total else "partial" if answered else "failed"
    COORD_QUERIES.labels(kind, outcome).inc()
    COORD_SECONDS.labels(kind).observe(seconds)


def serve(listen: str) -> tuple[WSGIServer, threading.Thread, str]:
    """Serve ``/metrics`` on ``listen`` (HOST:PORT; port 0 picks one) in a daemon thread; returns the server,
    its thread and the bound address."""
    host, _, port = listen.rpartition(":")
    bind = host[1:-1] if host.startswith("[") else host
    server, thread = start_http_server(int(port), addr=bind, registry=REGISTRY)
    UP_SINCE.set_to_current_time()
    return server, thread, f"{host}:{server.server_port}"
