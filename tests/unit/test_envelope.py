"""The one envelope module (``genogate.envelope``): build, sign, open (size, then signature, then one decode),
and the checks of the opened envelope, with every refusal's class, reason and public message; and, read from
the source, that nothing else in the runtime decodes an envelope."""

from __future__ import annotations

import inspect
import math
import re
import typing
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from coordinator.fanout import FanOut
from coordinator.preview import MAX_EPSILON, epsilon_decimal
from genogate import envelope
from genogate.envelope import OpenedEnvelope, exact_decimal, open_envelope, receive, wire_epsilon
from genogate.errors import GenogateError, InvalidArgument, Reason, Unauthenticated, number
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.cohort_count import CohortCount
from genogate.query import Variant
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from node.grants import GrantVerifier

ROOT = Path(__file__).resolve().parents[2]
ALICE = Signer(Ed25519PrivateKey.generate())
MALLORY = Signer(Ed25519PrivateKey.generate())
QUERY = AlleleFrequency((Variant("1", 100, "A", "G"), Variant("22", 16050075, "A", "G")))
LIMIT = 64 * 1024


def signed(env: pb.QueryEnvelope, by: Signer = ALICE) -> tuple[bytes, bytes]:
    return envelope.sign(env, by)


def opened(**fields: object) -> OpenedEnvelope:
    env = envelope.build(QUERY, study_id="S1", epsilon=0.5, query_id="q-1")
    for name, value in fields.items():
        setattr(env, name, value)
    payload, signature = signed(env)
    return open_envelope(payload, signature, ALICE.public_raw, max_bytes=LIMIT)


def refusal(fn: typing.Callable[[], object]) -> GenogateError:
    with pytest.raises(GenogateError) as info:
        fn()
    return info.value


def test_build_sign_open_round_trip() -> None:
    env = envelope.build(
        QUERY, study_id="S1", epsilon=0.25, query_id="q-1", sites=("site-a", "site-b"), assembly="GRCh38"
    )
    payload, signature = signed(env)
    assert payload == env.SerializeToString(deterministic=True)
    assert envelope.signed_query(env, ALICE) == pb.SignedQuery(payload=payload, researcher_signature=signature)
    got = open_envelope(payload, signature, ALICE.public_raw, max_bytes=len(payload)).check()
    assert got.envelope == env and got.payload is payload and got.signature is signature
    assert (got.query_id, got.study_id, list(got.envelope.sites)) == ("q-1", "S1", ["site-a", "site-b"])
    assert got.query == QUERY
    assert got.epsilon == Decimal("0.25") and isinstance(got.epsilon, Decimal)
    assert got.epsilon is got.epsilon and got.query is got.query  # parsed once, then kept


def test_build_draws_a_fresh_id_nonce_and_timestamp() -> None:
    a, b = (envelope.build(CohortCount(), study_id="S1", epsilon=1.0) for _ in range(2))
    assert a.query_id != b.query_id and len(a.nonce) == 16 and a.nonce != b.nonce
    assert envelope.QUERY_ID_RE.match(a.query_id) and a.timestamp_unix_ms > 0


def test_oversized_is_refused_before_its_signature_or_bytes_are_looked_at() -> None:
    env = envelope.build(QUERY, study_id="S1", epsilon=0.5)
    payload, signature = signed(env)
    err = refusal(lambda: open_envelope(payload, signature, ALICE.public_raw, max_bytes=len(payload) - 1))
    assert isinstance(err, InvalidArgument) and err.reason is Reason.INVALID_QUERY
    assert err.message == f"the query envelope is larger than accepted ({len(payload) - 1} bytes)"
    # Garbage signed by nobody: still the size refusal, so neither the signature nor the bytes were read.
    garbage = b"\xff" * 1000
    err = refusal(lambda: open_envelope(garbage, b"", MALLORY.public_raw, max_bytes=999))
    assert err.reason is Reason.INVALID_QUERY and "larger than accepted (999 bytes)" in err.message
    # Each receiver states its own limit.
    mine = InvalidArgument("big", reason=Reason.TOO_MANY_VARIANTS, message="at most 3 variants")
    err = refusal(lambda: receive(garbage, max_bytes=10, too_large=lambda size: mine))
    assert err is mine
    assert receive(garbage, max_bytes=None).payload is garbage
    assert receive(garbage, max_bytes=1000).payload is garbage  # at the limit: accepted


