"""Federated fan-out: one researcher's signed query to every site of the study, concurrently.

The coordinator relays; it never decides on a node's behalf. For each site it sends the researcher's
envelope byte for byte with the study's committee-signed grant, and each node verifies both, charges its
own ledger and releases noisy values under its own policy. ``run`` is handed the envelope the coordinator
opened once (``genogate.envelope.OpenedEnvelope``) and never decodes it again, for any site.

* **Lean per call.** The ``QueryRequest`` (the envelope's bytes as they came, and the grant) is serialised
  once per query; every site and every retry is sent those same bytes through a ``Query`` multi-callable
  kept with the node's channel (no stub, multi-callable, lock or extra task per call once the link is open),
  and each reply is decoded once. A release is verified as its reply arrives, on the loop (an Ed25519 check,
  ~0.2 ms: cheaper than a hand-off to another thread and back).
* **Concurrent, isolated.** One ``grpc.aio`` channel per node, kept open across queries (mutual TLS with the
  coordinator's certificate, the node's name checked against its certificate, and the registry's pin checked
  whenever a channel is opened: the certificate's SHA-256, or, for a node pinned by its CA, that the
  certificate was issued directly by that CA, one of the coordinator's trusted CAs, so a renewed
  certificate keeps working).
* **The registry's current record.** Every call is handed the nodes as the registry holds them now; a
  channel (and the cached node info) is kept only while the node's endpoint and pin are the ones it was
  opened for, so after ``genogate nodes update`` the next call opens a channel to the new endpoint, with no
  restart (one tuple comparison per site and call; nothing is decoded). ``forget`` closes a removed node's
  channel. Sites are asked at once; a slow or dead
  site never holds the others: each has its own deadline and the answer is assembled when all have an
  outcome.
* **Retries cannot spend twice.** Only UNAVAILABLE and DEADLINE_EXCEEDED are retried, within the site's
  deadline, always with the same bytes (the same query id, nonce and signature), so a node that did answer
  the first time returns the stored release of that query id: no second charge, no fresh noise.
* **Node info is cached.** ``infos`` fetches each site's GetNodeInfo (its published labels and ontologies)
  over the same channels, kept for ``INFO_TTL_S``; a site that does not answer within ``INFO_TIMEOUT_S`` is
  reported as ``None`` (remembered for ``INFO_RETRY_S``, so a down site does not slow every query).
* **Releases are checked.** A release counts only if the node's Ed25519 signature verifies under the receipt
  key the node published, and it names this site, study and query id and the SHA-256 of exactly the payload
  sent. Anything else is that site's failure (``BAD_SIGNATURE``), never a value in the combination. A
  release that fails under the cached key is checked once more under the key the node publishes now (a node
  that replaced its identity key and restarted at the same endpoint), fetched over a link opened afresh with
  the pin checked again; the new key is kept only once a release verifies under it, and logged.

Threading model: ``FanOut`` owns an asyncio loop in one daemon thread; ``run``, ``budgets`` and ``policies`` are called
from gRPC worker threads and block on it (one hand-off per call). Channels are created and used only on that
loop. ``infos`` answers from its cache in the calling thread when every node's entry is fresh (entries are
replaced whole, never changed in place), and goes to the loop only to fetch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from coordinator.config import FanoutSettings
from genogate.envelope import OpenedEnvelope
from genogate.errors import GenogateError, Reason, Unauthenticated, Unavailable
from genogate.rpc import Peer, error_from_rpc, unreachable_message
from genogate.signing import verify
from genogate.studies import NodeInfo
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import node_pb2 as npb
from genogate.wire.v1 import node_pb2_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
_RELEASE_BODY = "genogate.v1.ReleaseBody"
_QUERY_METHOD = "/genogate.v1.NodeService/Query"
INFO_TTL_S = 30.0
INFO_RETRY_S = 5.0
INFO_TIMEOUT_S = 2.0
T = TypeVar("T")

log = logging.getLogger("genogate.coordinator")


@dataclass(frozen=True)
class ClientIdentity:
    """The coordinator's TLS identity toward nodes: CA that signs node certificates, its own key and cert."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass
