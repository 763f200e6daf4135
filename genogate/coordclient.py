"""A synchronous client of the coordinator (mTLS), for the ``genogate`` command line, tools and tests.

One typed method per RPC. Studies, the registry and previews cross in the domain types of
``genogate.studies``: a request built from domain arguments is converted right before its RPC and a response
right after it (``genogate.convert``), so a caller never handles a wire message. ``run_query`` and
``study_budget`` return the wire response for ``genogate.client``, which converts it. Failures raise the same
``GenogateError`` class and reason the coordinator raised.

Two helpers sign before sending: ``propose`` signs the serialized ``StudyProposal`` with the researcher's
key, and ``review`` signs a ``ReviewBody`` (approve, reject or revoke) with a committee member's key. The
bytes signed are exactly the bytes sent; nothing is re-encoded after signing.

The domain types and their conversion (``genogate.studies``, ``genogate.convert``) are imported by the
methods that use them: ``genogate query`` and ``genogate budget`` use only ``run_query`` and
``study_budget``, which exchange wire messages, and do not pay for the study and registry types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from genogate.errors import Unauthenticated, UsageError
from genogate.rpc import ClientTLS, error_from_rpc
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import coordinator_pb2_grpc

if TYPE_CHECKING:
    from genogate.signing import Signer
    from genogate.studies import (
        NodeInfo,
        NodeUpdate,
        Researcher,
        Review,
        ReviewDecision,
        SignedProposal,
        SignedRevocationList,
        Study,
        StudyPreview,
        StudyProposal,
        StudyState,
    )

PROPOSAL_BODY = "genogate.v1.StudyProposal"
REVIEW_BODY = "genogate.v1.ReviewBody"

R = TypeVar("R")


def sign_proposal(proposal: StudyProposal, signer: Signer) -> SignedProposal:
    """The proposal signed by ``signer``; its ``researcher_key_fingerprint`` is filled in when empty and
    must otherwise name ``signer``'s key (``UsageError``)."""
    from genogate.convert import proposal_to_pb
    from genogate.studies import SignedProposal

    if not proposal.researcher_key_fingerprint:
        proposal = dataclasses.replace(proposal, researcher_key_fingerprint=signer.key_id)
    elif proposal.researcher_key_fingerprint != signer.key_id:
        raise UsageError(
            f"the proposal names researcher key {proposal.researcher_key_fingerprint} but the signing key is "
            f"{signer.key_id}"
        )
    payload = proposal_to_pb(proposal).SerializeToString(deterministic=True)
    return SignedProposal(payload=payload, researcher_signature=signer.sign(PROPOSAL_BODY, payload))


def sign_review(
    study: Study,
    decision: ReviewDecision,
    comment: str,
    signer: Signer,
    *,
    now_ms: int | None = None,
) -> Review:
    """A signed review of ``study`` covering exactly its proposal's SHA-256.

    When the study carries the signed proposal, its hash is recomputed here and must match the coordinator's
    ``proposal_sha256`` (``Unauthenticated`` otherwise): a reviewer never signs a hash of bytes they were
    not shown."""
    from genogate.studies import Review

    if not decision:
        raise UsageError("a review needs a decision")
    digest = study.proposal_sha256
    payload = study.signed_proposal.payload
    if payload:
        actual = hashlib.sha256(payload).digest()
        if digest and digest != actual:
            raise Unauthenticated(
                f"study {study.study_id}: proposal_sha256 does not match the signed proposal",
                message="the coordinator's proposal hash does not match the proposal it sent",
            )
        digest = actual
    if not digest:
        raise UsageError(f"study {study.study_id} carries no proposal hash to review")
    body = cpb.ReviewBody(
        study_id=study.study_id,
        proposal_sha256=digest,
        decision=int(decision),  # type: ignore[arg-type]
        comment=comment,
        reviewed_unix_ms=int(time.time() * 1000) if now_ms is None else now_ms,
    )
    body_bytes = body.SerializeToString(deterministic=True)
    return Review(
        payload=body_bytes,
        reviewer_signature=signer.sign(REVIEW_BODY, body_bytes),
        reviewer_key_id=signer.key_id,
    )


