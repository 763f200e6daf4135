"""A synchronous client of one node (mTLS), for operators' tools, tests and the coordinator.

``send`` sends a query envelope and returns the signed release as received (the receipt: its exact signed
bytes) and its verified body as a domain ``genogate.results.ReleaseBody``: the release's Ed25519 signature is
checked against the node's receipt key (from ``GetNodeInfo``, or pinned by the caller) before the body is
decoded. ``budget`` returns a ``genogate.results.BudgetStatus``. Failures raise the same ``GenogateError``
class and reason the node raised.

A released ``NoisyValue`` that the node reported only as "fewer than k" carries ``below_threshold`` and
zeros in its number fields; read a release through ``released`` (typed values whose ``estimate`` is None
when suppressed) or print ``release_text`` (``< k``), never the raw zeros.

``envelope`` and ``signed`` are ``genogate.envelope.build`` and ``genogate.envelope.sign``, kept here for the
tools and tests that import them from this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from genogate import results
from genogate.convert import budget_from_pb, grant_to_pb
from genogate.envelope import build as envelope  # noqa: F401 - re-exported for tools and tests
from genogate.envelope import sign as signed  # noqa: F401 - re-exported for tools and tests
from genogate.kinds import for_result, release_body_from_pb
from genogate.rpc import ClientTLS as ClientTLS  # where it lived first; tools and tests import it here
from genogate.rpc import error_from_rpc
from genogate.signing import verify
from genogate.studies import StudyGrant
from genogate.table import table
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import node_pb2 as npb
from genogate.wire.v1 import node_pb2_grpc


@dataclass(frozen=True)
class Released:
    """One value a node released: ``estimate`` and its 95% interval, or, when ``suppressed`` (the node's
    noisy count fell below its minimum reportable count), None and only "fewer than ``threshold``"."""

    estimate: int | None
    ci95_low: float | None
    ci95_high: float | None
    noise_stddev: float
    suppressed: bool
    threshold: int | None

    @classmethod
    def of(cls, v: results.NoisyValue) -> Released:
        if v.below_threshold:
            return cls(None, None, None, v.noise_stddev, True, int(v.threshold))
        return cls(int(v.estimate), v.ci95_low, v.ci95_high, v.noise_stddev, False, None)

    def __str__(self) -> str:
        if self.suppressed:
            return f"< {self.threshold}"
        return f"{self.estimate} [{self.ci95_low:g}, {self.ci95_high:g}]"


def released(body: results.ReleaseBody) -> list[tuple[str, str, Released]]:
    """(variant, quantity, value) of every number a node released, suppressed ones as such."""
    return [(variant, quantity, Released.of(v)) for variant, quantity, v in site_values(body.result)]


def release_text(body: results.ReleaseBody) -> str:
    """A node's release as a table: ``< k`` for a suppressed value, never its zero fields."""
    rows = [
        (
            variant or "-",
            quantity,
            f"< {v.threshold}" if v.suppressed else v.estimate,
            "-" if v.suppressed else f"[{v.ci95_low:g}, {v.ci95_high:g}]",
            "suppressed (fewer than k)" if v.suppressed else "-",
        )
        for variant, quantity, v in released(body)
    ]
    head = f"site {body.site}  query {body.query_id}  epsilon charged {body.epsilon_charged:g}"
    return head + "\n" + table(("variant", "quantity", "estimate", "95% interval", "note"), rows)


def site_values(result: results.QueryResult | None) -> list[tuple[str, str, results.NoisyValue]]:
    """(variant, quantity, value) of every number in one site's release, as ``QueryResult.values`` names them."""
    return for_result(result).site_rows(result) if result is not None else []


class NodeClient:
    def __init__(self, address: str, tls: ClientTLS, *, timeout_s: float = 30.0, max_message_mb: int = 64):
        limit = max_message_mb * 2**20
        self.channel = grpc.secure_channel(
            address,
            tls.credentials(),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        self.stub = node_pb2_grpc.NodeServiceStub(self.channel)
        self.peer = tls.peer(address, "node")
        self.timeout_s = timeout_s
        self._receipt_key: bytes | None = None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> npb.GetNodeInfoResponse:
        try:
            info: npb.GetNodeInfoResponse = self.stub.GetNodeInfo(npb.GetNodeInfoRequest(), timeout=self.timeout_s)
            return info
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer) from None

    def send(
        self, env: pb.QueryEnvelope | bytes, signature: bytes = b"", grant: StudyGrant | None = None
    ) -> tuple[pb.Release, results.ReleaseBody]:
        """Send an envelope (or its exact serialized bytes, for retries), with the researcher's signature and
        the study grant when there is one, and verify the node's signed release: the release as signed, and
        its body."""
        payload = env if isinstance(env, bytes) else env.SerializeToString(deterministic=True)
        request = npb.QueryRequest(
            signed_query=pb.SignedQuery(payload=payload, researcher_signature=signature),
            grant=None if grant is None else grant_to_pb(grant),
        )
        try:
            release = self.stub.Query(request, timeout=self.timeout_s).release
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer) from None
        if self._receipt_key is None:
            self._receipt_key = self.info().receipt_public_key
        verify(self._receipt_key, "genogate.v1.ReleaseBody", release.payload, release.node_signature)
        return release, release_body_from_pb(pb.ReleaseBody.FromString(release.payload))

    def budget(self, study_id: str, grant: StudyGrant | None = None) -> results.BudgetStatus:
        request = npb.GetBudgetRequest(study_id=study_id, grant=None if grant is None else grant_to_pb(grant))
        try:
            response: npb.GetBudgetResponse = self.stub.GetBudget(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer) from None
        return budget_from_pb(response.budget)