class SiteResult:
    """What became of one site's part of a query (``SiteOutcome`` on the wire)."""

    site: str
    status: pb.SiteStatus.ValueType
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    release: pb.Release | None = None
    body: pb.ReleaseBody | None = None
    attempts: int = 0
    latency_ms: int = 0

    @property
    def epsilon_charged(self) -> float:
        """ε this fan-out cost the site: what the answering attempt paid, or, when that attempt was a retry of
        this query id whose earlier attempt of this fan-out made the charge (its answer lost on the way), that
        original charge. A stored release (``from_store``) cost nothing."""
        body = self.body
        if body is None:
            return 0.0
        if self.attempts > 1 and not body.from_store and body.epsilon_charged == 0:
            return body.original_epsilon_charged
        return body.epsilon_charged

    def to_pb(self, *, with_release: bool) -> pb.SiteOutcome:
        out = pb.SiteOutcome(
            site=self.site,
            status=self.status,
            reason=int(self.reason),  # type: ignore[arg-type]
            message=self.message,
            attempts=self.attempts,
            latency_ms=self.latency_ms,
        )
        if self.body is not None:
            out.epsilon_charged, out.from_store = self.epsilon_charged, self.body.from_store
            if self.body.from_store:  # the ε its values were drawn at, not the ε this query asked
                out.stored_epsilon = self.body.original_epsilon_charged
        if with_release and self.release is not None:
            out.release.CopyFrom(self.release)
        return out


def refused(site: str, error: GenogateError) -> SiteResult:
    """A site the coordinator itself does not ask (not in the grant, not registered)."""
    return SiteResult(site, pb.SITE_STATUS_REFUSED, error.reason, error.message)


class _Link:
    """One node: its channel, stub, Query multi-callable and receipt key, opened on the fan-out loop and kept
    with the channel (nothing of it is created per call)."""

    def __init__(self, node: NodeInfo, channel: grpc.aio.Channel):
        self.node = node
        self.where = _where(node)
        self.channel = channel
        self.stub = node_pb2_grpc.NodeServiceStub(channel)
        # NodeService.Query taking the ``QueryRequest`` already serialised (``_run`` does it once per query, the
        # same bytes for every site and every retry); the reply is decoded once, here.
        self.query: grpc.aio.UnaryUnaryMultiCallable[bytes, npb.QueryResponse] = channel.unary_unary(
            _QUERY_METHOD,
            request_serializer=None,
            response_deserializer=npb.QueryResponse.FromString,
            _registered_method=True,
        )
        self.receipt_key: bytes | None = None


