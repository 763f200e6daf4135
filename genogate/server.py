"""What every genogate gRPC server does alike (node and coordinator): mutual TLS, message limits, the
per-RPC policy interceptor, the standard health service and reflection; and running until SIGTERM/SIGINT
with a ready file that carries the bound address.

Threading model: gRPC's thread pool (``[server] max_workers`` threads) runs the servicers; the main thread
only waits for a signal, then stops the server gracefully (``grace_seconds``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from genogate import metrics
from genogate.config import read_file
from genogate.errors import ConfigError
from genogate.rpc import PolicyInterceptor
from genogate.settings import ServerSettings, TlsSettings


def build_server(
    settings: ServerSettings,
    tls: TlsSettings,
    *,
    service_name: str,
    policy: Mapping[str, str],
    add_servicers: Callable[[grpc.Server], None],
    thread_prefix: str,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_receive_bytes: int | None = None,
) -> tuple[grpc.Server, int]:
    """A bound (not yet started) server requiring client certificates from ``tls.ca_certs``. The access policy
    runs first; ``interceptors`` (metrics, test-only fault injection) run after it.

    Messages of up to ``[server] max_message_mb`` are sent; received ones are further limited to
    ``max_receive_bytes`` (the largest legitimate request, ``genogate.rpc.max_request_bytes``): gRPC refuses a
    bigger one (RESOURCE_EXHAUSTED) before any of it is decoded."""
    credentials = grpc.ssl_server_credentials(
        [(read_file(tls.key, "TLS key"), read_file(tls.cert, "TLS certificate"))],
        root_certificates=read_file(tls.ca_certs, "CA bundle"),
        require_client_auth=True,
    )
    limit = settings.max_message_mb * 2**20
    receive = limit if max_receive_bytes is None else min(limit, max_receive_bytes)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=thread_prefix),
        interceptors=[PolicyInterceptor(policy), *interceptors],
        options=[
            ("grpc.max_receive_message_length", receive),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_servicers(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_secure_port(settings.listen, credentials)
    if port == 0:
        raise ConfigError(f"[server] listen: cannot bind {settings.listen}")
    for name in ("", service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def serve_until_signalled(
    server: grpc.Server,
    port: int,
    settings: ServerSettings,
    *,
    name: str,
    log: logging.Logger,
    on_stop: Callable[[], None],
    log_extra: Mapping[str, object] | None = None,
) -> int:
    """Start, write the ready file, wait for SIGTERM/SIGINT, stop gracefully, run ``on_stop``; exit code 0."""
    server.start()
    address = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
    ready: dict[str, object] = {"address": address, "port": port, "pid": os.getpid(), "name": name}
    metrics_server = None
    if settings.metrics_listen:
        try:
            metrics_server, _, ready["metrics_address"] = metrics.serve(settings.metrics_listen)
        except OSError as exc:
            server.stop(0)
            raise ConfigError(
                f"[server] metrics_listen: cannot bind {settings.metrics_listen} ({exc.strerror})"
            ) from None
    _write_ready(settings.ready_file, ready)
    facts = {k: v for k, v in ready.items() if k != "name"}  # "name" is reserved in a LogRecord
    log.info("serving", extra={**facts, "server": name, **(log_extra or {})})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping", extra={"grace_seconds": settings.grace_seconds})
    server.stop(settings.grace_seconds).wait()
    if metrics_server is not None:
        metrics_server.shutdown()
    on_stop()
    settings.ready_file.unlink(missing_ok=True)
    return 0


def _write_ready(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)
