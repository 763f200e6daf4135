"""One signed query envelope: build it, sign it, and open it once on the receiving side.

A researcher's question travels as a ``QueryEnvelope`` serialized once (``sign``) and signed over those exact
bytes (``genogate.signing``, body name ``genogate.v1.QueryEnvelope``). The coordinator forwards the same bytes
to every site unchanged; each node verifies the researcher's signature over them. Nobody re-encodes an
envelope after it is signed.

Opening is ordered so that no work is done for an unauthenticated sender (issue 13):

1. ``receive``: the size of the raw bytes, refused (the receiver's own ``too_large`` refusal) before anything
   else;
2. ``Received.open``: the researcher's signature over the exact bytes (BAD_SIGNATURE), then the one decode
   of the process (``decode``: INVALID_QUERY for bytes that are not an envelope). ``open_unsigned`` skips the
   signature, for a node's local trusted studies, where the caller's mTLS certificate is the authentication;
3. the ``OpenedEnvelope`` then answers, each parsed at most once and only when first asked for, so that each
   user keeps its own order of refusals: ``check_ids`` (the query id's syntax, a non-empty study id),
   ``epsilon`` (an exact ``Decimal``, ``wire_epsilon``: INVALID_EPSILON) and ``query`` (the domain query,
   ``genogate.convert.query_from_pb``: INVALID_QUERY). ``check`` asks for all three.

Timestamps, nonces, sites and grants are checked by the node's grant verifier (``node.grants``) on the
opened envelope; the coordinator checks studies and sites on it (``coordinator.queries``) and hands it to
the fan-out, which reads the ids it needs from it and sends ``payload`` and ``signature`` as they came.

ε on the wire is a double; ``exact_decimal`` reads it as the shortest decimal that round-trips
(``Decimal(repr(x))``: 0.1 is 0.1, not 0.1000000000000000055...), the one reading every ledger, cap and floor
comparison uses. The envelope carries no δ: each node charges its own ``[policy] delta_per_query``.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from google.protobuf.message import DecodeError

from genogate.errors import GenogateError, InvalidArgument, Reason, number
from genogate.kinds import query_from_pb, query_to_pb
from genogate.query import Query
from genogate.signing import Signer, verify
from genogate.wire.v1 import common_pb2 as pb

BODY_NAME = "genogate.v1.QueryEnvelope"
"""What a researcher's signature over an envelope is domain-separated by (``genogate.signing``)."""
QUERY_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
"""A query id: 1-128 characters of A-Z a-z 0-9 _ . : - (a UUID's hex fits)."""


def new_query_id() -> str:
    """A random version-4 UUID as 32 hex digits, exactly ``uuid.uuid4().hex`` (the ``uuid`` module is not
    imported for it: in Python 3.11 it imports ``platform``, a noticeable share of the command line's start)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return b.hex()


def build(
    query: Query,
    *,
    study_id: str,
    epsilon: float,
    query_id: str | None = None,
    sites: tuple[str, ...] = (),
    assembly: str = "",
) -> pb.QueryEnvelope:
    """A fresh query envelope (new nonce and timestamp; a new id unless one is given). ``assembly``: the
    genome build the query's coordinates are on; empty means the study's."""
    return pb.QueryEnvelope(
        query_id=query_id or new_query_id(),
        study_id=study_id,
        query=query_to_pb(query),
        epsilon=epsilon,
        nonce=os.urandom(16),
        timestamp_unix_ms=int(time.time() * 1000),
        sites=list(sites),
        assembly=assembly,
    )


def sign(env: pb.QueryEnvelope, signer: Signer) -> tuple[bytes, bytes]:
    """The exact bytes of an envelope and the researcher's signature over them."""
    payload = env.SerializeToString(deterministic=True)
    return payload, signer.sign(BODY_NAME, payload)


def signed_query(env: pb.QueryEnvelope, signer: Signer) -> pb.SignedQuery:
    """``sign`` as the ``SignedQuery`` message that carries it."""
    payload, signature = sign(env, signer)
    return pb.SignedQuery(payload=payload, researcher_signature=signature)


def exact_decimal(x: float) -> Decimal | None:
    """A wire double read exactly (``Decimal(repr(x))``); None unless it is finite and positive."""
    if not math.isfinite(x) or x <= 0:
        return None
    return Decimal(repr(x))