def test_a_bad_signature_is_refused_before_decoding() -> None:
    payload, signature = signed(envelope.build(QUERY, study_id="S1", epsilon=0.5))
    for key, sig in ((MALLORY.public_raw, signature), (ALICE.public_raw, b""), (ALICE.public_raw, signature[::-1])):
        err = refusal(lambda: open_envelope(payload, sig, key, max_bytes=LIMIT))  # noqa: B023
        assert isinstance(err, Unauthenticated) and err.reason is Reason.BAD_SIGNATURE
        assert err.message == "a signature did not verify"
    garbage = b"\xff\xff\xff"  # not an envelope, signed by someone else: BAD_SIGNATURE, never a decode error
    err = refusal(
        lambda: open_envelope(garbage, MALLORY.sign(envelope.BODY_NAME, garbage), ALICE.public_raw, max_bytes=LIMIT)
    )
    assert err.reason is Reason.BAD_SIGNATURE
    # A signature over the same bytes for another kind of body is refused too (domain separation).
    err = refusal(
        lambda: open_envelope(payload, ALICE.sign("genogate.v1.GrantBody", payload), ALICE.public_raw, max_bytes=LIMIT)
    )
    assert err.reason is Reason.BAD_SIGNATURE


def test_every_tampered_byte_is_refused_by_the_signature() -> None:
    payload, signature = signed(envelope.build(CohortCount(), study_id="S1", epsilon=0.5))
    for i in range(len(payload)):
        tampered = payload[:i] + bytes([payload[i] ^ 0x01]) + payload[i + 1 :]
        err = refusal(lambda: open_envelope(tampered, signature, ALICE.public_raw, max_bytes=LIMIT))  # noqa: B023
        assert err.reason is Reason.BAD_SIGNATURE, i
    err = refusal(lambda: open_envelope(payload + b"\x00", signature, ALICE.public_raw, max_bytes=LIMIT))
    assert err.reason is Reason.BAD_SIGNATURE


def test_undecodable_bytes_signed_by_the_researcher_are_invalid_query() -> None:
    garbage = b"\xff\xff\xff"
    err = refusal(
        lambda: open_envelope(garbage, ALICE.sign(envelope.BODY_NAME, garbage), ALICE.public_raw, max_bytes=LIMIT)
    )
    assert isinstance(err, InvalidArgument) and err.reason is Reason.INVALID_QUERY
    assert err.message == "the query is malformed"
    err = refusal(lambda: receive(garbage, max_bytes=LIMIT).open_unsigned())
    assert err.reason is Reason.INVALID_QUERY


def test_open_unsigned_decodes_without_a_signature() -> None:
    env = envelope.build(CohortCount(), study_id="LOCAL", epsilon=0.5, query_id="q")
    got = receive(env.SerializeToString(), max_bytes=LIMIT).open_unsigned()
    assert got.envelope == env and got.signature == b""


@pytest.mark.parametrize("query_id", ["", "has space", "x" * 129, "semi;colon", "é"])
def test_a_malformed_query_id_is_refused(query_id: str) -> None:
    got = opened(query_id=query_id)  # opening does not look at it: each receiver checks in its own order
    err = refusal(got.check_ids)
    assert isinstance(err, InvalidArgument) and err.reason is Reason.INVALID_QUERY
    assert err.message == "the query is malformed"
    assert refusal(got.check).reason is Reason.INVALID_QUERY


@pytest.mark.parametrize("query_id", ["q", "x" * 128, "A-Z_a.z:0-9", "0123456789abcdef0123456789abcdef"])
def test_a_well_formed_query_id_passes(query_id: str) -> None:
    opened(query_id=query_id).check_ids()


def test_an_empty_study_id_is_invalid_study() -> None:
    err = refusal(opened(study_id="").check_ids)
    assert err.reason is Reason.INVALID_STUDY and err.message == "the study id is malformed"


