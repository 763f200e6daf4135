"""Everything a node verifies itself before it answers a query under a committee-signed study grant.

``GrantVerifier.verify`` turns a ``StudyGrant`` and a researcher's ``SignedQuery`` into a ``VerifiedQuery``
(the ``Study`` the service checks and the envelope opened once, ``genogate.envelope.OpenedEnvelope``, with the
exact signed bytes) or raises a ``genogate.errors`` class with a stable reason, a fixed public message and
specifics in ``detail`` only. ``GrantVerifier.open`` does the same for bytes the service has size-checked.
Checks run cheapest and data-independent first (docs/trust-model.md); none reads participant data:

0. the grant is at most ``MAX_GRANT_BYTES`` and the signed envelope at most ``max_payload_bytes`` (from the
   node's ``max_variants_per_query``), before either is decoded (INVALID_STUDY, INVALID_QUERY);
1. the grant's committee key is trusted (UNTRUSTED_COMMITTEE), its signature verifies (BAD_SIGNATURE) and
   its body is complete and well formed (INVALID_STUDY);
2. the researcher key in the grant matches its fingerprint (INVALID_STUDY);
3. the grant is in force (GRANT_NOT_YET_VALID, GRANT_EXPIRED);
4. it names this site (GRANT_WRONG_SITE);
5. this node's data steward has not refused the study and, where the node requires an opt-in, opted in
   (STUDY_REFUSED);
6. the study is not revoked, according to a revocation list fresh enough and at least as new as the grant
   (GRANT_REVOKED, REVOCATION_UNCONFIRMED);
7. the query is signed by the researcher key the grant carries (BAD_SIGNATURE), checked over the raw bytes
   before the envelope is decoded (``genogate.envelope.Received.open``: the node's one decode of it; the
   service reads the opened envelope, never the bytes again): nobody but the grant's researcher makes this
   node parse a query;
8. the envelope is for the grant's study (GRANT_MISSING) and addressed to this site (GRANT_WRONG_SITE);
9. its timestamp lies within the window around this node's clock (STALE_TIMESTAMP);
10. the caller may receive this site's own value: the grant allows the per-site breakdown, or the caller's
    certificate is the coordinator's (NOT_AUTHORIZED);
11. its nonce is fresh (REPLAYED_NONCE), after every other check passed. ``verify`` records it durably
    with the caller's common name at once; the service (``open(..., defer_nonce=True)``) gets it back as a
    ``node.nonces.NonceClaim`` and records it in the ledger transaction that charges or refuses the query:
    one synced commit per query (the argument is in ``node.nonces``).

The same signed envelope sent again by the caller that first sent it (the coordinator retrying after
UNAVAILABLE) passes step 11: the ledger then returns the stored answer for its query id. The same nonce
under any other payload, or from any other caller, is a replay.

Threading: a ``GrantVerifier``'s only mutable state is its cache of verified grant bytes (``VerifiedGrants``,
one lock). ``RevocationCache`` swaps an immutable snapshot under a lock. The nonces of step 11 are kept by
``node.nonces.NonceStore``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from genogate import duo
from genogate.envelope import BODY_NAME, OpenedEnvelope, Received, exact_decimal, receive
from genogate.errors import (
    ConfigError,
    FailedPrecondition,
    GenogateError,
    InvalidArgument,
    PermissionDenied,
    Reason,
    Unauthenticated,
    Unavailable,
    name_list,
)
from genogate.genome import BUILDS
from genogate.query import Kind
from genogate.signing import key_id, verify
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from node.nonces import NonceClaim, NonceStore
from node.studies import Study

GRANT_BODY = "genogate.v1.GrantBody"
QUERY_ENVELOPE = BODY_NAME
REVOCATION_LIST = "genogate.v1.RevocationList"
MAX_GRANT_BYTES = 64 * 1024
"""A grant names a study, its sites and terms: far below this."""
_MAX_STUDY_ID = 128
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class VerifiedQuery:
    """A query that passed every grant, signature and freshness check (the nonce is recorded)."""

    study: Study
    opened: OpenedEnvelope
    """The envelope, decoded once, with the exact signed bytes (the ledger hashes them to recognise an
    idempotent retry)."""
    grant: pb.GrantBody
    nonce: NonceClaim | None = None
    """The nonce, checked but not yet recorded (``open(..., defer_nonce=True)``): the caller records it."""

    @property
    def envelope(self) -> pb.QueryEnvelope:
        return self.opened.envelope

    @property
    def payload(self) -> bytes:
        return self.opened.payload


def _invalid_study(detail: str) -> InvalidArgument:
    return InvalidArgument(detail, reason=Reason.INVALID_STUDY, message="the study grant is malformed")


def _trusted_keys(trusted: Mapping[str, bytes]) -> dict[str, bytes]:
    """Copy the committee keys, refusing (``ConfigError``) any whose id is not its fingerprint."""
    bad = sorted(kid for kid, raw in trusted.items() if len(raw) != 32 or key_id(raw) != kid)
    if bad:
        raise ConfigError(f"trusted committee key(s) {', '.join(bad)}: not the SHA-256 of a raw 32-byte Ed25519 key")
    return dict(trusted)


def _verify_committee(
    trusted: Mapping[str, bytes], kid: str, body_name: str, payload: bytes, sig: bytes, message: str
) -> None:
    public = trusted.get(kid)
    if public is None:
        raise PermissionDenied(
            f"{body_name} signed by committee key {kid[:64]!r}",
            reason=Reason.UNTRUSTED_COMMITTEE,
            message=f"{message}: it names key {kid[:64]}, and this site trusts {len(trusted)} committee "
            f"key{'' if len(trusted) == 1 else 's'} (its operator lists them in [grants] committee_keys)",
        )
    verify(public, body_name, payload, sig)


def _now_ms(clock: Callable[[], float]) -> int:
    return math.floor(clock() * 1000)


# Revocations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Held:
    epoch: int
    issued_ms: int
    fetched_ms: int
    revoked: frozenset[str]


class RevocationCache:
    """The latest committee-signed revocation list this node holds, and whether it is fresh enough to trust.

    The list's age counts from the earlier of its signed ``issued_unix_ms`` and the moment this node accepted
    it: an old list replayed to the node stays old, and a signer's clock running ahead cannot make a list
    look younger than it is here. So the coordinator must serve a list signed within ``max_staleness_ms``.
    """

    def __init__(
        self, trusted: Mapping[str, bytes], max_staleness_ms: int, clock: Callable[[], float] = time.time
    ) -> None:
        if max_staleness_ms <= 0:
            raise ConfigError("the revocation list's maximum staleness must be positive")
        self._trusted = _trusted_keys(trusted)
        self._max_staleness_ms = max_staleness_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self.last_error: GenogateError | None = None
        """Why the last ``refresh`` failed (None after a success), for the caller to log."""

    @property
    def epoch(self) -> int | None:
        """The epoch of the list held, or None before the first successful update."""
        held = self._held
        return None if held is None else held.epoch

    def update(self, signed: cpb.SignedRevocationList) -> None:
        """Verify and adopt a list. Refuses an untrusted or bad signature, a malformed body, and any list
        older than the one held (a lower epoch, or the same epoch signed earlier or with other contents)."""
        _verify_committee(
            self._trusted,
            signed.committee_key_id,
            REVOCATION_LIST,
            signed.payload,
            signed.committee_signature,
            "the revocation list is signed by a committee key this node does not trust",
        )
        try:
            body = cpb.RevocationList.FromString(signed.payload)
        except DecodeError:
            raise InvalidArgument("undecodable RevocationList", message="the revocation list is malformed") from None
        new = _Held(body.epoch, body.issued_unix_ms, _now_ms(self._clock), frozenset(body.revoked_study_ids))
        with self._lock:
            held = self._held
            if held is not None and (
                new.epoch < held.epoch
                or (new.epoch == held.epoch and (new.issued_ms < held.issued_ms or new.revoked != held.revoked))
            ):
                raise FailedPrecondition(
                    f"revocation list epoch {new.epoch} issued {new.issued_ms} does not supersede"
                    f" epoch {held.epoch} issued {held.issued_ms}",
                    message="the revocation list is older than the one held",
                )
            self._held = new

    def refresh(self, fetch: Callable[[], cpb.SignedRevocationList]) -> bool:
        """Fetch and adopt a list; on any error keep the old one, set ``last_error`` and return False."""
        try:
            self.update(fetch())
        except GenogateError as exc:
            self.last_error = exc
            return False
        except Exception as exc:  # noqa: BLE001 - a failed fetch must never take the node down
            self.last_error = Unavailable(f"revocation list fetch failed: {type(exc).__name__}: {exc}")
            return False
        self.last_error = None
        return True

    def check(self, study_id: str, grant_epoch: int) -> None:
        """Refuse a revoked study, or any study when the list held cannot vouch for the grant."""
        held = self._held
        if held is not None and study_id in held.revoked:  # revocation is final: a stale list still says so
            raise PermissionDenied(
                study_id,
                reason=Reason.GRANT_REVOKED,
                message=f"the study was revoked: study {study_id[:_MAX_STUDY_ID]} is on the committee's revocation "
                f"list (epoch {held.epoch})",
            )
        if held is None:
            why = "no revocation list was ever fetched"
        elif (age := _now_ms(self._clock) - min(held.issued_ms, held.fetched_ms)) > self._max_staleness_ms:
            why = f"the revocation list is {age} ms old (limit {self._max_staleness_ms})"
        elif grant_epoch > held.epoch:
            why = f"the grant names revocation epoch {grant_epoch}, the list held is epoch {held.epoch}"
        else:
            return
        raise PermissionDenied(
            why,
            reason=Reason.REVOCATION_UNCONFIRMED,
            message=f"this node cannot yet confirm that the study is not revoked: {why}",
        )


# Grants -------------------------------------------------------------------------------------------------


def _ms_datetime(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def _parse_grant(payload: bytes) -> tuple[pb.GrantBody, Study]:
    """Decode a verified grant body and build its ``Study``; ``INVALID_STUDY`` if anything is missing."""
    try:
        body = pb.GrantBody.FromString(payload)
    except DecodeError:
        raise _invalid_study("undecodable GrantBody") from None
    if not 0 < len(body.study_id) <= _MAX_STUDY_ID:
        raise _invalid_study(f"study id must be 1-{_MAX_STUDY_ID} characters")
    if len(body.researcher_public_key) != 32 or not body.researcher_key_fingerprint:
        raise _invalid_study("the grant needs a raw 32-byte researcher key and its fingerprint")
    if not body.sites or not all(body.sites):
        raise _invalid_study("the grant names no site, or an empty one")
    epsilon_total = exact_decimal(body.epsilon_total)
    if epsilon_total is None:
        raise _invalid_study("epsilon_total must be a positive finite number")
    epsilon_per_query_cap = exact_decimal(body.epsilon_per_query_cap)
    if epsilon_per_query_cap is None:
        raise _invalid_study("epsilon_per_query_cap must be a positive finite number")
    if body.not_after_unix_ms <= max(body.not_before_unix_ms, 0):
        raise _invalid_study("not_after must be set and later than not_before")
    try:
        purpose = duo.parse_purpose(body.purpose)
        kinds = frozenset(Kind(k) for k in body.kinds)
        not_before, not_after = _ms_datetime(body.not_before_unix_ms), _ms_datetime(body.not_after_unix_ms)
    except (ValueError, OverflowError) as exc:
        raise _invalid_study(str(exc)) from None
    if not kinds:
        raise _invalid_study("the grant names no query kind")
    if body.assembly not in BUILDS:
        raise _invalid_study(f"the grant's assembly must be one of {', '.join(BUILDS)}")
    study = Study(
        study_id=body.study_id,
        purpose=purpose,
        purpose_text=body.purpose,
        kinds=kinds,
        epsilon_total=epsilon_total,
        epsilon_per_query_cap=epsilon_per_query_cap,
        not_before=not_before,
        not_after=not_after,
        researchers=frozenset({body.researcher_key_fingerprint}),
        assembly=body.assembly,
    )
    return body, study


class VerifiedGrants:
    """Grants whose bytes verified (committee signature, body, researcher key fingerprint), by the SHA-256 of
    everything the signature check read: the committee key id, the payload and the signature, each with its
    length. A coordinator sends the same grant with every query of a study, so its Ed25519 check and decode
    run once, not per query.

    Only successes are kept, so a grant that failed is checked again in full next time, and any change to
    a kept grant's bytes (payload, signature or key id) is another digest, verified afresh. What depends on
    the time, this node's configuration or the revocation list is not kept here (``verify_grant`` checks it
    on every call). The cached ``GrantBody`` is shared and must not be modified. Bounded: the least
    recently used entry goes past ``max_entries`` (each at most ``MAX_GRANT_BYTES`` decoded).

    Threading: one lock around each lookup and insertion (microseconds; verification runs outside it)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[pb.GrantBody, Study]] = OrderedDict()

    @staticmethod
    def digest(grant: pb.StudyGrant) -> bytes:
        h = hashlib.sha256()
        for part in (grant.committee_key_id.encode(), grant.payload, grant.committee_signature):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.digest()

    def get(self, digest: bytes) -> tuple[pb.GrantBody, Study] | None:
        with self._lock:
            found = self._entries.get(digest)
            if found is not None:
                self._entries.move_to_end(digest)
            return found

    def put(self, digest: bytes, verified: tuple[pb.GrantBody, Study]) -> None:
        with self._lock:
            self._entries[digest] = verified
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _wrong_site(detail: str, message: str) -> PermissionDenied:
    return PermissionDenied(detail, reason=Reason.GRANT_WRONG_SITE, message=message)


