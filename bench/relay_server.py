"""The floor's stand-in for the coordinator: a minimal gRPC relay that forwards bytes to every echo server.

Run as a process::

    python -m bench.relay_server {asyncio,futures} CA CERT KEY READY_FILE --combined N --target NAME=HOST:PORT ...

For each ``/bench.Relay/Relay`` request it sends the same bytes, undecoded, to every target's
``/bench.Echo/Echo`` at once and, when all have answered, replies ``N`` bytes (the combined answer). Its links
are genogate's coordinator->node links without genogate: mutual TLS with the relay's certificate, the target's
certificate checked against the target's name (``grpc.ssl_target_name_override``), 64 MiB message limits,
one channel per target opened at start and kept (``coordinator/fanout.py``); its server takes the options
``genogate/server.py`` gives every genogate server. A failed or late target fails the request (no retries).

Threading model, one per variant:

* ``asyncio``: a ``grpc.aio`` server and ``grpc.aio`` channels on one event loop in the main thread; a
  request is one coroutine gathering one call per target.
* ``futures``: a synchronous server (a pool of 8 threads, genogate's default ``max_workers``) and
  synchronous channels; a handler starts one ``.future()`` call per target and waits on each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench.echo_server import MAX_MESSAGE
from bench.echo_server import METHOD as ECHO

SERVICE = "bench.Relay"
METHOD = f"/{SERVICE}/Relay"
TIMEOUT_S = 30.0  # per target call; generous, a floor that stalls should fail loudly, not hang
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class Tls:
    ca: bytes
    cert: bytes
    key: bytes

    def server(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True)

    def channel(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def channel_options(name: str) -> list[tuple[str, Any]]:
    """The options of genogate's coordinator->node channels (``coordinator/fanout.py``)."""
    return [
        ("grpc.ssl_target_name_override", name),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]


def _write_ready(path: Path, port: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(str(port))
    os.replace(tmp, path)


async def serve_asyncio(tls: Tls, targets: Sequence[tuple[str, str]], combined: bytes, ready: Path) -> None:
    channels = [grpc.aio.secure_channel(addr, tls.channel(), options=channel_options(n)) for n, addr in targets]
    calls = [c.unary_unary(ECHO) for c in channels]

    async def relay(request: bytes, context: Any) -> bytes:
        await asyncio.gather(*(call(request, timeout=TIMEOUT_S) for call in calls))
        return combined

    server = grpc.aio.server(options=SERVER_OPTIONS)
    handler = grpc.method_handlers_generic_handler(SERVICE, {"Relay": grpc.unary_unary_rpc_method_handler(relay)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", tls.server())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    _write_ready(ready, port)
    await stop.wait()
    await server.stop(0)
    for c in channels:
        await c.close()


def serve_futures(tls: Tls, targets: Sequence[tuple[str, str]], combined: bytes, ready: Path) -> None:
    channels = [grpc.secure_channel(addr, tls.channel(), options=channel_options(n)) for n, addr in targets]
    calls = [c.unary_unary(ECHO) for c in channels]

    def relay(request: bytes, context: Any) -> bytes:
        pending = [call.future(request, timeout=TIMEOUT_S) for call in calls]
        for f in pending:
            f.result()  # raises the target's RpcError: the request fails with it
        return combined

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="relay"), options=SERVER_OPTIONS)
    handler = grpc.method_handlers_generic_handler(SERVICE, {"Relay": grpc.unary_unary_rpc_method_handler(relay)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", tls.server())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    _write_ready(ready, port)
    stop.wait()
    server.stop(0)
    for c in channels:
        c.close()


def _target(text: str) -> tuple[str, str]:
    name, sep, address = text.partition("=")
    if not (sep and name and address):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=HOST:PORT")
    return name, address


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.relay_server")
    p.add_argument("mode", choices=("asyncio", "futures"))
    p.add_argument("ca", type=Path)
    p.add_argument("cert", type=Path)
    p.add_argument("key", type=Path)
    p.add_argument("ready", type=Path)
    p.add_argument("--combined", type=int, required=True, help="bytes of the relay's reply")
    p.add_argument("--target", type=_target, action="append", required=True, help="NAME=HOST:PORT, repeated")
    args = p.parse_args(argv)
    tls = Tls(args.ca.read_bytes(), args.cert.read_bytes(), args.key.read_bytes())
    combined = os.urandom(args.combined)
    if args.mode == "asyncio":
        asyncio.run(serve_asyncio(tls, args.target, combined, args.ready))
    else:
        serve_futures(tls, args.target, combined, args.ready)


if __name__ == "__main__":
    main()