class FanOut:
    def __init__(self, identity: ClientIdentity, settings: FanoutSettings, *, max_message_mb: int = 64):
        self.settings = settings
        self._max_message_mb = max_message_mb
        self._ca = identity.ca_cert.read_bytes()
        self._cert = identity.cert.read_bytes()
        self._key = identity.key.read_bytes()
        self._identity = identity
        # The trusted CA certificates by the SHA-256 of their DER (what a node's ``ca_sha256`` pin names).
        self._cas = {
            hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest(): c
            for c in x509.load_pem_x509_certificates(self._ca)
        }
        self._links: dict[str, _Link] = {}
        # site -> (valid until, where (endpoint and pins), its GetNodeInfo or None when it did not answer)
        self._infos: dict[str, tuple[float, tuple[str, str, str], npb.GetNodeInfoResponse | None]] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="coordinator-fanout", daemon=True)
        self._thread.start()
        self._closed = False

    # Public, called from any thread -------------------------------------------------------------------------

    def run(
        self, nodes: Sequence[NodeInfo], opened: OpenedEnvelope, grant: pb.StudyGrant, *, timeout_ms: int = 0
    ) -> list[SiteResult]:
        """Ask every node (in order) the query ``opened`` (its signed bytes as they came, with ``grant``) and
        return one result per node, in the same order. Nothing here decodes the envelope again."""
        timeout = self._timeout_s(timeout_ms)
        return self._call(self._run(nodes, opened, grant, timeout), timeout)

    def budgets(
        self, nodes: Sequence[NodeInfo], request: npb.GetBudgetRequest, *, timeout_ms: int = 0
    ) -> list[tuple[SiteResult, pb.BudgetStatus | None]]:
        timeout = self._timeout_s(timeout_ms)
        return self._call(self._budgets(nodes, request, timeout), timeout)

    def policies(
        self, nodes: Sequence[NodeInfo], request: npb.DescribePolicyRequest, *, timeout_ms: int = 0
    ) -> list[tuple[SiteResult, npb.DescribePolicyResponse | None]]:
        """Every node's DescribePolicy answer to ``request`` (a study preview), concurrently, each under its own
        deadline; None with the site's failure in its ``SiteResult`` where it did not answer. Same order."""
        timeout = self._timeout_s(timeout_ms)
        return self._call(self._policies(nodes, request, timeout), timeout)

    def infos(self, nodes: Sequence[NodeInfo], *, timeout_ms: int = 0) -> list[npb.GetNodeInfoResponse | None]:
        """Each node's GetNodeInfo (cached), ``None`` for a node that could not be asked; same order."""
        now = time.monotonic()
        cached = [self._cached_info(node, now) for node in nodes]
        if all(c is not None for c in cached):  # the common case: read here, with no hand-off to the loop
            return [c[0] for c in cached if c is not None]
        timeout = min(self._timeout_s(timeout_ms), INFO_TIMEOUT_S)
        return self._call(self._all_infos(nodes, timeout), timeout)

    def probe(self, node: NodeInfo, *, timeout_ms: int = 0) -> npb.GetNodeInfoResponse | None:
        """``node``'s GetNodeInfo over a channel of its own, checked against ``node``'s pin and closed after
        (``None`` when it cannot be asked): what a registration or an update would reach, without touching the
        channel and cache that queries use (those follow the registry once the change is recorded)."""
        timeout = min(self._timeout_s(timeout_ms), INFO_TIMEOUT_S)
        return self._call(self._probe(node, timeout), timeout)

    def trusts_ca(self, ca_sha256: str) -> bool:
        """Whether ``ca_sha256`` is the SHA-256 of one of the CA certificates the coordinator trusts."""
        return ca_sha256 in self._cas

    def forget(self, name: str) -> None:
        """Close the channel to ``name`` and drop what is cached of it (a node removed from the registry)."""
        if self._closed:
            return

        async def drop() -> None:
            self._infos.pop(name, None)
            link = self._links.pop(name, None)
            if link is not None:
                await link.channel.close()

        self._call(drop(), 5.0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def shut() -> None:
            for link in self._links.values():
                await link.channel.close()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # Internals ------------------------------------------------------------------------------------------

    def _timeout_s(self, timeout_ms: int) -> float:
        ms = timeout_ms or self.settings.site_timeout_ms
        return min(ms, self.settings.max_site_timeout_ms) / 1000

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        if self._closed:
            raise RuntimeError("the fan-out is closed")
        # Every site's task is bounded by its own deadline; the margin covers scheduling only.
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout_s + 30)

    async def _run(
        self, nodes: Sequence[NodeInfo], opened: OpenedEnvelope, grant: pb.StudyGrant, timeout: float
    ) -> list[SiteResult]:
        # Serialised once for all sites: exactly the bytes the generated stub would send each of them.
        request = npb.QueryRequest(
            signed_query=pb.SignedQuery(payload=opened.payload, researcher_signature=opened.signature), grant=grant
        ).SerializeToString()
        expected = (opened.study_id, opened.query_id, hashlib.sha256(opened.payload).digest())
        return list(await asyncio.gather(*(self._ask(node, request, expected, timeout) for node in nodes)))

    async def _all_infos(self, nodes: Sequence[NodeInfo], timeout: float) -> list[npb.GetNodeInfoResponse | None]:
        return list(await asyncio.gather(*(self._info(node, timeout) for node in nodes)))

    async def _info(self, node: NodeInfo, timeout: float) -> npb.GetNodeInfoResponse | None:
        now = time.monotonic()
        cached = self._cached_info(node, now)
        if cached is not None:
            return cached[0]
        info: npb.GetNodeInfoResponse | None = None
        try:
            link = await asyncio.wait_for(self._link(node), timeout=timeout)
            info = await link.stub.GetNodeInfo(npb.GetNodeInfoRequest(), timeout=timeout)
            if link.receipt_key is None:
                link.receipt_key = bytes(info.receipt_public_key)
        except (grpc.RpcError, GenogateError, TimeoutError):
            info = None
        self._infos[node.name] = (now + (INFO_TTL_S if info is not None else INFO_RETRY_S), _where(node), info)
        return info

    def _cached_info(self, node: NodeInfo, now: float) -> tuple[npb.GetNodeInfoResponse | None] | None:
        """``(info,)`` while ``node``'s cached GetNodeInfo (or its remembered silence) is fresh and for its current
        endpoint and pin, else None. Safe from any thread: entries are replaced whole, never changed."""
        cached = self._infos.get(node.name)
        if cached is not None and cached[0] > now and cached[1] == _where(node):
            return (cached[2],)
        return None

    async def _probe(self, node: NodeInfo, timeout: float) -> npb.GetNodeInfoResponse | None:
        channel = None
        try:
            await asyncio.wait_for(self._check_pin(node), timeout=timeout)
            channel = self._channel(node)
            stub = node_pb2_grpc.NodeServiceStub(channel)
            info: npb.GetNodeInfoResponse = await stub.GetNodeInfo(npb.GetNodeInfoRequest(), timeout=timeout)
            return info
        except (grpc.RpcError, GenogateError, TimeoutError):
            return None
        finally:
            if channel is not None:
                await channel.close()

    async def _budgets(
        self, nodes: Sequence[NodeInfo], request: npb.GetBudgetRequest, timeout: float
    ) -> list[tuple[SiteResult, pb.BudgetStatus | None]]:
        async def one(node: NodeInfo) -> tuple[SiteResult, pb.BudgetStatus | None]:
            result = SiteResult(node.name, pb.SITE_STATUS_UNSPECIFIED)
            response = await self._attempts(
                node, result, timeout, lambda link, left: link.stub.GetBudget(request, timeout=left)
            )
            if response is None:
                return result, None
            result.status = pb.SITE_STATUS_ANSWERED
            return result, response.budget

        return list(await asyncio.gather(*(one(node) for node in nodes)))

    async def _policies(
        self, nodes: Sequence[NodeInfo], request: npb.DescribePolicyRequest, timeout: float
    ) -> list[tuple[SiteResult, npb.DescribePolicyResponse | None]]:
        async def one(node: NodeInfo) -> tuple[SiteResult, npb.DescribePolicyResponse | None]:
            result = SiteResult(node.name, pb.SITE_STATUS_UNSPECIFIED)
            response = await self._attempts(
                node, result, timeout, lambda link, left: link.stub.DescribePolicy(request, timeout=left)
            )
            if response is not None:
                result.status = pb.SITE_STATUS_ANSWERED
            return result, response

        return list(await asyncio.gather(*(one(node) for node in nodes)))

    async def _ask(
        self, node: NodeInfo, request: bytes, expected: tuple[str, str, bytes], timeout: float
    ) -> SiteResult:
        """One site's answer to the serialised ``QueryRequest`` ``request``, its release verified as soon as it
        arrives; ``expected``: the study id, query id and payload SHA-256 its release must name."""
        result = SiteResult(node.name, pb.SITE_STATUS_UNSPECIFIED)
        response = await self._attempts(node, result, timeout, lambda link, left: link.query(request, timeout=left))
        if response is None:
            return result
        try:
            link = self._links.get(node.name)
            if link is None:  # removed or updated while this query ran
                raise Unavailable(f"site {node.name} was changed in the registry during the query")
            if link.receipt_key is None:
                link.receipt_key = await self._published_key(link, timeout)
            release = response.release
            try:
                verify(link.receipt_key, _RELEASE_BODY, release.payload, release.node_signature)
            except GenogateError:
                # The node may have replaced its identity key and restarted at the same endpoint (gRPC
                # reconnects inside the channel, checking only the CA and the name): open the link afresh,
                # which checks the pin again, ask for the key the node publishes now, and believe the release
                # only if it verifies under that key; only then is the new key kept.
                published = await self._published_key(await self._link(node, fresh=True), timeout)
                if published == link.receipt_key:
                    raise
                verify(published, _RELEASE_BODY, release.payload, release.node_signature)
                fresh = self._links.get(node.name)
                if fresh is not None:
                    fresh.receipt_key = published
                log.warning("node receipt key changed", extra={"site": node.name, "key": published.hex()})
            body = pb.ReleaseBody.FromString(release.payload)
            if (body.study_id, body.query_id, body.query_sha256) != expected or body.site != node.name:
                raise Unauthenticated(
                    "the release does not answer this query at this site", reason=Reason.BAD_SIGNATURE
                )
        except GenogateError as exc:
            return _failed(result, exc)
        except grpc.RpcError as exc:
            return _failed(result, error_from_rpc(exc, _peer(node)))
        except Exception:  # noqa: BLE001 - an undecodable release is that site's failure, not the query's
            return _failed(result, Unauthenticated("undecodable release", reason=Reason.BAD_SIGNATURE))
        result.status, result.release, result.body = pb.SITE_STATUS_ANSWERED, release, body
        return result

    async def _published_key(self, link: _Link, timeout: float) -> bytes:
        """The receipt key the node on ``link`` publishes now (its GetNodeInfo)."""
        info = await link.stub.GetNodeInfo(npb.GetNodeInfoRequest(), timeout=max(1.0, timeout))
        return bytes(info.receipt_public_key)

    async def _attempts(self, node: NodeInfo, result: SiteResult, timeout: float, call: Any) -> Any:
        """Call until an answer, a non-retryable error, or the deadline; fills ``result`` on failure."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        backoff = self.settings.retry_backoff_ms / 1000
        try:
            while True:
                result.attempts += 1
                try:
                    link = self._links.get(node.name)
                    if link is None or link.where != _where(node):  # else the open link, with no lock or task
                        link = await asyncio.wait_for(self._link(node), timeout=max(0.001, deadline - time.monotonic()))
                    return await call(link, max(0.001, deadline - time.monotonic()))
                except grpc.RpcError as exc:
                    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                    error = error_from_rpc(exc, _peer(node))
                except GenogateError as exc:  # the channel could not be opened (unreachable, pin mismatch)
                    code, error = exc.code, exc
                except TimeoutError:
                    code, error = grpc.StatusCode.DEADLINE_EXCEEDED, _Unreachable()
                if code in RETRYABLE and result.attempts < self.settings.max_attempts:
                    pause = min(backoff, deadline - time.monotonic())
                    if pause > 0:
                        backoff *= 2
                        await asyncio.sleep(pause)
                        continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= deadline:
                    result.status = pb.SITE_STATUS_TIMED_OUT
                    result.reason, result.message = Reason.DEADLINE_EXCEEDED, "the site did not answer in time"
                elif code in _REFUSALS:
                    result.status, result.reason, result.message = pb.SITE_STATUS_REFUSED, error.reason, error.message
                else:
                    _failed(result, error)
                return None
        finally:
            result.latency_ms = int((time.monotonic() - t0) * 1000)

    async def _link(self, node: NodeInfo, *, fresh: bool = False) -> _Link:
        async with self._opening.setdefault(node.name, asyncio.Lock()):  # one channel per node, even when racing
            return await self._open(node, fresh=fresh)

    async def _open(self, node: NodeInfo, *, fresh: bool = False) -> _Link:
        """The node's link; opened anew (its pin checked) when there is none, when the registry changed its
        endpoint or pin, or when ``fresh`` asks for it."""
        link = self._links.get(node.name)
        if link is not None and not fresh and link.where == _where(node):
            return link
        if link is not None:  # updated to another endpoint or pin, removed and registered again, or fresh
            await link.channel.close()
            del self._links[node.name]
        await self._check_pin(node)
        link = self._links[node.name] = _Link(node, self._channel(node))
        return link

    def _channel(self, node: NodeInfo) -> grpc.aio.Channel:
        limit = self._max_message_mb * 2**20
        creds = grpc.ssl_channel_credentials(
            root_certificates=self._ca, private_key=self._key, certificate_chain=self._cert
        )
        return grpc.aio.secure_channel(
            node.endpoint,
            creds,
            options=[
                ("grpc.ssl_target_name_override", node.name),  # the certificate must name this site
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )

    async def _check_pin(self, node: NodeInfo) -> None:
        """The node's certificate must be valid for the node's name and match its pin: be the one registered
        (its SHA-256), or have been issued directly by the registered CA."""
        host, _, port = node.endpoint.rpartition(":")
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self._ca.decode())
        ctx.load_cert_chain(self._identity.cert, self._identity.key)
        ctx.set_alpn_protocols(["h2"])
        try:
            reader, writer = await asyncio.open_connection(
                host.strip("[]"), int(port), ssl=ctx, server_hostname=node.name
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            detail = f"{node.name} at {node.endpoint}: {exc}"
            raise _Unreachable(detail, message=unreachable_message(exc, _peer(node))) from None
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
            del reader
        if node.ca_sha256:
            if not self._issued_by(der, node.ca_sha256):
                raise Unauthenticated(
                    f"{node.name}: certificate not issued by the registered CA {node.ca_sha256}",
                    reason=Reason.BAD_SIGNATURE,
                    message=f"the certificate of {node.name} was not issued by the CA registered for it",
                )
        elif hashlib.sha256(der).hexdigest() != node.cert_sha256:
            raise Unauthenticated(
                f"{node.name}: certificate does not match the registered pin",
                reason=Reason.BAD_SIGNATURE,
                message="the site's certificate is not the one registered",
            )

    def _issued_by(self, der: bytes, ca_sha256: str) -> bool:
        ca = self._cas.get(ca_sha256)
        if ca is None:
            return False
        try:
            x509.load_der_x509_certificate(der).verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _peer(node: NodeInfo) -> Peer:
    """``node`` for the per-site message of a failed connection (what to check; no file paths)."""
    return Peer(node.endpoint, f"node {node.name}", node.name, client="the coordinator")


class _Unreachable(GenogateError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.UNAVAILABLE
    message = "the site is unreachable"


def _where(node: NodeInfo) -> tuple[str, str, str]:
    """What a channel to ``node`` depends on: its endpoint and its pin."""
    return (node.endpoint, node.cert_sha256, node.ca_sha256)


def _failed(result: SiteResult, error: GenogateError) -> SiteResult:
    result.status, result.reason, result.message = pb.SITE_STATUS_FAILED, error.reason, error.message
    result.release = result.body = None
    return result
