"""gRPC servicer of ``genogate.v1.NodeService``: wire in, ``QueryService`` out. Nothing here decides.

``RPC_POLICY`` lists every RPC the node serves and who may call it; the server refuses any RPC it does
not list (a contract test checks that it covers the whole service). Every caller has already passed
mTLS with a certificate from a CA the node trusts.
"""

from __future__ import annotations

from typing import Any

from genogate.query import Kind
from genogate.rpc import boundary, caller_common_name
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import node_pb2 as npb
from genogate.wire.v1 import node_pb2_grpc
from node.policy import Caller
from node.preview import PolicyView
from node.service import QueryService

RPC_POLICY = {
    "/genogate.v1.NodeService/Query": "a signed grant + the researcher's signature, or a local study's researcher",
    "/genogate.v1.NodeService/GetBudget": "the coordinator ([grants] coordinator_common_name), or a researcher of "
    "a local study",
    "/genogate.v1.NodeService/GetNodeInfo": "any client with a trusted certificate",
    "/genogate.v1.NodeService/DescribePolicy": "the coordinator ([grants] coordinator_common_name); read-only",
    "/grpc.health.v1.Health/Check": "any client with a trusted certificate (readiness probes)",
    "/grpc.health.v1.Health/Watch": "any client with a trusted certificate",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "operators' tools",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "operators' tools",
}


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(self, service: QueryService, info: npb.GetNodeInfoResponse):
        self.service = service
        # The node's limits as its service enforces them (the caps above the study among them).
        p = service.policy
        self.info = npb.GetNodeInfoResponse()
        self.info.CopyFrom(info)
        self.info.epsilon_total_cap = float(p.epsilon_per_study_cap)
        self.info.epsilon_per_query_cap = float(p.epsilon_per_query_cap)
        self.info.epsilon_per_query_min = float(p.epsilon_per_query_min)
        self.info.epsilon_per_researcher_cap = float(p.epsilon_per_researcher_cap)
        self.info.epsilon_per_node_cap = float(p.epsilon_per_node_cap)
        self.info.budget_period_days = p.budget_period_days

    @boundary
    def Query(self, request: npb.QueryRequest, context: Any) -> npb.QueryResponse:  # noqa: N802 - gRPC name
        caller = Caller(caller_common_name(context))
        grant = request.grant if request.HasField("grant") else None
        release = self.service.query(
            caller, request.signed_query.payload, grant=grant, signature=request.signed_query.researcher_signature
        )
        return npb.QueryResponse(release=release)

    @boundary
    def GetBudget(self, request: npb.GetBudgetRequest, context: Any) -> npb.GetBudgetResponse:  # noqa: N802
        caller = Caller(caller_common_name(context))
        grant = request.grant if request.HasField("grant") else None
        return npb.GetBudgetResponse(budget=self.service.budget(caller, request.study_id, grant))

    @boundary
    def GetNodeInfo(self, request: npb.GetNodeInfoRequest, context: Any) -> npb.GetNodeInfoResponse:  # noqa: N802
        caller_common_name(context)
        return self.info

    @boundary
    def DescribePolicy(  # noqa: N802
        self, request: npb.DescribePolicyRequest, context: Any
    ) -> npb.DescribePolicyResponse:
        caller = Caller(caller_common_name(context))
        return _policy_view_to_pb(self.service.describe(caller, request.purpose, list(request.kinds)))


def _policy_view_to_pb(v: PolicyView) -> npb.DescribePolicyResponse:
    p = v.policy
    return npb.DescribePolicyResponse(
        name=v.name,
        genome_build=v.genome_build,
        version=v.version,
        purpose_accepted=v.purpose_accepted,
        purpose_reason=v.purpose_reason,
        kinds=[
            pb.KindPolicy(
                kind=k.kind.value if isinstance(k.kind, Kind) else k.kind,  # type: ignore[arg-type]
                allowed=k.allowed,
                refusal=int(k.refusal),  # type: ignore[arg-type]
                note=k.note,
            )
            for k in v.kinds
        ],
        epsilon_per_query_cap=float(p.epsilon_per_query_cap),
        epsilon_per_query_min=float(p.epsilon_per_query_min),
        epsilon_total_cap=float(p.epsilon_per_study_cap),
        epsilon_per_researcher_cap=float(p.epsilon_per_researcher_cap),
        epsilon_per_node_cap=float(p.epsilon_per_node_cap),
        budget_period_days=p.budget_period_days,
        participants_at_least=v.participants[0],
        participants_below=v.participants[1],
    )
