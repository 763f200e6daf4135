"""gRPC servicer of ``genogate.v1.CoordinatorService``: wire in, ``CoordinatorState`` out.

The state speaks the domain types of ``genogate.studies``; this servicer converts requests and responses
(``genogate.convert``), so the coordinator's wire types stop here.

``RPC_POLICY`` lists every RPC the coordinator serves and who may call it; the server refuses any RPC it
does not list (a contract test checks that it covers the whole service). Every caller has already passed
mTLS with a certificate from a CA the coordinator trusts.

Two kinds of authority meet here. Registering, updating and removing nodes and registering researchers is an
operator's act, checked against the caller's certificate common name (``[roles] operators``); every change to
the node registry is appended to the coordinator's audit log (who, which node, each changed field old -> new).
Proposals and reviews carry their own authority: an Ed25519 signature by a registered researcher or committee
key, which ``CoordinatorState`` verifies; whoever relays them (any trusted client) adds nothing and can forge
nothing.

Threading model: gRPC's pool calls these methods concurrently; ``CoordinatorState`` serialises its own calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import DecodeError

from coordinator.config import RolesSettings
from coordinator.preview import SiteCaps, caps_of, caps_of_policy, check_shape, preview
from coordinator.queries import FederatedQueries
from coordinator.state import CoordinatorState
from genogate.convert import (
    grant_to_pb,
    node_from_pb,
    node_to_pb,
    node_update_from_pb,
    preview_to_pb,
    proposal_from_pb,
    researcher_to_pb,
    review_from_pb,
    revocations_to_pb,
    signed_proposal_from_pb,
    site_policy_from_pb,
    study_state_from_pb,
    study_to_pb,
)
from genogate.errors import (
    FailedPrecondition,
    GenogateError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unavailable,
)
from genogate.query import Kind
from genogate.rpc import boundary, caller_common_name
from genogate.studies import NodeInfo, SitePolicy, StudyGrant, StudyProposal, StudyState
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import coordinator_pb2_grpc
from genogate.wire.v1 import node_pb2 as npb

_SERVICE = "/genogate.v1.CoordinatorService/"
_ANY = "any client with a trusted certificate"

RPC_POLICY = {
    _SERVICE + "ProposeStudy": _ANY + " relaying a proposal signed by the registered researcher it names",
    _SERVICE + "PreviewStudy": _ANY + " (a dry run; records nothing)",
    _SERVICE + "GetStudy": _ANY,
    _SERVICE + "ListStudies": _ANY,
    _SERVICE + "ReviewStudy": _ANY + " relaying a review signed by a committee member",
    _SERVICE + "RevokeStudy": _ANY + " relaying a revocation signed by a committee member",
    _SERVICE + "RegisterNode": "an operator ([roles] operators)",
    _SERVICE + "ListNodes": _ANY,
    _SERVICE + "UpdateNode": "an operator ([roles] operators)",
    _SERVICE + "RemoveNode": "an operator ([roles] operators)",
    _SERVICE + "RegisterResearcher": "an operator ([roles] operators)",
    _SERVICE + "GetRevocations": "a node ([roles] nodes), or any client with a trusted certificate when that is empty",
    _SERVICE + "RunQuery": _ANY + " relaying a query signed by the researcher key its study's grant names",
    _SERVICE + "GetStudyBudget": _ANY + " (budgets hold no data; nodes check the grant again)",
    "/grpc.health.v1.Health/Check": _ANY + " (readiness probes)",
    "/grpc.health.v1.Health/Watch": _ANY,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "operators' tools",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "operators' tools",
}


_OUTCOME = {pb.SITE_STATUS_TIMED_OUT: "timed_out", pb.SITE_STATUS_REFUSED: "refused", pb.SITE_STATUS_FAILED: "failed"}


def _not_allowed(caller: str, what: str) -> PermissionDenied:
    return PermissionDenied(
        f"{caller!r} is not {what}",
        reason=Reason.NOT_AUTHORIZED,
        message=f"the caller may not call this method: {caller[:64]} is not {what}",
    )


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServiceServicer):
    def __init__(self, state: CoordinatorState, roles: RolesSettings, queries: FederatedQueries):
        self.state = state
        self.roles = roles
        self.queries = queries

    def _operator(self, context: Any) -> str:
        caller = caller_common_name(context)
        if caller not in self.roles.operators:
            raise _not_allowed(caller, "an operator")
        return caller

    @boundary
    def ProposeStudy(  # noqa: N802 - gRPC name
        self, request: cpb.ProposeStudyRequest, context: Any
    ) -> cpb.ProposeStudyResponse:
        caller_common_name(context)
        return cpb.ProposeStudyResponse(
            study=study_to_pb(self.state.propose(signed_proposal_from_pb(request.proposal)))
        )

    def _caps(self, sites: Sequence[str]) -> dict[str, SiteCaps]:
        """What each registered site among ``sites`` publishes about its budgets (GetNodeInfo, cached by the
        fan-out); unregistered names are never asked."""
        registered = {n.name: n for n in self.state.list_nodes()}
        nodes = [registered[s] for s in dict.fromkeys(sites) if s in registered]
        if not nodes:
            return {}
        return {n.name: caps_of(info) for n, info in zip(nodes, self.queries.fanout.infos(nodes), strict=True)}

    def _spent(self, fingerprint: str, sites: Sequence[str]) -> dict[str, float]:
        """Per site, what its own ledger says the researcher spent there over its period, asked through one of
        their approved studies that names the site (GetBudget's ``researcher_epsilon_spent``); -1 where no
        such study exists or the site did not answer."""
        if not fingerprint:
            return {}
        registered = {n.name: n for n in self.state.list_nodes()}
        wanted = {s for s in sites if s in registered}
        through: dict[str, tuple[StudyGrant, list[NodeInfo]]] = {}  # study id -> its grant, sites asked through it
        for study in self.state.list(StudyState.APPROVED, fingerprint):
            if study.grant is None:  # an APPROVED study has its grant
                continue
            for site in pb.GrantBody.FromString(study.grant.payload).sites:
                if site in wanted:
                    wanted.discard(site)
                    through.setdefault(study.study_id, (study.grant, []))[1].append(registered[site])
        out: dict[str, float] = {}
        for study_id, (grant, nodes) in through.items():  # one concurrent fan-out per study
            request = npb.GetBudgetRequest(study_id=study_id, grant=grant_to_pb(grant))
            for result, budget in self.queries.fanout.budgets(nodes, request, timeout_ms=2_000):
                if budget is not None and result.status == pb.SITE_STATUS_ANSWERED:
                    out[result.site] = budget.researcher_epsilon_spent
        return out

    @boundary
    def PreviewStudy(  # noqa: N802
        self, request: cpb.PreviewStudyRequest, context: Any
    ) -> cpb.PreviewStudyResponse:
        caller_common_name(context)
        p = proposal_from_pb(request.proposal)
        check_shape(p)  # extreme ε, durations, site lists: a typed refusal, never a crash
        try:
            key = self.state.researcher_key(p.researcher_key_fingerprint)
        except NotFound:
            key = b""  # previewing before registering is allowed; the grant body then names no key
        nodes = {n.name: n for n in self.state.list_nodes()}
        policies = self._policies(p, nodes)
        caps = {site: caps_of_policy(said) for site, said in policies.items() if isinstance(said, SitePolicy)}
        fp = p.researcher_key_fingerprint if key else ""
        return preview_to_pb(
            preview(
                p,
                nodes,
                researcher_public_key=key,
                revocation_epoch=self.state.epoch(),
                caps=caps,
                committed=self.state.committed(fp, caps) if fp else {},
                spent=self._spent(fp, list(p.sites)),
                epsilon_per_query_min=self.queries.limits.epsilon_per_query_min,
                policies=policies,
            )
        )

    def _policies(self, p: StudyProposal, registered: Mapping[str, NodeInfo]) -> dict[str, SitePolicy | str]:
        """What each registered site among the proposal's says of it (``NodeService.DescribePolicy``, asked of
        all at once over the fan-out's channels and deadlines), or why it could not be asked; unregistered
        names are never asked."""
        nodes = [registered[s] for s in dict.fromkeys(p.sites) if s in registered]
        if not nodes:
            return {}
        request = npb.DescribePolicyRequest(
            purpose=p.purpose[:1000],
            kinds=[k.value if isinstance(k, Kind) else int(k) for k in p.kinds][:64],  # type: ignore[arg-type]
        )
        out: dict[str, SitePolicy | str] = {}
        for result, answer in self.queries.fanout.policies(nodes, request):
            if answer is not None:
                out[result.site] = site_policy_from_pb(answer)
            else:
                word = _OUTCOME.get(result.status, "failed")
                out[result.site] = f"{word} {Reason(result.reason).name}: {result.message or 'no answer'}"
        return out

    @boundary
    def GetStudy(self, request: cpb.GetStudyRequest, context: Any) -> cpb.GetStudyResponse:  # noqa: N802
        caller_common_name(context)
        return cpb.GetStudyResponse(study=study_to_pb(self.state.get(request.study_id)))

    @boundary
    def ListStudies(self, request: cpb.ListStudiesRequest, context: Any) -> cpb.ListStudiesResponse:  # noqa: N802
        caller_common_name(context)
        studies = self.state.list(study_state_from_pb(int(request.state)), request.researcher_key_fingerprint or None)
        return cpb.ListStudiesResponse(studies=[study_to_pb(s) for s in studies])

    @boundary
    def ReviewStudy(self, request: cpb.ReviewStudyRequest, context: Any) -> cpb.ReviewStudyResponse:  # noqa: N802
        caller_common_name(context)
        review = review_from_pb(request.review)
        return cpb.ReviewStudyResponse(study=study_to_pb(self.state.review(review, self._review_caps(request.review))))

    def _review_caps(self, review: cpb.Review) -> dict[str, SiteCaps]:
        """The budget caps of the reviewed study's sites, for an approval (the state checks the review itself)."""
        try:
            body = cpb.ReviewBody.FromString(review.payload)
            if body.decision != cpb.REVIEW_DECISION_APPROVE:
                return {}
            return self._caps(list(self.state.get(body.study_id).proposal.sites))
        except (DecodeError, GenogateError):
            return {}  # the state refuses the review itself, with the right reason

    @boundary
    def RevokeStudy(self, request: cpb.RevokeStudyRequest, context: Any) -> cpb.RevokeStudyResponse:  # noqa: N802
        caller_common_name(context)
        study, epoch = self.state.revoke(review_from_pb(request.review))
        return cpb.RevokeStudyResponse(study=study_to_pb(study), revocation_epoch=epoch)

    @boundary
    def RegisterNode(  # noqa: N802
        self, request: cpb.RegisterNodeRequest, context: Any
    ) -> cpb.RegisterNodeResponse:
        caller = self._operator(context)
        wanted = node_from_pb(request.node)
        self._check_ca(wanted)
        node = self.state.register_node(self._with_build(wanted))
        self._audit("register_node", caller, node.name, {k: [None, v] for k, v in _fields(node).items()})
        return cpb.RegisterNodeResponse(node=node_to_pb(node))

    @boundary
    def UpdateNode(self, request: cpb.UpdateNodeRequest, context: Any) -> cpb.UpdateNodeResponse:  # noqa: N802
        caller = self._operator(context)
        update = node_update_from_pb(request)
        if update.cert_sha256 and update.ca_sha256:
            raise InvalidArgument(
                "both pins", reason=Reason.INVALID_STUDY, message="give one pin: a certificate or a CA, not both"
            )
        current = {n.name: n for n in self.state.list_nodes()}.get(update.name)
        if current is None:
            raise NotFound(f"no node {update.name!r}", message=f"no node named {update.name[:64]!r} is registered")
        candidate = update.apply(current)
        self._check_ca(candidate)
        # The build the node serves, asked at its new endpoint under its new pin; an unreachable node keeps the
        # registered (or declared) build unless the operator asked to read it from the node.
        build = self._served_build(candidate, update.genome_build)
        if build is None and update.from_node:
            raise _unreachable(candidate, "start it, and check the endpoint and the certificate or CA given")
        before, after = self.state.update_node(
            dataclasses.replace(update, genome_build=build or candidate.genome_build)
        )
        old, new = _fields(before), _fields(after)
        changed = {k: [old[k], new[k]] for k in new if old[k] != new[k]}
        if changed:
            self._audit("update_node", caller, after.name, changed, version=after.version)
        return cpb.UpdateNodeResponse(before=node_to_pb(before), node=node_to_pb(after))

    @boundary
    def RemoveNode(self, request: cpb.RemoveNodeRequest, context: Any) -> cpb.RemoveNodeResponse:  # noqa: N802
        caller = self._operator(context)
        node, studies = self.state.remove_node(request.name, request.force)
        self.queries.fanout.forget(node.name)
        self._audit(
            "remove_node",
            caller,
            node.name,
            {k: [v, None] for k, v in _fields(node).items()},
            forced=request.force,
            studies=studies,
        )
        return cpb.RemoveNodeResponse(node=node_to_pb(node), study_ids=studies)

    def _audit(self, event: str, caller: str, node: str, changed: dict[str, list[Any]], **more: Any) -> None:
        self.queries.audit.append({"event": event, "caller": caller, "node": node, "changed": changed, **more})

    def _check_ca(self, node: NodeInfo) -> None:
        """A CA pin must name one of the CAs the coordinator trusts (else no certificate could ever match)."""
        if node.ca_sha256 and not self.queries.fanout.trusts_ca(node.ca_sha256):
            raise FailedPrecondition(
                f"{node.name}: CA {node.ca_sha256} not among [tls] ca_certs",
                message=f"the coordinator does not trust the CA pinned for {node.name} (SHA-256 "
                f"{node.ca_sha256[:64]}): add its certificate to the coordinator's [tls] ca_certs first",
            )

    def _served_build(self, node: NodeInfo, declared: str) -> str | None:
        """The genome build the node itself serves (its store records it from the data), asked at ``node``'s
        endpoint over a channel of its own checked against ``node``'s pin (``FanOut.probe``: the channel queries
        use is left alone until the change is recorded); ``None`` when it cannot be asked. A ``declared`` build
        must agree."""
        info = self.queries.fanout.probe(node)
        if info is None:
            return None
        if declared and declared != info.genome_build:
            raise FailedPrecondition(
                f"{node.name}: declared {declared}, serves {info.genome_build}",
                reason=Reason.WRONG_ASSEMBLY,
                message=f"the node serves {info.genome_build}, not the declared {declared[:20]}",
            )
        return info.genome_build

    def _with_build(self, node: NodeInfo) -> NodeInfo:
        """``node`` with the build it serves; a node that cannot be asked is registered only with a declared
        build, which the node still enforces on every query."""
        build = self._served_build(node, node.genome_build)
        if build is not None:
            return dataclasses.replace(node, genome_build=build)
        if not node.genome_build:
            raise _unreachable(node, "start it (with the certificate given), or declare the build")
        return node

    @boundary
    def ListNodes(self, request: cpb.ListNodesRequest, context: Any) -> cpb.ListNodesResponse:  # noqa: N802
        caller_common_name(context)
        return cpb.ListNodesResponse(nodes=[node_to_pb(n) for n in self.state.list_nodes()])

    @boundary
    def RegisterResearcher(  # noqa: N802
        self, request: cpb.RegisterResearcherRequest, context: Any
    ) -> cpb.RegisterResearcherResponse:
        self._operator(context)
        researcher = self.state.register_researcher(request.name, request.affiliation, request.public_key)
        return cpb.RegisterResearcherResponse(researcher=researcher_to_pb(researcher))

    @boundary
    def GetRevocations(  # noqa: N802
        self, request: cpb.GetRevocationsRequest, context: Any
    ) -> cpb.GetRevocationsResponse:
        caller = caller_common_name(context)
        if self.roles.nodes and caller not in self.roles.nodes:
            raise _not_allowed(caller, "a node")
        return cpb.GetRevocationsResponse(revocations=revocations_to_pb(self.state.revocations()))

    @boundary
    def RunQuery(self, request: cpb.RunQueryRequest, context: Any) -> cpb.RunQueryResponse:  # noqa: N802
        return self.queries.run(caller_common_name(context), request)

    @boundary
    def GetStudyBudget(  # noqa: N802
        self, request: cpb.GetStudyBudgetRequest, context: Any
    ) -> cpb.GetStudyBudgetResponse:
        caller_common_name(context)
        return cpb.GetStudyBudgetResponse(sites=self.queries.budgets(request))


def _unreachable(node: NodeInfo, what_to_do: str) -> Unavailable:
    return Unavailable(
        f"{node.name} at {node.endpoint}",
        message=f"cannot reach the node {node.name} at {node.endpoint[:100]} to read its genome build: {what_to_do}",
    )


def _fields(node: NodeInfo) -> dict[str, str]:
    """What an audit entry records of a registration."""
    return {
        "endpoint": node.endpoint,
        "cert_sha256": node.cert_sha256,
        "ca_sha256": node.ca_sha256,
        "genome_build": node.genome_build,
    }
