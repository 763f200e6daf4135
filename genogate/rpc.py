"""The RPC boundary both services share: one error wrapper for servers, one mapper for clients, and the
per-RPC access policy.

Server side, ``boundary`` turns a ``GenogateError`` into its gRPC status with the fixed public message (cut
to ``MAX_MESSAGE_BYTES``) and the stable reason in the trailing metadata key ``genogate-reason``; anything
else becomes INTERNAL with a generic message (the traceback goes to the log only). Client side,
``error_from_rpc`` rebuilds the same error class and reason from the status.

Requests are decoded here too, not by gRPC: ``PolicyInterceptor`` hands every handler the raw bytes and
decodes them itself, so that bytes that are not a valid message are INVALID_ARGUMENT (``INVALID_QUERY``) with
one warning line and no traceback (gRPC's own decoder logs an ERROR traceback per message and answers
INTERNAL without a reason).

A call that never reached the server fails in gRPC with "failed to connect to all addresses" and the
transport's own words; ``transport_message`` (and ``unreachable_message`` for the Python ``ssl`` probe the
coordinator's fan-out makes first) says instead which address, which CA and certificate files, and what to
check: is it running and is that its port; is the server's certificate signed by that CA; does it name the
host; does the server accept this client's certificate. ``ClientTLS`` is a client's identity for those calls.

Clients (the ``genogate`` command line among them) import this module: what only servers use (Prometheus
metrics, X.509 parsing) is imported by the server-side functions that use it, not here.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from genogate.errors import (
    GenogateError,
    Internal,
    InvalidArgument,
    PermissionDenied,
    Reason,
    Unauthenticated,
    Unavailable,
    class_for_status,
)

if TYPE_CHECKING:
    from genogate.settings import TlsSettings

REASON_KEY = "genogate-reason"
log = logging.getLogger("genogate.rpc")

BYTES_PER_VARIANT = 256
"""Room per variant in a signed query envelope: a variant takes 15-40 bytes, long indels more."""
ENVELOPE_SLACK = 64 * 1024
"""Room for everything else in an envelope (filters of at most 256 terms, ids, nonce, site names)."""
REQUEST_SLACK = 1 << 20
"""Room beside the envelope in a request: the grant (at most 64 KiB), signatures and framing."""


def max_envelope_bytes(max_variants_per_query: int) -> int:
    """The largest signed query envelope a server accepts: refused before it is decoded or verified."""
    return max_variants_per_query * BYTES_PER_VARIANT + ENVELOPE_SLACK


def max_request_bytes(max_variants_per_query: int) -> int:
    """The largest request message a server receives (gRPC's own limit, below which nothing is read)."""
    return max_envelope_bytes(max_variants_per_query) + REQUEST_SLACK


R = TypeVar("R")


def caller_common_name(context: grpc.ServicerContext) -> str:
    """The verified client certificate's common name (mTLS makes the transport refuse anyone else).

    Read from the certificate itself, whose subject must hold exactly one, non-empty common name: gRPC's
    ``x509_common_name`` reports one of several, so "CN=operator, CN=alice" could pass as either."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    name = _sole_common_name(bytes(pems[0])) if pems else None
    if name is None:
        raise Unauthenticated(
            "client certificate without exactly one common name",
            message="the client certificate must name exactly one common name",
        )
    return name


@functools.lru_cache(maxsize=256)
def _sole_common_name(pem: bytes) -> str | None:
    """``tls.sole_common_name``, parsed once per certificate (callers reuse theirs across calls)."""
    from genogate.tls import sole_common_name

    return sole_common_name(pem)


_SERVER_SIDE = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})


def boundary(method: Callable[..., R]) -> Callable[..., R]:
    """Wrap a servicer method: errors to status + reason, one structured log line per call."""

    name = method.__qualname__.replace("Servicer.", ".")  # NodeServicer.Query -> Node.Query

    from genogate import metrics  # servers only: a client never loads prometheus_client

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        t0 = time.perf_counter()
        outcome, reason = "ok", ""
        try:
            return method(self, request, context)
        except GenogateError as exc:
            outcome, reason = exc.code.name.lower(), exc.reason.name
            if exc.code in _SERVER_SIDE and not exc.remote:
                # The operator needs the detail (which file, what failed); the caller gets the fixed message.
                log.error("%s failed on this server", method.__name__, extra={"reason": reason, "detail": str(exc)})
            context.set_trailing_metadata(((REASON_KEY, exc.reason.name),))
            context.abort(exc.code, public_message(exc.message))
        except Exception:  # noqa: BLE001 - the boundary must answer; the traceback goes to the log
            outcome, reason = "internal", Reason.INTERNAL.name
            log.exception("unexpected error in %s", method.__name__)
            context.set_trailing_metadata(((REASON_KEY, Reason.INTERNAL.name),))
            context.abort(grpc.StatusCode.INTERNAL, Internal.message)
        finally:
            seconds = time.perf_counter() - t0
            metrics.RPCS.labels(name, outcome, reason).inc()
            metrics.RPC_SECONDS.labels(name).observe(seconds)
            log.info(
                "rpc",
                extra={
                    "rpc": method.__name__,
                    "outcome": outcome,
                    "reason": reason,
                    "latency_ms": round(seconds * 1e3, 3),
                },
            )
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


MAX_MESSAGE_BYTES = 1000
"""The most UTF-8 bytes of a status message sent. gRPC carries the message percent-encoded in a header and
drops the whole response (RESOURCE_EXHAUSTED, no reason) past its 16 KiB metadata limit; a message that
names what the caller sent (labels, terms) could otherwise grow with the request."""


def public_message(message: str) -> str:
    """``message``, cut to ``MAX_MESSAGE_BYTES`` of UTF-8 (at a character boundary) and marked as cut."""
    raw = message.encode()
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    return raw[: MAX_MESSAGE_BYTES - 4].decode(errors="ignore") + " ..."


def error_from_rpc(exc: grpc.RpcError, peer: Peer | None = None) -> GenogateError:
    """The ``GenogateError`` a failed call stands for (class from the status code, reason from metadata).

    A call that never reached a server (no reason in the metadata; UNAVAILABLE) says, when the caller
    names its ``peer``, which address and which certificate files, and what to check (``transport_message``)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    reason_name = ""
    for key, value in (exc.trailing_metadata() or ()) if hasattr(exc, "trailing_metadata") else ():
        if key == REASON_KEY:
            reason_name = value if isinstance(value, str) else value.decode()
    cls = class_for_status(code)
    reason = Reason[reason_name] if reason_name in Reason.__members__ else cls.reason
    details = exc.details() if hasattr(exc, "details") else ""
    if peer is not None and not reason_name and code == grpc.StatusCode.UNAVAILABLE:
        down = Unavailable("", message=transport_message(details or "", peer))
        down.remote = True
        return down
    if not reason_name and code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (details or ""):
        # gRPC's own message-size limit refused the request before any genogate code read it: not a budget.
        big = InvalidArgument("", reason=Reason.INVALID_QUERY, message="the request is larger than the server accepts")
        big.remote = True
        return big
    err = cls("", reason=reason, message=details or cls.message)
    err.remote = True
    return err


class PolicyInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses every RPC the policy table does not list (a new RPC is closed until someone opens it)."""

    def __init__(self, policy: Mapping[str, str]):
        self.policy = dict(policy)

    def intercept_service(self, continuation: Any, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method not in self.policy:
            return _deny(handler_call_details.method)
        return _decoding(handler_call_details.method, continuation(handler_call_details))


UNDECODABLE = "the request could not be decoded"


def _undecodable(method: str, size: int, context: grpc.ServicerContext) -> None:
    """One line for the operator (which RPC, how many bytes; never the bytes), a reasoned status for the caller."""
    from genogate import metrics

    log.warning("undecodable request", extra={"rpc": method, "bytes": size, "reason": Reason.INVALID_QUERY.name})
    service, _, rpc = method.rpartition("/")
    label = f"{service.rsplit('.', 1)[-1].removesuffix('Service')}.{rpc}"  # as ``boundary`` names it: Node.Query
    metrics.RPCS.labels(label, "invalid_argument", Reason.INVALID_QUERY.name).inc()
    context.set_trailing_metadata(((REASON_KEY, Reason.INVALID_QUERY.name),))
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE)


def _decoding(method: str, handler: Any) -> Any:
    """``handler`` taking raw bytes and decoding them with its own deserializer (see the module docstring)."""
    decode = getattr(handler, "request_deserializer", None)
    if handler is None or decode is None:
        return handler

    def one(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return decode(raw)
        except Exception:  # noqa: BLE001 - protobuf raises DecodeError, and RuntimeWarning-like others on junk
            _undecodable(method, len(raw), context)
        raise AssertionError("unreachable")  # context.abort raises

    def many(raws: Any, context: grpc.ServicerContext) -> Any:
        for raw in raws:
            yield one(raw, context)

    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary
        return grpc.unary_unary_rpc_method_handler(
            lambda raw, ctx: inner_uu(one(raw, ctx), ctx), response_serializer=serialize
        )
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream
        return grpc.unary_stream_rpc_method_handler(
            lambda raw, ctx: inner_us(one(raw, ctx), ctx), response_serializer=serialize
        )
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary
        return grpc.stream_unary_rpc_method_handler(
            lambda raws, ctx: inner_su(many(raws, ctx), ctx), response_serializer=serialize
        )
    inner_ss = handler.stream_stream
    return grpc.stream_stream_rpc_method_handler(
        lambda raws, ctx: inner_ss(many(raws, ctx), ctx), response_serializer=serialize
    )


def _deny(method: str) -> grpc.RpcMethodHandler:
    def abort(request: Any, context: grpc.ServicerContext) -> None:
        context.set_trailing_metadata(((REASON_KEY, Reason.NOT_AUTHORIZED.name),))
        context.abort(grpc.StatusCode.PERMISSION_DENIED, PermissionDenied.message)

    return grpc.unary_unary_rpc_method_handler(abort)


# Calls that never reached a server ------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Whom a client calls, for the message of a failed connection: the ``address``, what it is
    ("coordinator", "node hospital-a"), the name its certificate must carry (default: the address's host),
    this client's CA and certificate files (empty when the caller has only their bytes) and how the client
    is named ("this client", "the coordinator")."""

    address: str
    what: str = "server"
    server_name: str = ""
    ca_file: str = ""
    cert_file: str = ""
    client: str = "this client"

    @property
    def host(self) -> str:
        return self.server_name or self.address.rpartition(":")[0].strip("[]") or self.address


@dataclass(frozen=True)
class ClientTLS:
    """PEM bytes: the CA that signed the server's certificate, and this client's key and certificate."""

    ca: bytes
    key: bytes
    cert: bytes
    ca_file: str = field(default="", compare=False)
    """Where ``ca`` was read from (named when a connection fails), and ``cert``."""
    cert_file: str = field(default="", compare=False)

    @classmethod
    def from_files(cls, ca: Path, key: Path, cert: Path) -> ClientTLS:
        return cls(
            Path(ca).read_bytes(), Path(key).read_bytes(), Path(cert).read_bytes(), ca_file=str(ca), cert_file=str(cert)
        )

    @classmethod
    def from_settings(cls, tls: TlsSettings) -> ClientTLS:
        """A server's own ``[tls]`` files as a client identity (its health probe, status, revocation fetches);
        ``ConfigError`` names a file that cannot be read."""
        from genogate.config import read_file

        return cls(
            read_file(tls.ca_certs, "CA bundle"),
            read_file(tls.key, "TLS key"),
            read_file(tls.cert, "TLS certificate"),
            ca_file=str(tls.ca_certs),
            cert_file=str(tls.cert),
        )

    def peer(self, address: str, what: str, server_name: str = "") -> Peer:
        """``address`` as a ``Peer``, with these files, for connection failures."""
        return Peer(address, what, server_name, self.ca_file, self.cert_file)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def _files(peer: Peer) -> tuple[str, str]:
    ca = f"the CA in {peer.ca_file}" if peer.ca_file else f"{peer.client}'s CA bundle"
    cert = f"{peer.client}'s certificate {peer.cert_file}" if peer.cert_file else f"{peer.client}'s certificate"
    return ca, cert


def _status_hint(peer: Peer) -> str:
    kind = peer.what.split()[0] if peer.what else ""
    return f"'genogate-{kind} status'" if kind in ("node", "coordinator") else "its status command"


def transport_message(details: str, peer: Peer) -> str:
    """What a failed connection to ``peer`` means (from gRPC's status details) and what to check."""
    where = f"{peer.what} at {peer.address}"
    ca, cert = _files(peer)
    d = details.lower()
    if "connection refused" in d:
        return (
            f"cannot connect to the {where}: nothing listens there (connection refused). Check that the "
            f"{peer.what} is running and that {peer.address} is its host and port ({_status_hint(peer)} on its "
            "host shows where it listens)"
        )
    if "resolv" in d or "dns" in d or "name not found" in d or "lookup" in d:
        return f"cannot connect to the {where}: the host name does not resolve. Check the host in {peer.address}"
    if "certificate_verify_failed" in d or "unable to get local issuer" in d or "self signed" in d:
        if "expired" in d:
            return f"TLS handshake with the {where} failed: its certificate has expired. Renew it"
        return (
            f"TLS handshake with the {where} failed: its certificate is not signed by {ca}. Check that the "
            f"CA file is the federation's CA and that the {peer.what}'s certificate was issued by it"
        )
    if "hostname verification" in d or "peer name" in d or "no match found for server name" in d:
        return (
            f"TLS handshake with the {where} failed: its certificate does not name {peer.host!r} (check its "
            f"CN and subject alternative names, or connect with the name it was issued for)"
        )
    connecting = "failed to connect" in d
    if "alert" in d or "handshake" in d or "ssl" in d or "tls" in d or (connecting and "socket closed" in d):
        return (
            f"the {where} closed the connection during the TLS handshake: it most likely does not accept "
            f"{cert} (issued by a CA it does not trust, expired, or for another use). Check that the "
            f"{peer.what} trusts the CA that issued it"
        )
    if "socket closed" in d or "connection reset" in d:
        return f"the connection to the {where} was closed before it answered (did it stop or restart?)"
    last = details.rsplit("last error: ", 1)[-1]
    last = re.sub(r"^[A-Z_]+: (ipv[46]:\S+: )?", "", last)
    return (
        f"cannot connect to the {where} ({last[:200] or 'unavailable'}). Check that it is running and that "
        f"{peer.address} is its host and port"
    )


def unreachable_message(exc: BaseException, peer: Peer) -> str:
    """``transport_message`` for an ``OSError`` / ``ssl.SSLError`` of a Python connection to ``peer``."""
    where = f"{peer.what} at {peer.address}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return transport_message("hostname verification check failed", peer)
        if exc.verify_code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return transport_message("certificate_verify_failed: certificate has expired", peer)
        return transport_message("certificate_verify_failed", peer)
    if isinstance(exc, ssl.SSLError):
        return transport_message("tls alert", peer)
    if isinstance(exc, ConnectionRefusedError):
        return transport_message("connection refused", peer)
    if isinstance(exc, socket.gaierror):
        return transport_message("name not found", peer)
    if isinstance(exc, TimeoutError):
        return f"the {where} did not accept a connection in time. Check that it is running and reachable"
    return transport_message(exc.strerror or type(exc).__name__ if isinstance(exc, OSError) else str(exc), peer)
