"""Contract: the per-RPC policy lists exactly the RPCs the node serves; every error class carries a status,
a reason and a clean fixed message, and survives the trip through the RPC boundary unchanged."""

from __future__ import annotations

import grpc
import pytest

from genogate import errors
from genogate.errors import GenogateError, Reason, class_for_status
from genogate.rpc import REASON_KEY, error_from_rpc
from genogate.wire.v1 import node_pb2
from node.servicer import RPC_POLICY

WIRE_ERRORS = [
    c
    for c in vars(errors).values()
    if isinstance(c, type)
    and issubclass(c, GenogateError)
    and not issubclass(c, errors.LocalError)
    and c is not GenogateError
]


def test_policy_table_covers_every_node_rpc_and_nothing_unknown() -> None:
    service = node_pb2.DESCRIPTOR.services_by_name["NodeService"]
    served = {f"/genogate.v1.NodeService/{m.name}" for m in service.methods}
    listed = {m for m in RPC_POLICY if m.startswith("/genogate.v1.")}
    assert served == listed
    assert all(text.strip() for text in RPC_POLICY.values())


@pytest.mark.parametrize("cls", WIRE_ERRORS, ids=lambda c: c.__name__)
def test_every_error_has_status_reason_and_a_fixed_message(cls: type[GenogateError]) -> None:
    assert isinstance(cls.code, grpc.StatusCode) and cls.code is not grpc.StatusCode.OK
    assert isinstance(cls.reason, Reason) and cls.reason is not Reason.UNSPECIFIED
    assert cls.message and cls.message[0].islower() and not cls.message.endswith(".")
    assert class_for_status(cls.code) is cls


class _FakeRpcError(grpc.RpcError):
    """The shape a failed call has on the client (code, details, trailing metadata)."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str):
        self._code, self._details, self._reason = code, details, reason

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((REASON_KEY, self._reason),)


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.name)
def test_the_client_rebuilds_class_reason_and_message(reason: Reason) -> None:
    cls = next((c for c in WIRE_ERRORS if c.reason is reason), errors.PermissionDenied)
    sent = cls("private detail never sent", reason=reason)
    got = error_from_rpc(_FakeRpcError(sent.code, sent.message, reason.name))
    assert type(got) is type(sent) and got.reason is reason and got.message == sent.message
    assert "private detail" not in str(got)