class CoordinatorClient:
    def __init__(self, address: str, tls: ClientTLS, *, timeout_s: float = 30.0, max_message_mb: int = 64):
        limit = max_message_mb * 2**20
        self.address = address
        self.channel = grpc.secure_channel(
            address,
            tls.credentials(),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        )
        self.stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)
        self.peer = tls.peer(address, "coordinator")
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., Any], request: Any, response_type: type[R]) -> R:
        try:
            response = method(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.peer) from None
        if not isinstance(response, response_type):  # pragma: no cover - the stub's contract
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response

    # Studies ----------------------------------------------------------------------------------------------

    def propose_study(self, signed: SignedProposal) -> Study:
        from genogate.convert import signed_proposal_to_pb, study_from_pb

        request = cpb.ProposeStudyRequest(proposal=signed_proposal_to_pb(signed))
        return study_from_pb(self._call(self.stub.ProposeStudy, request, cpb.ProposeStudyResponse).study)

    def preview_study(self, proposal: StudyProposal) -> StudyPreview:
        from genogate.convert import preview_from_pb, proposal_to_pb

        request = cpb.PreviewStudyRequest(proposal=proposal_to_pb(proposal))
        return preview_from_pb(self._call(self.stub.PreviewStudy, request, cpb.PreviewStudyResponse))

    def get_study(self, study_id: str) -> Study:
        from genogate.convert import study_from_pb

        request = cpb.GetStudyRequest(study_id=study_id)
        return study_from_pb(self._call(self.stub.GetStudy, request, cpb.GetStudyResponse).study)

    def list_studies(self, state: StudyState | None = None, researcher_key_fingerprint: str = "") -> list[Study]:
        """The studies in ``state`` (None: any), of the researcher with that key fingerprint ("": anyone's)."""
        from genogate.convert import study_from_pb

        request = cpb.ListStudiesRequest(
            state=int(state or 0),  # type: ignore[arg-type]
            researcher_key_fingerprint=researcher_key_fingerprint,
        )
        response = self._call(self.stub.ListStudies, request, cpb.ListStudiesResponse)
        return [study_from_pb(s) for s in response.studies]

    def review_study(self, review: Review) -> Study:
        from genogate.convert import review_to_pb, study_from_pb

        request = cpb.ReviewStudyRequest(review=review_to_pb(review))
        return study_from_pb(self._call(self.stub.ReviewStudy, request, cpb.ReviewStudyResponse).study)

    def revoke_study(self, review: Review) -> tuple[Study, int]:
        """The study, now revoked, and the revocation epoch that includes the revocation."""
        from genogate.convert import review_to_pb, study_from_pb

        request = cpb.RevokeStudyRequest(review=review_to_pb(review))
        response = self._call(self.stub.RevokeStudy, request, cpb.RevokeStudyResponse)
        return study_from_pb(response.study), response.revocation_epoch

    # Registry ---------------------------------------------------------------------------------------------

    def register_node(self, node: NodeInfo) -> NodeInfo:
        from genogate.convert import node_from_pb, node_to_pb

        request = cpb.RegisterNodeRequest(node=node_to_pb(node))
        return node_from_pb(self._call(self.stub.RegisterNode, request, cpb.RegisterNodeResponse).node)

    def list_nodes(self) -> list[NodeInfo]:
        from genogate.convert import node_from_pb

        response = self._call(self.stub.ListNodes, cpb.ListNodesRequest(), cpb.ListNodesResponse)
        return [node_from_pb(n) for n in response.nodes]

    def update_node(self, update: NodeUpdate) -> tuple[NodeInfo, NodeInfo]:
        """Change a registered node (operators): its registration before and after the update."""
        from genogate.convert import node_from_pb, node_update_to_pb

        response = self._call(self.stub.UpdateNode, node_update_to_pb(update), cpb.UpdateNodeResponse)
        return node_from_pb(response.before), node_from_pb(response.node)

    def remove_node(self, name: str, *, force: bool = False) -> tuple[NodeInfo, list[str]]:
        """Remove a registered node (operators): its last registration and the active studies that name it
        (removal is refused while there are any, unless ``force``)."""
        from genogate.convert import node_from_pb

        request = cpb.RemoveNodeRequest(name=name, force=force)
        response = self._call(self.stub.RemoveNode, request, cpb.RemoveNodeResponse)
        return node_from_pb(response.node), list(response.study_ids)

    def register_researcher(self, name: str, affiliation: str, public_key: bytes) -> Researcher:
        from genogate.convert import researcher_from_pb

        request = cpb.RegisterResearcherRequest(name=name, affiliation=affiliation, public_key=public_key)
        response = self._call(self.stub.RegisterResearcher, request, cpb.RegisterResearcherResponse)
        return researcher_from_pb(response.researcher)

    def get_revocations(self) -> SignedRevocationList:
        from genogate.convert import revocations_from_pb

        request = cpb.GetRevocationsRequest()
        return revocations_from_pb(
            self._call(self.stub.GetRevocations, request, cpb.GetRevocationsResponse).revocations
        )

    # Queries ----------------------------------------------------------------------------------------------

    def run_query(self, signed_query: pb.SignedQuery, site_timeout_ms: int = 0) -> cpb.RunQueryResponse:
        request = cpb.RunQueryRequest(signed_query=signed_query, site_timeout_ms=site_timeout_ms)
        return self._call(self.stub.RunQuery, request, cpb.RunQueryResponse)

    def study_budget(self, study_id: str, sites: Iterable[str] = ()) -> list[cpb.SiteBudget]:
        request = cpb.GetStudyBudgetRequest(study_id=study_id, sites=list(sites))
        return list(self._call(self.stub.GetStudyBudget, request, cpb.GetStudyBudgetResponse).sites)

    # Signing helpers --------------------------------------------------------------------------------------

    def propose(self, proposal: StudyProposal, signer: Signer) -> Study:
        """Sign ``proposal`` as the researcher (see ``sign_proposal``) and propose it."""
        return self.propose_study(sign_proposal(proposal, signer))

    def review(self, study: Study, decision: ReviewDecision, comment: str, signer: Signer) -> Study:
        """Sign a review of ``study`` and send it: RevokeStudy for REVOKE, ReviewStudy otherwise.

        Returns the study after the review (use ``sign_review`` + ``revoke_study`` for the revocation epoch)."""
        from genogate.studies import ReviewDecision

        review = sign_review(study, decision, comment, signer)
        if decision == ReviewDecision.REVOKE:
            return self.revoke_study(review)[0]
        return self.review_study(review)