class GrantVerifier:
    """Verifies a grant and a signed query for one site (see the module docstring for the order)."""

    def __init__(
        self,
        *,
        site: str,
        trusted_committee: Mapping[str, bytes],
        revocations: RevocationCache,
        nonces: NonceStore,
        timestamp_window_ms: int,
        opted_in: frozenset[str] | None,
        refused: frozenset[str],
        clock: Callable[[], float] = time.time,
        max_payload_bytes: int | None = None,
    ) -> None:
        if not 0 < timestamp_window_ms <= nonces.window_ms:
            raise ConfigError("the timestamp window must be positive and no wider than the nonce store's window")
        self.site = site
        self._trusted = _trusted_keys(trusted_committee)
        self._revocations = revocations
        self._nonces = nonces
        self._window_ms = timestamp_window_ms
        self._opted_in = opted_in
        self._refused = refused
        self._clock = clock
        self._max_payload = max_payload_bytes
        self._verified = VerifiedGrants()

    @property
    def revocations(self) -> RevocationCache:
        return self._revocations

    def close(self) -> None:
        self._nonces.close()

    def verify_grant(self, grant: pb.StudyGrant) -> tuple[pb.GrantBody, Study]:
        """The grant's own checks (committee signature, key fingerprint, validity window, this site, the
        steward's rules, revocation): what a query and a budget request under it both need. The signature,
        decoding and fingerprint checks depend on the grant's bytes only and are remembered per grant
        (``VerifiedGrants``); the rest is checked on every call."""
        if len(grant.payload) > MAX_GRANT_BYTES:
            raise _invalid_study(f"grant of {len(grant.payload)} bytes; at most {MAX_GRANT_BYTES}")
        digest = VerifiedGrants.digest(grant)
        verified = self._verified.get(digest)
        if verified is None:
            verified = self._verify_bytes(grant)
            self._verified.put(digest, verified)
        body, study = verified
        sid = body.study_id
        now_ms = _now_ms(self._clock)
        if now_ms < body.not_before_unix_ms:
            raise PermissionDenied(
                sid,
                reason=Reason.GRANT_NOT_YET_VALID,
                message=f"the study grant is not yet valid: study {sid[:_MAX_STUDY_ID]} starts at "
                f"{study.not_before:%Y-%m-%d %H:%M} UTC",
            )
        if now_ms >= body.not_after_unix_ms:
            raise PermissionDenied(
                sid,
                reason=Reason.GRANT_EXPIRED,
                message=f"the study grant has expired: study {sid[:_MAX_STUDY_ID]} ended at "
                f"{study.not_after:%Y-%m-%d %H:%M} UTC",
            )
        if self.site not in body.sites:
            raise _wrong_site(
                f"study {sid!r} does not name site {self.site!r}",
                f"the grant does not name this site: this is {self.site}; the grant of study {sid[:_MAX_STUDY_ID]} "
                f"names {name_list(body.sites)}",
            )
        if sid in self._refused or (self._opted_in is not None and sid not in self._opted_in):
            raise PermissionDenied(
                f"study {sid!r} is refused or not opted in by this node's steward",
                reason=Reason.STUDY_REFUSED,
                message=f"this node's policy refuses this study: study {sid[:_MAX_STUDY_ID]} is "
                + (
                    "refused by this site's data steward"
                    if sid in self._refused
                    else "not among the studies this site opted in to"
                ),
            )
        self._revocations.check(sid, body.revocation_epoch)

        return body, study

    def _verify_bytes(self, grant: pb.StudyGrant) -> tuple[pb.GrantBody, Study]:
        """What a grant's bytes alone decide: a trusted committee key's valid signature, a complete body, and
        a researcher key matching its fingerprint."""
        _verify_committee(
            self._trusted,
            grant.committee_key_id,
            GRANT_BODY,
            grant.payload,
            grant.committee_signature,
            "the grant is signed by a committee key this node does not trust",
        )
        body, study = _parse_grant(grant.payload)
        if hashlib.sha256(body.researcher_public_key).hexdigest() != body.researcher_key_fingerprint:
            raise _invalid_study(f"study {body.study_id!r}: the researcher key does not match its fingerprint")
        return body, study

    def verify(
        self, grant: pb.StudyGrant, signed: pb.SignedQuery, *, caller: str, coordinator_common_name: str
    ) -> VerifiedQuery:
        """Run every check in order; return the verified query or raise the first refusal. ``caller`` is the
        common name of the sender's certificate; ``coordinator_common_name`` the coordinator's ("": not
        configured, so nobody may receive a site's own value under a grant without the breakdown)."""
        received = receive(
            signed.payload, signed.researcher_signature, max_bytes=self._max_payload, too_large=self._too_large
        )
        return self.open(grant, received, caller=caller, coordinator_common_name=coordinator_common_name)

    def _too_large(self, size: int) -> InvalidArgument:
        return InvalidArgument(
            f"envelope of {size} bytes; at most {self._max_payload}",
            message=f"the query envelope is larger than this node accepts ({self._max_payload} bytes)",
        )

    def open(
        self,
        grant: pb.StudyGrant,
        received: Received,
        *,
        caller: str,
        coordinator_common_name: str,
        defer_nonce: bool = False,
    ) -> VerifiedQuery:
        """``verify`` for envelope bytes whose size the caller already checked (``genogate.envelope.receive``): the
        grant, then the researcher's signature and the one decode (``Received.open``), then the opened
        envelope's checks (steps 1-11 of the module docstring). With ``defer_nonce`` the nonce is checked, not
        recorded: the caller records the returned ``VerifiedQuery.nonce`` in its own ledger transaction."""
        body, study = self.verify_grant(grant)
        sid = body.study_id
        now_ms = _now_ms(self._clock)
        try:
            opened = received.open(body.researcher_public_key)
        except Unauthenticated as exc:
            exc.detail = f"study {sid!r}: the query is not signed by the grant's researcher key"
            raise
        env = opened.envelope
        if env.study_id != sid:
            raise PermissionDenied(
                f"envelope for study {env.study_id[:_MAX_STUDY_ID]!r} under a grant for {sid!r}",
                reason=Reason.GRANT_MISSING,
                message=f"the grant is for another study: the query is for {env.study_id[:_MAX_STUDY_ID]}, the grant "
                f"for {sid[:_MAX_STUDY_ID]}",
            )
        if env.sites and self.site not in env.sites:
            raise _wrong_site(
                f"envelope does not name site {self.site!r}",
                f"the query is not addressed to this site: this is {self.site}; the query names {name_list(env.sites)}",
            )
        if abs(env.timestamp_unix_ms - now_ms) > self._window_ms:
            raise Unauthenticated(
                f"timestamp {env.timestamp_unix_ms} vs node clock {now_ms} (window {self._window_ms} ms)",
                reason=Reason.STALE_TIMESTAMP,
                message=f"the query timestamp is outside the accepted window: it is "
                f"{(env.timestamp_unix_ms - now_ms) / 1000:+.0f} s from this site's clock, which accepts "
                f"±{self._window_ms / 1000:g} s (check the clocks)",
            )
        if not body.per_site_breakdown and not (coordinator_common_name and caller == coordinator_common_name):
            why = (
                "[grants] coordinator_common_name is not set"
                if not coordinator_common_name
                else f"caller {caller!r} is not the coordinator {coordinator_common_name!r}"
            )
            raise PermissionDenied(
                f"study {sid!r} grants no per-site breakdown: {why}",
                message="the grant does not allow a per-site answer: only the coordinator may ask this site"
                + (
                    ""
                    if coordinator_common_name
                    else " (this node's operator must set [grants] coordinator_common_name)"
                ),
            )
        nonce = (env.nonce, hashlib.sha256(opened.payload).hexdigest(), env.timestamp_unix_ms, now_ms, caller)
        if not defer_nonce:
            self._nonces.check_and_record(*nonce)
            return VerifiedQuery(study=study, opened=opened, grant=body)
        return VerifiedQuery(study=study, opened=opened, grant=body, nonce=self._nonces.check(*nonce))
