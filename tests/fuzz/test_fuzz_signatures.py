"""Fuzzing signature and grant verification (``genogate.signing.verify``, ``genogate.envelope.open_envelope``,
``node.grants.GrantVerifier``):
mutated bytes (bit flips, truncation, extension, replacement, megabytes), wrong keys, swapped or empty
signatures, wrong key ids. A grant and a signed query are accepted only when byte-identical to what the
committee and the researcher signed; everything else is a typed refusal (never INTERNAL, never another
exception)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from genogate.envelope import open_envelope
from genogate.errors import GenogateError, Reason, Unauthenticated
from genogate.signing import Signer, verify
from genogate.wire.v1 import common_pb2 as pb
from node.grants import GrantVerifier, RevocationCache
from node.ledger import Ledger
from node.nonces import NonceStore
from tests.fuzz.cases import fuzz, record
from tests.unit.test_grants import STALENESS_MS, World, make_verifier

OTHER = Signer(Ed25519PrivateKey.generate())


@dataclass
class Bench:
    world: World
    verifier: GrantVerifier


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    with tempfile.TemporaryDirectory() as d:
        world = World()
        cache = RevocationCache(world.trusted, STALENESS_MS, world.clock)
        cache.update(world.revocations())
        ledger = Ledger(Path(d) / "ledger.sqlite")
        nonces = NonceStore(ledger, 60_000)
        try:
            yield Bench(world, make_verifier(world, cache, nonces))
        finally:
            nonces.close()
            ledger.close()


# A mutation of one byte string: (kind, position, bytes); position is taken modulo the length.
_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16), st.none()),
    st.tuples(st.just("append"), st.none(), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("replace"), st.none(), st.binary(max_size=200)),
    st.tuples(st.just("oversize"), st.none(), st.integers(2**16, 2**21)),
    st.tuples(st.just("keep"), st.none(), st.none()),
)
_GRANT_FIELDS = ("payload", "committee_signature", "committee_key_id")
_QUERY_FIELDS = ("payload", "researcher_signature")


def _mutate(data: bytes, mutation: tuple[str, object, object]) -> bytes:
    kind, at, arg = mutation
    if kind == "flip" and data:
        i = int(at) % len(data)  # type: ignore[call-overload]
        return data[:i] + bytes([data[i] ^ (1 << int(arg))]) + data[i + 1 :]  # type: ignore[call-overload]
    if kind == "truncate" and data:
        return data[: int(at) % len(data)]  # type: ignore[call-overload]
    if kind == "append":
        return data + bytes(arg)  # type: ignore[call-overload]
    if kind == "replace":
        return bytes(arg)  # type: ignore[call-overload]
    if kind == "oversize":
        return data + b"\x01" * int(arg)  # type: ignore[call-overload]
    return data


@fuzz(300, deadline_s=20)
@given(
    st.lists(st.tuples(st.sampled_from(_GRANT_FIELDS + _QUERY_FIELDS), _mutation), max_size=3),
    st.sampled_from(["none", "grant-by-other", "query-by-other", "query-by-committee", "swap"]),
)
def test_a_grant_and_query_are_accepted_only_byte_identical(
    bench: Bench, mutations: list[tuple[str, tuple[str, object, object]]], signer_change: str
) -> None:
    record("signature")
    world = bench.world
    grant, query = world.grant(), world.query()
    g, q = pb.StudyGrant(), pb.SignedQuery()
    g.CopyFrom(grant)
    q.CopyFrom(query)
    if signer_change == "grant-by-other":
        g.committee_signature = OTHER.sign("genogate.v1.GrantBody", g.payload)
    elif signer_change == "query-by-other":
        q.researcher_signature = OTHER.sign("genogate.v1.QueryEnvelope", q.payload)
    elif signer_change == "query-by-committee":
        q.researcher_signature = world.committee.sign("genogate.v1.QueryEnvelope", q.payload)
    elif signer_change == "swap":  # the same key's signature over the same bytes, for the other kind of body
        g.committee_signature = world.committee.sign("genogate.v1.QueryEnvelope", g.payload)
    for name, mutation in mutations:
        target = g if name in _GRANT_FIELDS else q
        value = getattr(target, name)
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        new = _mutate(raw, mutation)
        setattr(target, name, new.decode("utf-8", "replace") if isinstance(value, str) else new)
    identical = (
        g.SerializeToString() == grant.SerializeToString() and q.SerializeToString() == query.SerializeToString()
    )
    try:
        verified = bench.verifier.verify(g, q, caller="coordinator", coordinator_common_name="coordinator")
    except GenogateError as exc:
        assert not identical, f"the genuine grant and query were refused: {exc!r}"
        assert exc.reason not in (Reason.INTERNAL, Reason.UNSPECIFIED)
        return
    assert identical, "a mutated grant or query was accepted"
    assert verified.payload == query.payload


@fuzz(500, deadline_s=10)
@given(
    st.sampled_from(["genuine", "other-key", "random-key"]),
    st.binary(max_size=2048),
    st.lists(st.tuples(st.sampled_from(["key", "payload", "signature", "body"]), _mutation), max_size=3),
)
def test_verify_accepts_only_the_genuine_signature(key: str, payload: bytes, mutations: list) -> None:  # type: ignore[type-arg]
    record("signature")
    body = "genogate.v1.QueryEnvelope"
    signer = Signer(Ed25519PrivateKey.generate()) if key != "other-key" else OTHER
    signature = signer.sign(body, payload)
    parts = {"key": signer.public_raw, "payload": payload, "signature": signature, "body": body.encode()}
    original = dict(parts)
    if key == "random-key":
        parts["key"] = bytes(32)
    for name, mutation in mutations:
        parts[name] = _mutate(parts[name], mutation)
    genuine = parts == original
    body_text = parts["body"].decode("ascii", "replace")
    try:
        verify(parts["key"], body_text, parts["payload"], parts["signature"])
    except Unauthenticated as exc:
        assert exc.reason is Reason.BAD_SIGNATURE
        assert not genuine
        return
    assert genuine or (
        parts["key"] == original["key"]
        and parts["payload"] == original["payload"]
        and parts["signature"] == original["signature"]
        and body_text == body
    )


@fuzz(300, deadline_s=20)
@given(
    st.lists(st.tuples(st.sampled_from(_QUERY_FIELDS + ("key",)), _mutation), max_size=3),
    st.sampled_from(["researcher", "other", "committee"]),
)
def test_an_envelope_opens_only_byte_identical_and_signed_by_the_key(
    bench: Bench, mutations: list[tuple[str, tuple[str, object, object]]], signer: str
) -> None:
    """``genogate.envelope.open_envelope`` (size, signature, one decode): a mutated payload, signature or key
    is refused, as BAD_SIGNATURE or (past the size limit) INVALID_QUERY, never decoded or accepted."""
    record("signature")
    world = bench.world
    query = world.query()
    parts = {
        "payload": query.payload,
        "researcher_signature": query.researcher_signature,
        "key": world.researcher.public_raw,
    }
    if signer == "other":
        parts["researcher_signature"] = OTHER.sign("genogate.v1.QueryEnvelope", query.payload)
    elif signer == "committee":
        parts["researcher_signature"] = world.committee.sign("genogate.v1.QueryEnvelope", query.payload)
    for name, mutation in mutations:
        parts[name] = _mutate(parts[name], mutation)
    genuine = (
        signer == "researcher"
        and parts["payload"] == query.payload
        and parts["researcher_signature"] == query.researcher_signature
        and parts["key"] == world.researcher.public_raw
    )
    limit = 2**16
    try:
        opened = open_envelope(parts["payload"], parts["researcher_signature"], parts["key"], max_bytes=limit)
    except GenogateError as exc:
        assert not genuine, f"the genuine envelope was refused: {exc!r}"
        expected = Reason.INVALID_QUERY if len(parts["payload"]) > limit else Reason.BAD_SIGNATURE
        assert exc.reason is expected
        return
    assert genuine, "a mutated envelope, signature or key was accepted"
    assert opened.payload == query.payload and opened.check().query_id
