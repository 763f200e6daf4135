"""The floor for node latency: a bare gRPC server with the same mTLS that echoes bytes back.

Run as a process: ``python -m bench.echo_server CA CERT KEY READY_FILE``; it writes its port to READY_FILE.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

METHOD = "/bench.Echo/Echo"


def _echo(request: bytes, context: Any) -> bytes:
    return request


def main() -> None:
    ca, cert, key, ready = (Path(a) for a in sys.argv[1:5])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=ca.read_bytes(), require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    ready.write_text(str(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