@pytest.mark.parametrize("epsilon", [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, -5e-324, -1e308])
def test_an_unusable_epsilon_is_invalid_epsilon(epsilon: float) -> None:
    got = opened(epsilon=epsilon)
    for attempt in (lambda: got.epsilon, got.check, lambda: wire_epsilon(epsilon)):
        err = refusal(attempt)
        assert isinstance(err, InvalidArgument) and err.reason is Reason.INVALID_EPSILON
        assert err.message == (
            f"epsilon is invalid: the query asks ε {number(epsilon)}; ε must be a positive finite number"
        )
    assert exact_decimal(epsilon) is None and epsilon_decimal(epsilon) is None


@pytest.mark.parametrize(
    ("epsilon", "exact"),
    [(5e-324, Decimal("5E-324")), (1e308, Decimal("1E+308")), (0.1, Decimal("0.1")), (0.001, Decimal("0.001"))],
)
def test_epsilon_is_read_exactly_and_floors_and_caps_are_left_to_the_receiver(epsilon: float, exact: Decimal) -> None:
    """5e-324 and 1e308 are valid doubles: each receiver refuses them against its own floor and cap."""
    assert opened(epsilon=epsilon).epsilon == exact
    assert exact_decimal(epsilon) == exact
    assert epsilon_decimal(epsilon) == (exact if exact <= MAX_EPSILON else None)  # the preview's bound on top


@given(st.floats(min_value=5e-324, allow_nan=False, allow_infinity=False))
def test_exact_decimal_is_the_shortest_decimal_that_round_trips(x: float) -> None:
    d = exact_decimal(x)
    assert d is not None and float(d) == x and d > 0
    assert len(d.as_tuple().digits) <= 17  # not the binary expansion (0.1000000000000000055...)


def test_a_malformed_query_is_refused_when_read() -> None:
    env = envelope.build(CohortCount(), study_id="S1", epsilon=0.5, query_id="q")
    env.query.Clear()  # no kind at all
    payload, signature = signed(env)
    got = open_envelope(payload, signature, ALICE.public_raw, max_bytes=LIMIT)
    assert got.epsilon == Decimal("0.5")  # the rest of it is usable
    err = refusal(lambda: got.query)
    assert isinstance(err, InvalidArgument) and err.reason is Reason.INVALID_QUERY
    assert refusal(got.check).reason is Reason.INVALID_QUERY


# One decode per process, read from the source -----------------------------------------------------------

_DECODES = re.compile(r"QueryEnvelope\s*\.\s*(FromString|ParseFromString)|QueryEnvelope\(\)\s*\.\s*ParseFromString")


def test_only_the_envelope_module_decodes_an_envelope() -> None:
    """Every runtime package: no ``QueryEnvelope`` is parsed anywhere but ``genogate.envelope.decode``."""
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("genogate", "node", "coordinator", "genogate_demo")
        for path in sorted((ROOT / package).rglob("*.py"))  # a package that does not exist here yields nothing
        if "wire" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _DECODES.search(line)
    ]
    assert found == ["genogate/envelope.py:" + str(_line_of(envelope.decode, "FromString"))]


def _line_of(fn: typing.Callable[..., object], text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_the_fan_out_and_the_grant_verifier_take_the_opened_envelope() -> None:
    """The coordinator hands its opened envelope to the fan-out; the node's verifier returns the one it opened."""
    run = typing.get_type_hints(FanOut.run)
    assert run["opened"] is OpenedEnvelope and "request" not in run
    from node.grants import VerifiedQuery

    assert typing.get_type_hints(VerifiedQuery)["opened"] is OpenedEnvelope
    assert "received" in inspect.signature(GrantVerifier.open).parameters


def test_a_new_query_id_is_a_random_version_4_uuid_in_hex() -> None:
    """``envelope.new_query_id`` is ``uuid.uuid4().hex`` without importing ``uuid``: version 4, RFC 4122
    variant, 32 lower-case hex digits, and different each time."""
    import uuid

    from genogate.envelope import new_query_id

    ids = [new_query_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for q in ids:
        u = uuid.UUID(hex=q)
        assert (u.version, u.variant, u.hex) == (4, uuid.RFC_4122, q)
