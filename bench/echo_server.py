"""The floor's stand-in for a node: a bare gRPC server with the same mTLS that answers bytes with bytes.

Run as a process: ``python -m bench.echo_server CA CERT KEY READY_FILE [--reply N]``; it writes its port to
READY_FILE. ``/bench.Echo/Echo`` answers the request itself, or ``N`` bytes with ``--reply N`` (a node's
signed release, without the node's work). ``/bench.Echo/Stats`` answers a JSON object with the ``Echo``
requests seen so far: their number, their total bytes and the SHA-256 of the last one (how a test checks
that a relay forwarded the exact bytes it was sent). No protobuf is decoded anywhere.

Threading model: gRPC's thread pool (8 threads, a genogate server's default ``max_workers``) runs the
handlers; the counters are guarded by one lock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Echo"
STATS = f"/{SERVICE}/Stats"
MAX_MESSAGE = 64 * 2**20  # genogate's default [server] max_message_mb


class Echo:
    def __init__(self, reply: int | None) -> None:
        self._reply = None if reply is None else os.urandom(reply)
        self._lock = threading.Lock()
        self._requests = 0
        self._bytes = 0
        self._last = b""

    def echo(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self._requests += 1
            self._bytes += len(request)
            self._last = request
        return request if self._reply is None else self._reply

    def stats(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            facts = {
                "requests": self._requests,
                "bytes": self._bytes,
                "last_sha256": hashlib.sha256(self._last).hexdigest(),
            }
        return json.dumps(facts).encode()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.echo_server")
    p.add_argument("ca", type=Path)
    p.add_argument("cert", type=Path)
    p.add_argument("key", type=Path)
    p.add_argument("ready", type=Path)
    p.add_argument("--reply", type=int, default=None, help="answer this many bytes (default: the request)")
    args = p.parse_args(argv)
    echo = Echo(args.reply)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="echo"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),
        ],
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo.echo),
            "Stats": grpc.unary_unary_rpc_method_handler(echo.stats),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(args.key.read_bytes(), args.cert.read_bytes())],
        root_certificates=args.ca.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    tmp = args.ready.with_name(f".{args.ready.name}.tmp")
    tmp.write_text(str(port))
    os.replace(tmp, args.ready)  # readers see the whole port or no file
    stop.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