def wire_epsilon(x: float) -> Decimal:
    """A query's ε as an exact ``Decimal``; INVALID_EPSILON unless finite and positive (floors and caps are
    each receiver's own checks)."""
    eps = exact_decimal(x)
    if eps is None:
        raise InvalidArgument(
            "epsilon must be a positive finite number",
            reason=Reason.INVALID_EPSILON,
            message=f"epsilon is invalid: the query asks ε {number(x)}; ε must be a positive finite number",
        )
    return eps


def decode(payload: bytes) -> pb.QueryEnvelope:
    """The one place an envelope's bytes are parsed (INVALID_QUERY when they are not an envelope)."""
    try:
        return pb.QueryEnvelope.FromString(payload)
    except DecodeError:
        raise InvalidArgument("undecodable QueryEnvelope") from None


@dataclass(frozen=True, eq=False)
class OpenedEnvelope:
    """An envelope decoded once, with the exact bytes that were signed and the signature over them.

    ``epsilon`` and ``query`` are parsed on first use and kept (a refusal is raised again on each use)."""

    envelope: pb.QueryEnvelope
    payload: bytes
    """The exact signed bytes: forwarded unchanged, hashed for receipts and retries."""
    signature: bytes

    @property
    def query_id(self) -> str:
        return self.envelope.query_id

    @property
    def study_id(self) -> str:
        return self.envelope.study_id

    def check_ids(self) -> None:
        """Refuse a malformed query id (INVALID_QUERY) or an empty study id (INVALID_STUDY)."""
        if not QUERY_ID_RE.match(self.envelope.query_id):
            raise InvalidArgument("query_id must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        if not self.envelope.study_id:
            raise InvalidArgument("study_id is empty", reason=Reason.INVALID_STUDY, message="the study id is malformed")

    # Parsed on first use and kept in the instance (``functools.cached_property`` would take one lock shared by
    # every instance in Python 3.11, held while parsing: every gRPC thread would queue on it).

    @property
    def epsilon(self) -> Decimal:
        """ε exactly (``wire_epsilon``)."""
        eps: Decimal | None = self.__dict__.get("_epsilon")
        if eps is None:
            eps = wire_epsilon(self.envelope.epsilon)
            object.__setattr__(self, "_epsilon", eps)
        return eps

    @property
    def query(self) -> Query:
        """The domain query (``query_from_pb``: INVALID_QUERY when malformed)."""
        query: Query | None = self.__dict__.get("_query")
        if query is None:
            query = query_from_pb(self.envelope.query)
            object.__setattr__(self, "_query", query)
        return query

    def check(self) -> OpenedEnvelope:
        """Every check of the envelope itself, in the node's order: ids, ε, the query. Returns itself."""
        self.check_ids()
        _ = self.epsilon
        _ = self.query
        return self


TooLarge = Callable[[int], GenogateError]
"""A receiver's refusal of an envelope of the given size (each states its own limit)."""


def _too_large(limit: int) -> TooLarge:
    return lambda size: InvalidArgument(
        f"envelope of {size} bytes; at most {limit}",
        message=f"the query envelope is larger than accepted ({limit} bytes)",
    )


@dataclass(frozen=True)
class Received:
    """Signed envelope bytes whose size passed: open them (signature, then decode) or refuse."""

    payload: bytes
    signature: bytes

    def open(self, researcher_key: bytes) -> OpenedEnvelope:
        """Verify the researcher's signature over the exact bytes (BAD_SIGNATURE), then decode."""
        verify(researcher_key, BODY_NAME, self.payload, self.signature)
        return OpenedEnvelope(decode(self.payload), self.payload, self.signature)

    def open_unsigned(self) -> OpenedEnvelope:
        """Decode without a signature check: only where the sender is authenticated otherwise (a node's local
        trusted studies, by the caller's mTLS certificate)."""
        return OpenedEnvelope(decode(self.payload), self.payload, self.signature)


def receive(
    payload: bytes, signature: bytes = b"", *, max_bytes: int | None, too_large: TooLarge | None = None
) -> Received:
    """Refuse envelope bytes over ``max_bytes`` (None: no limit) with ``too_large(size)``, before anything
    else is done with them."""
    if max_bytes is not None and len(payload) > max_bytes:
        raise (too_large or _too_large(max_bytes))(len(payload))
    return Received(payload, signature)


def open_envelope(
    payload: bytes,
    signature: bytes,
    researcher_key: bytes,
    *,
    max_bytes: int | None,
    too_large: TooLarge | None = None,
) -> OpenedEnvelope:
    """``receive`` then ``Received.open``: size, signature, decode, in that order."""
    return receive(payload, signature, max_bytes=max_bytes, too_large=too_large).open(researcher_key)
