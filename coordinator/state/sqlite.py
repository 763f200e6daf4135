"""``SqliteCoordinatorState``: the coordinator's durable state (``coordinator.state.CoordinatorState``) in one
SQLite file: the registry (nodes, researchers, committee reviewers), studies and their lifecycle, grants,
revocations and query history.

Lifecycle (a trigger refuses every other transition)::

    PROPOSED --k approvals--> APPROVED --revoke--> REVOKED
    PROPOSED --one reject---> REJECTED     APPROVED --grant's not_after passes--> EXPIRED

Trust: a proposal counts only when signed by the registered researcher key it names; a review only when
signed by a committee member's key (k of n approvals issue the grant, one rejection rejects). Grants and
revocation lists are signed by the committee signer given to the constructor. Reviews sign the SHA-256 of
the exact proposal bytes, so a review can never approve anything but what the researcher signed. Signed
things are kept as the exact bytes received; callers pass and get the domain types of ``genogate.studies``
and ``coordinator.model``, and the wire types appear here only to parse and build what is signed.
Resending an identical signed proposal or review changes nothing and returns the current study (safe
client retries).

Durability: WAL with ``synchronous=FULL``; every operation is one ``BEGIN IMMEDIATE`` transaction, except that
a query run's history row (``record_query``) is committed with ``synchronous=NORMAL`` (no fsync: durable
against a process crash, not a machine crash): the run's audit entry, committed with an fsync just before it,
is its durable record, and ``coordinator.record.recover_history`` restores lost rows from it at start-up, so
recording a query costs one fsync, not two. Reviews,
revocations, the revocation epoch, studies' signed proposals and grants, and query history are append-only
or write-once, enforced by triggers (the tables and triggers are ``coordinator.state.schema``). Expiry is
derived from the clock at every operation and stored then.

Threading model: a ``SqliteCoordinatorState`` is shared by all threads of a process. It owns one ``sqlite3``
connection (``check_same_thread=False``) guarded by one ``threading.Lock`` held for the whole of each
transaction, so calls run one at a time (reads too: each may store an expiry). Across processes SQLite's
write lock serialises ``BEGIN IMMEDIATE``; a caller that cannot get it within ``busy_timeout_s`` gets
``Unavailable`` and nothing changed.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from google.protobuf.message import DecodeError

from coordinator.model import CommitteeMember, QueryRecord, StateSummary
from coordinator.preview import (
    SiteCaps,
    epsilon_decimal,
    grant_body,
    over_researcher_caps,
    proposal_problems,
    study_assembly,
    study_epsilon_at,
)
from coordinator.state.schema import APPLICATION_ID, MIGRATIONS, SCHEMA, SCHEMA_VERSION
from genogate.convert import grant_terms_to_pb, proposal_from_pb
from genogate.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from genogate.genome import BUILDS
from genogate.query import Kind
from genogate.signing import Signer, key_id, verify
from genogate.sqlitedb import open_database, read_only, reopen, statements, transaction
from genogate.studies import (
    NodeInfo,
    NodeUpdate,
    Researcher,
    Review,
    SignedProposal,
    SignedRevocationList,
    Study,
    StudyGrant,
    StudyState,
)
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb

MAX_PROPOSAL_BYTES = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # used with fullmatch: "$" would allow "\n"
_ENDPOINT_RE = re.compile(r"(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
APPROVE, REJECT, REVOKE = cpb.REVIEW_DECISION_APPROVE, cpb.REVIEW_DECISION_REJECT, cpb.REVIEW_DECISION_REVOKE

_STATES = frozenset(s.value for s in StudyState)
_STUDY_COLS = (
    "study_id, proposal, researcher_signature, proposal_sha256, state, approvals_required,"
    " grant_payload, grant_signature, grant_key_id, created_ms, updated_ms"
)


def _invalid(detail: str, what: str = "study proposal") -> InvalidArgument:
    return InvalidArgument(detail, reason=Reason.INVALID_STUDY, message=f"the {what} is invalid")


def _exists(detail: str, message: str) -> AlreadyExists:
    return AlreadyExists(detail, reason=Reason.ALREADY_EXISTS, message=message)


def _precondition(detail: str, message: str = "the study's state does not allow this") -> FailedPrecondition:
    return FailedPrecondition(detail, message=message)


def _not_found(study_id: str) -> NotFound:
    """NOT_FOUND for a study id, echoing the id asked (cut: it is the caller's text)."""
    return NotFound(
        f"no study {study_id!r}",
        message=f"the study does not exist: no study {study_id[:64]!r} at this coordinator"
        " ('genogate study list' shows yours)",
    )


def _no_researcher(fingerprint: str) -> str:
    return (
        f"the researcher key is not registered: no researcher key with fingerprint {fingerprint[:64]!r} at this"
        " coordinator (an operator registers it with 'genogate researchers register')"
    )


_REGISTRY = {  # table: (primary key, public message when the key is taken with other details)
    "researchers": ("key_fingerprint", "this researcher key is already registered"),
    "committee": ("key_id", "this committee key is already registered"),
}


def _builds(conn: sqlite3.Connection) -> dict[str, str]:
    """Each registered site's genome build."""
    return {str(n): str(b) for n, b in conn.execute("SELECT name, genome_build FROM nodes")}


def _register(conn: sqlite3.Connection, table: str, row: tuple[object, ...], now: int) -> int:
    """Insert a registry row (key first, time last), or return the registered time of an identical one."""
    pk, message = _REGISTRY[table]
    old = conn.execute(f"SELECT * FROM {table} WHERE {pk} = ?", (row[0],)).fetchone()
    if old is None:
        conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * (len(row) + 1))})", (*row, now))
        return now
    if tuple(old[:-1]) != row:
        raise _exists(f"{table}: {row[0]!r} is registered with other details", message)
    return int(old[-1])


_NODE_COLS = "name, endpoint, cert_sha256, genome_build, registered_ms, ca_sha256, version, updated_ms"


def _node_of(row: Sequence[object]) -> NodeInfo:
    n, e, c, b, ms, ca, v, upd = row
    return NodeInfo(
        str(n),
        str(e),
        str(c),
        str(b),
        int(str(ms)),
        ca_sha256=str(ca),
        version=int(str(v)),
        updated_unix_ms=int(str(upd)),
    )


def _node(conn: sqlite3.Connection, name: str) -> NodeInfo | None:
    row = conn.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE name = ?", (name,)).fetchone()
    return None if row is None else _node_of(row)


def _details(node: NodeInfo) -> tuple[str, str, str, str, str]:
    """What a registration says (what ``register_node`` compares and ``update_node`` changes)."""
    return (node.name, node.endpoint, node.cert_sha256, node.ca_sha256, node.genome_build)


def _node_not_found(name: str) -> NotFound:
    return NotFound(f"no node {name!r}", message=f"no node named {name[:64]!r} is registered")


def _check_node(node: NodeInfo) -> None:
    """Refuse (INVALID_STUDY, every problem at once) a registration that cannot be one."""
    port = _ENDPOINT_RE.fullmatch(node.endpoint)
    pins = [p for p in (node.cert_sha256, node.ca_sha256) if p]
    checks = (
        (_NAME_RE.fullmatch(node.name), "name must be 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)"),
        (port and 1 <= int(port.group(1)) <= 65535, "endpoint must be host:port"),
        (len(pins) == 1, "exactly one pin: cert_sha256 (one certificate) or ca_sha256 (the issuing CA)"),
        (all(_SHA256_RE.fullmatch(p) for p in pins), "cert_sha256 and ca_sha256 must be 64 lowercase hex digits"),
        (node.genome_build in BUILDS, f"genome_build must be one of {', '.join(BUILDS)}"),
    )
    if problems := [msg for ok, msg in checks if not ok]:
        raise _invalid("; ".join(problems), "node registration")


def _studies_naming(conn: sqlite3.Connection, site: str) -> list[str]:
    """The PROPOSED and APPROVED (in force: expiries are stored before every call) studies naming ``site``."""
    out = []
    for study_id, proposal, grant in conn.execute(
        "SELECT study_id, proposal, grant_payload FROM studies WHERE state IN ('PROPOSED', 'APPROVED')"
        " ORDER BY study_id"
    ):
        sites = (pb.GrantBody if grant is not None else cpb.StudyProposal).FromString(bytes(grant or proposal)).sites
        if site in sites:
            out.append(str(study_id))
    return out


class SqliteCoordinatorState:
    """The coordinator's state in one SQLite file (see the module docstring for guarantees and threading).

    ``approvals_required`` (k) applies to studies proposed from now on; each study keeps the k it was
    proposed under. ``clock`` returns seconds since the Unix epoch (injectable for tests)."""

    def __init__(
        self,
        path: Path,
        committee_signer: Signer,
        approvals_required: int,
        clock: Callable[[], float] = time.time,
        *,
        busy_timeout_s: float = 10.0,
    ) -> None:
        if isinstance(approvals_required, bool) or not isinstance(approvals_required, int) or approvals_required < 1:
            raise ValueError(f"approvals_required must be an int >= 1, got {approvals_required!r}")
        self.path = Path(path)
        self._signer = committee_signer
        self._k = approvals_required
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_database(
            self.path,
            what="coordinator state",
            application_id=APPLICATION_ID,
            schema_version=SCHEMA_VERSION,
            schema=statements(SCHEMA),
            busy_timeout_s=busy_timeout_s,
            migrations=MIGRATIONS,
        )
        try:
            # Query history rows are committed through this one, without an fsync (see the module docstring).
            self._lazy: sqlite3.Connection | None = reopen(
                self.path, what="coordinator state", synchronous="NORMAL", busy_timeout_s=busy_timeout_s
            )
        except BaseException:
            self._conn.close()
            raise

    @contextlib.contextmanager
    def _tx(self, doing: str, *, durable: bool = True) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction under the lock, with the current time in ms; grants whose ``not_after`` has
        passed are marked EXPIRED first, so every operation sees the derived state (and stores it).
        ``durable=False``: committed without an fsync (query history only)."""
        connection = (lambda: self._conn) if durable else (lambda: self._lazy)
        with transaction(connection, self._lock, what="coordinator state", doing=doing, path=self.path) as conn:
            now = int(self._clock() * 1000)
            conn.execute(
                "UPDATE studies SET state = 'EXPIRED', updated_ms = not_after_ms"
                " WHERE state = 'APPROVED' AND not_after_ms <= ?",
                (now,),
            )
            yield conn, now

    # Registry ------------------------------------------------------------------------------------------------

    def register_node(self, node: NodeInfo) -> NodeInfo:
        """Register a node (``registered_unix_ms``, ``version`` and ``updated_unix_ms`` ignored) at version 1.
        The same details again return the entry; other details under a registered name are refused
        (ALREADY_EXISTS: ``update_node`` changes a registration)."""
        _check_node(node)
        with self._tx("registering a node") as (conn, now):
            old = _node(conn, node.name)
            if old is None:
                conn.execute(
                    f"INSERT INTO nodes ({_NODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                    (node.name, node.endpoint, node.cert_sha256, node.genome_build, now, node.ca_sha256, now),
                )
                return dataclasses.replace(node, registered_unix_ms=now, version=1, updated_unix_ms=now)
        if _details(old) != _details(node):
            raise _exists(
                f"nodes: {node.name!r} is registered with other details",
                f"a node named {node.name} is already registered (change it with 'genogate nodes update')",
            )
        return old

    def update_node(self, update: NodeUpdate) -> tuple[NodeInfo, NodeInfo]:
        """Change a registered node as ``update`` says (``update.apply``); returns the registration before and
        after. A change steps ``version`` and sets ``updated_unix_ms``; an update that changes nothing returns
        the registration twice, unchanged. ``NotFound`` for a name not registered."""
        with self._tx("updating a node") as (conn, now):
            old = _node(conn, update.name)
            if old is None:
                raise _node_not_found(update.name)
            new = update.apply(old)
            _check_node(new)
            if _details(new) == _details(old):
                return old, old
            new = dataclasses.replace(new, version=old.version + 1, updated_unix_ms=now)
            conn.execute(
                "UPDATE nodes SET endpoint = ?, cert_sha256 = ?, ca_sha256 = ?, genome_build = ?, version = ?,"
                " updated_ms = ? WHERE name = ?",
                (new.endpoint, new.cert_sha256, new.ca_sha256, new.genome_build, new.version, now, new.name),
            )
        return old, new

    def remove_node(self, name: str, force: bool = False) -> tuple[NodeInfo, builtins.list[str]]:
        """Remove a registered node; returns its registration and the active studies (PROPOSED, or APPROVED and
        unexpired) that name it. While there are any, removal is refused (FAILED_PRECONDITION, naming them)
        unless ``force``. ``NotFound`` for a name not registered. The name may be registered again afterwards."""
        with self._tx("removing a node") as (conn, _):
            old = _node(conn, name)
            if old is None:
                raise _node_not_found(name)
            naming = _studies_naming(conn, name)
            if naming and not force:
                listed = ", ".join(naming[:10]) + (f" and {len(naming) - 10} more" if len(naming) > 10 else "")
                raise FailedPrecondition(
                    f"{name}: named by {', '.join(naming)}",
                    message=f"{len(naming)} active {'study names' if len(naming) == 1 else 'studies name'} the node "
                    f"{name}: {listed}; revoke or reject them first, or remove it anyway with --force (their "
                    "queries then report the site as not registered while the other sites answer)",
                )
            conn.execute("DELETE FROM nodes WHERE name = ?", (name,))
        return old, naming

    def list_nodes(self) -> builtins.list[NodeInfo]:
        """Registered nodes, by name."""
        with self._tx("listing nodes") as (conn, _):
            rows = conn.execute(f"SELECT {_NODE_COLS} FROM nodes ORDER BY name").fetchall()
        return [_node_of(r) for r in rows]

    def register_researcher(self, name: str, affiliation: str, public_key: bytes) -> Researcher:
        """Register a researcher's raw Ed25519 key; the same details again return the existing entry."""
        if not name.strip() or len(name) > 200 or len(affiliation) > 200 or len(public_key) != 32:
            raise _invalid("need a name, an affiliation of at most 200 characters and a 32-byte key", "registration")
        fp, key = key_id(bytes(public_key)), bytes(public_key)
        with self._tx("registering a researcher") as (conn, now):
            ms = _register(conn, "researchers", (fp, name, affiliation, key), now)
        return Researcher(name, affiliation, key, fp, ms)

    def add_committee_member(self, name: str, public_key: bytes) -> CommitteeMember:
        """Add a reviewer key to the committee; the same details again return the existing member."""
        if not name.strip() or len(name) > 200 or len(public_key) != 32:
            raise _invalid("need a name of at most 200 characters and a 32-byte key", "committee member")
        kid, key = key_id(bytes(public_key)), bytes(public_key)
        with self._tx("adding a committee member") as (conn, now):
            ms = _register(conn, "committee", (kid, name, key), now)
        return CommitteeMember(name, key, kid, ms)

    def committee(self) -> builtins.list[CommitteeMember]:
        """The committee's reviewers, by name."""
        with self._tx("listing the committee") as (conn, _):
            rows = conn.execute("SELECT name, public_key, key_id, added_ms FROM committee ORDER BY name, key_id")
            return [CommitteeMember(n, bytes(k), i, ms) for n, k, i, ms in rows.fetchall()]

    # Studies -------------------------------------------------------------------------------------------------

    def propose(self, signed: SignedProposal) -> Study:
        """Record a researcher-signed proposal as a PROPOSED study with id ``S-`` + 12 hex digits of the
        payload's SHA-256. The same payload again returns that study, in whatever state it is now."""
        payload = signed.payload
        if len(payload) > MAX_PROPOSAL_BYTES:
            raise _invalid(f"the proposal is {len(payload)} bytes; at most {MAX_PROPOSAL_BYTES}")
        try:
            proposal = proposal_from_pb(cpb.StudyProposal.FromString(payload))
        except DecodeError:
            raise _invalid("the payload is not a StudyProposal") from None
        fp = proposal.researcher_key_fingerprint
        digest = hashlib.sha256(payload).digest()
        study_id = "S-" + digest.hex()[:12]
        with self._tx("recording a proposal") as (conn, now):
            row = conn.execute("SELECT public_key FROM researchers WHERE key_fingerprint = ?", (fp,)).fetchone()
            if row is None:
                raise PermissionDenied(f"researcher key {fp!r} is not registered", message=_no_researcher(fp))
            verify(bytes(row[0]), "genogate.v1.StudyProposal", payload, signed.researcher_signature)
            builds = _builds(conn)
            if problems := proposal_problems(proposal, builds):
                # The researcher is told a genome-build conflict (the registered builds of the sites they named):
                # without it a proposal across builds cannot be fixed. Other problems stay in the detail.
                said = "; ".join(study_assembly(proposal, builds)[1])
                raise InvalidArgument(
                    "; ".join(problems),
                    reason=Reason.INVALID_STUDY,
                    message="the study proposal is invalid" + (f": {said}" if said else ""),
                )
            old = conn.execute("SELECT proposal_sha256 FROM studies WHERE study_id = ?", (study_id,)).fetchone()
            if old is None:
                conn.execute(
                    "INSERT INTO studies (study_id, proposal, researcher_signature, proposal_sha256,"
                    " researcher_key_fingerprint, state, approvals_required, created_ms, updated_ms)"
                    " VALUES (?, ?, ?, ?, ?, 'PROPOSED', ?, ?, ?)",
                    (study_id, payload, signed.researcher_signature, digest, fp, self._k, now, now),
                )
            elif bytes(old[0]) != digest:  # two payloads sharing 48 bits of hash
                raise _exists(f"study id {study_id} is taken by another proposal", "a study with this id exists")
            return self._study(conn, study_id)

    def committed(self, fingerprint: str, caps: Mapping[str, SiteCaps] | None = None) -> dict[str, Decimal]:
        """Per site, the ε the researcher's APPROVED (so unrevoked, unexpired) studies may spend there: the sum
        of each grant's ``epsilon_total`` capped by the site's per-study cap in ``caps`` where known."""
        with self._tx("reading committed budgets") as (conn, _):
            return self._committed(conn, fingerprint, caps or {})

    def _committed(
        self, conn: sqlite3.Connection, fingerprint: str, caps: Mapping[str, SiteCaps]
    ) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        rows = conn.execute(
            "SELECT grant_payload FROM studies WHERE researcher_key_fingerprint = ? AND state = 'APPROVED'",
            (fingerprint,),
        )
        for (payload,) in rows:
            grant = pb.GrantBody.FromString(bytes(payload))
            total = epsilon_decimal(grant.epsilon_total)
            if total is None:
                continue
            for site in dict.fromkeys(grant.sites):
                out[site] = out.get(site, Decimal(0)) + study_epsilon_at(total, caps.get(site))
        return out

    def review(self, review: Review, caps: Mapping[str, SiteCaps] | None = None) -> Study:
        """A committee member's APPROVE or REJECT of a PROPOSED study. One REJECT rejects; the k-th APPROVE
        issues the committee-signed grant. Resending an identical, already recorded review returns the study.

        ``caps``: what the study's sites publish about their budgets. An APPROVE is refused
        (FAILED_PRECONDITION, naming the site and the numbers) when the researcher's committed ε at a site
        plus this study's would exceed the site's per-researcher cap (``preview.over_researcher_caps``)."""
        caps = caps or {}
        with self._tx("recording a review") as (conn, now):
            body, state = self._checked_review(conn, review, (APPROVE, REJECT))
            if self._recorded(conn, review, body):
                return self._study(conn, body.study_id)
            voted = conn.execute(
                "SELECT 1 FROM reviews WHERE study_id = ? AND reviewer_key_id = ? AND decision IN (?, ?)",
                (body.study_id, review.reviewer_key_id, APPROVE, REJECT),
            ).fetchone()
            if voted is not None:
                raise _exists(
                    f"{review.reviewer_key_id} already voted on {body.study_id}",
                    "the reviewer has already voted on this study",
                )
            if state != "PROPOSED":
                raise _precondition(f"study {body.study_id} is {state}, not PROPOSED")
            if body.decision == APPROVE:
                self._check_researcher_caps(conn, body.study_id, caps)
            self._insert_review(conn, review, body, now)
            if body.decision == REJECT:
                self._set_state(conn, body.study_id, "REJECTED", now)
            else:
                self._maybe_grant(conn, body.study_id, now, caps)
            return self._study(conn, body.study_id)

    def revoke(self, review: Review) -> tuple[Study, int]:
        """A committee member's REVOKE of an APPROVED study: state REVOKED, the revocation epoch advances.
        Returns the study and the epoch that includes this revocation (an identical resend returns the same)."""
        with self._tx("revoking a study") as (conn, now):
            body, state = self._checked_review(conn, review, (REVOKE,))
            if not self._recorded(conn, review, body):
                if state != "APPROVED":
                    raise _precondition(f"study {body.study_id} is {state}, not APPROVED")
                conn.execute("UPDATE epoch SET value = value + 1")
                conn.execute("INSERT INTO revocations SELECT ?, value, ? FROM epoch", (body.study_id, now))
                self._insert_review(conn, review, body, now)
                self._set_state(conn, body.study_id, "REVOKED", now)
            epoch = conn.execute("SELECT epoch FROM revocations WHERE study_id = ?", (body.study_id,)).fetchone()
            return self._study(conn, body.study_id), int(epoch[0])

    def revocations(self) -> SignedRevocationList:
        """Every revoked study id (sorted) and the current epoch, signed now by the committee signer."""
        with self._tx("reading revocations") as (conn, now):
            ids = [r[0] for r in conn.execute("SELECT study_id FROM revocations ORDER BY study_id")]
            epoch = self._epoch(conn)
        body = cpb.RevocationList(revoked_study_ids=ids, epoch=epoch, issued_unix_ms=now)
        payload = body.SerializeToString(deterministic=True)
        signature = self._signer.sign("genogate.v1.RevocationList", payload)
        return SignedRevocationList(payload, signature, self._signer.key_id)

    def epoch(self) -> int:
        """The current revocation epoch (the number of revocations so far)."""
        with self._tx("reading the epoch") as (conn, _):
            return self._epoch(conn)

    def researcher_key(self, fingerprint: str) -> bytes:
        """The registered raw public key with this fingerprint (``NotFound`` if none)."""
        with self._tx("reading a researcher") as (conn, _):
            row = conn.execute("SELECT public_key FROM researchers WHERE key_fingerprint = ?", (fingerprint,))
            if (found := row.fetchone()) is None:
                raise NotFound(f"no researcher key {fingerprint!r}", message=_no_researcher(fingerprint))
            return bytes(found[0])

    def get(self, study_id: str) -> Study:
        """One study (``NotFound`` if unknown); EXPIRED once its grant's ``not_after_unix_ms`` has passed."""
        with self._tx("reading a study") as (conn, _):
            return self._study(conn, study_id)

    def list(self, state: StudyState | None = None, researcher: str | None = None) -> builtins.list[Study]:
        """Studies, newest first, filtered by ``state`` (None or 0: any) and ``researcher`` (a key fingerprint;
        empty or None: any)."""
        clauses, params = ["1"], []
        if state:
            if state not in _STATES:
                raise _invalid(f"unknown study state {state}", "study filter")
            clauses.append("state = ?")
            params.append(StudyState(state).name)
        if researcher:
            clauses.append("researcher_key_fingerprint = ?")
            params.append(researcher)
        with self._tx("listing studies") as (conn, _):
            rows = conn.execute(
                f"SELECT study_id FROM studies WHERE {' AND '.join(clauses)} ORDER BY created_ms DESC, rowid DESC",
                params,
            ).fetchall()
            return [self._study(conn, r[0]) for r in rows]

    # Query history -------------------------------------------------------------------------------------------

    def record_query(
        self,
        query_id: str,
        study_id: str,
        kind: Kind,
        epsilon: Decimal,
        sites: Sequence[str],
        outcomes: Mapping[str, str],
        *,
        audit_seq: int = 0,
        created_ms: int | None = None,
    ) -> QueryRecord:
        """Append one federated query run to the study's history: every run, retries included, with each
        targeted site's outcome (``outcomes``: site name to a short label such as "answered"), its audit entry's
        position and (default: now) its time. Committed without an fsync (the module docstring says why)."""
        if not 0 < len(query_id) <= 256 or not isinstance(kind, Kind):
            raise InvalidArgument(f"query id {query_id!r} (1-256 characters), kind {kind!r}")
        if isinstance(audit_seq, bool) or not isinstance(audit_seq, int) or audit_seq < 0:
            raise InvalidArgument(f"audit_seq={audit_seq!r}: a position in the audit log, or 0")
        if not isinstance(epsilon, Decimal) or not epsilon.is_finite() or epsilon <= 0:
            raise InvalidArgument(
                f"epsilon={epsilon}", reason=Reason.INVALID_EPSILON, message="epsilon must be a positive number"
            )
        record = QueryRecord(query_id, study_id, kind, epsilon, tuple(sites), dict(outcomes), 0)
        with self._tx("recording a query", durable=False) as (conn, now):
            self._state(conn, study_id)
            at = now if created_ms is None else created_ms
            conn.execute(
                "INSERT INTO queries (query_id, study_id, kind, epsilon, sites, outcomes, created_ms, audit_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    query_id,
                    study_id,
                    kind.value,
                    str(epsilon),
                    json.dumps(record.sites),
                    json.dumps(record.outcomes, sort_keys=True),
                    at,
                    audit_seq,
                ),
            )
        return dataclasses.replace(record, created_ms=at)

    def last_audit_seq(self) -> int:
        """The highest audit log position a recorded run names (0 if none)."""
        with self._tx("reading history") as (conn, _):
            return int(conn.execute("SELECT coalesce(max(audit_seq), 0) FROM queries").fetchone()[0])

    def history(self, study_id: str) -> builtins.list[QueryRecord]:
        """The study's recorded query runs, oldest first (``NotFound`` if the study is unknown)."""
        with self._tx("reading history") as (conn, _):
            self._state(conn, study_id)
            rows = conn.execute(
                "SELECT query_id, kind, epsilon, sites, outcomes, created_ms FROM queries WHERE study_id = ?"
                " ORDER BY seq",
                (study_id,),
            ).fetchall()
        return [
            QueryRecord(q, study_id, Kind(k), Decimal(e), tuple(json.loads(s)), json.loads(o), ms)
            for q, k, e, s, o, ms in rows
        ]

    # Internals -----------------------------------------------------------------------------------------------

    def _epoch(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM epoch").fetchone()[0])

    def _state(self, conn: sqlite3.Connection, study_id: str) -> str:
        row = conn.execute("SELECT state FROM studies WHERE study_id = ?", (study_id,)).fetchone()
        if row is None:
            raise _not_found(study_id)
        return str(row[0])

    def _set_state(self, conn: sqlite3.Connection, study_id: str, state: str, now: int) -> None:
        conn.execute("UPDATE studies SET state = ?, updated_ms = ? WHERE study_id = ?", (state, now, study_id))

    def _checked_review(
        self, conn: sqlite3.Connection, review: Review, decisions: tuple[int, ...]
    ) -> tuple[cpb.ReviewBody, str]:
        """Authenticate a review (committee key, then signature), parse it and match it to its study; return
        the body and the study's current state."""
        kid = review.reviewer_key_id
        row = conn.execute("SELECT public_key FROM committee WHERE key_id = ?", (kid,)).fetchone()
        if row is None:
            raise PermissionDenied(
                f"reviewer key {kid!r} is not a committee key",
                reason=Reason.UNTRUSTED_COMMITTEE,
                message="the reviewer key is not a committee key",
            )
        verify(bytes(row[0]), "genogate.v1.ReviewBody", review.payload, review.reviewer_signature)
        try:
            body = cpb.ReviewBody.FromString(review.payload)
        except DecodeError:
            raise _invalid("the payload is not a ReviewBody", "review") from None
        if body.decision not in decisions:
            raise _invalid(f"decision {body.decision} where {decisions} are allowed", "review")
        state = self._state(conn, body.study_id)
        sha = conn.execute("SELECT proposal_sha256 FROM studies WHERE study_id = ?", (body.study_id,)).fetchone()[0]
        if bytes(sha) != body.proposal_sha256:
            raise _precondition(
                f"the review of {body.study_id} covers another proposal",
                "the review does not cover the study's proposal",
            )
        return body, state

    def _recorded(self, conn: sqlite3.Connection, review: Review, body: cpb.ReviewBody) -> bool:
        """Whether exactly this signed review is already recorded (a resend)."""
        row = conn.execute(
            "SELECT 1 FROM reviews WHERE study_id = ? AND reviewer_key_id = ? AND payload = ? AND signature = ?",
            (body.study_id, review.reviewer_key_id, review.payload, review.reviewer_signature),
        )
        return row.fetchone() is not None

    def _insert_review(self, conn: sqlite3.Connection, review: Review, body: cpb.ReviewBody, now: int) -> None:
        conn.execute(
            "INSERT INTO reviews (study_id, reviewer_key_id, decision, payload, signature, received_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (body.study_id, review.reviewer_key_id, body.decision, review.payload, review.reviewer_signature, now),
        )

    def _check_researcher_caps(self, conn: sqlite3.Connection, study_id: str, caps: Mapping[str, SiteCaps]) -> None:
        payload, fp = conn.execute(
            "SELECT proposal, researcher_key_fingerprint FROM studies WHERE study_id = ?", (study_id,)
        ).fetchone()
        proposal = cpb.StudyProposal.FromString(bytes(payload))
        total = epsilon_decimal(proposal.epsilon_total_per_site)
        if total is None:
            return
        over = over_researcher_caps(total, list(proposal.sites), self._committed(conn, str(fp), caps), caps)
        if over:
            raise FailedPrecondition(
                f"{study_id}: {'; '.join(over)}",
                message="approving would exceed a site's cap on ε per researcher: " + "; ".join(over),
            )

    def _maybe_grant(
        self, conn: sqlite3.Connection, study_id: str, now: int, caps: Mapping[str, SiteCaps] | None = None
    ) -> None:
        """Issue the grant, valid from ``now``, once approvals reach the study's ``approvals_required``."""
        payload, k, key, approvals = conn.execute(
            "SELECT s.proposal, s.approvals_required, r.public_key,"
            " (SELECT count(*) FROM reviews v WHERE v.study_id = s.study_id AND v.decision = ?)"
            " FROM studies s JOIN researchers r ON r.key_fingerprint = s.researcher_key_fingerprint"
            " WHERE s.study_id = ?",
            (APPROVE, study_id),
        ).fetchone()
        if approvals < k:
            return
        proposal = proposal_from_pb(cpb.StudyProposal.FromString(bytes(payload)))
        assembly, problems = study_assembly(proposal, _builds(conn))
        if problems:  # a site was re-registered on another build since the proposal
            raise _precondition(f"{study_id}: {'; '.join(problems)}", "; ".join(problems))
        terms = grant_body(
            proposal,
            study_id=study_id,
            researcher_public_key=bytes(key),
            approved_ms=now,
            revocation_epoch=self._epoch(conn),
            assembly=assembly,
            caps=caps,
        )
        grant = grant_terms_to_pb(terms).SerializeToString(deterministic=True)  # the bytes the committee signs
        signature = self._signer.sign("genogate.v1.GrantBody", grant)
        conn.execute(
            "UPDATE studies SET state = 'APPROVED', grant_payload = ?, grant_signature = ?, grant_key_id = ?,"
            " not_after_ms = ?, updated_ms = ? WHERE study_id = ?",
            (grant, signature, self._signer.key_id, terms.not_after_unix_ms, now, study_id),
        )

    def _study(self, conn: sqlite3.Connection, study_id: str) -> Study:
        row = conn.execute(f"SELECT {_STUDY_COLS} FROM studies WHERE study_id = ?", (study_id,)).fetchone()
        if row is None:
            raise _not_found(study_id)
        sid, payload, sig, sha, state, k, g_payload, g_sig, g_key, created, updated = row
        reviews = conn.execute(
            "SELECT payload, signature, reviewer_key_id FROM reviews WHERE study_id = ? ORDER BY seq", (sid,)
        )
        proposal = proposal_from_pb(cpb.StudyProposal.FromString(bytes(payload)))
        if g_payload is not None:
            grant: StudyGrant | None = StudyGrant(bytes(g_payload), bytes(g_sig), str(g_key))
            assembly = pb.GrantBody.FromString(bytes(g_payload)).assembly
        else:
            grant, assembly = None, study_assembly(proposal, _builds(conn))[0]
        return Study(
            study_id=sid,
            proposal=proposal,
            signed_proposal=SignedProposal(bytes(payload), bytes(sig)),
            proposal_sha256=bytes(sha),
            state=StudyState[state],
            reviews=tuple(Review(bytes(p), bytes(s), r) for p, s, r in reviews),
            approvals_required=k,
            grant=grant,
            created_unix_ms=created,
            updated_unix_ms=updated,
            assembly=assembly,
        )

    def close(self) -> None:
        """Close the connection (idempotent; waits for a running call). Later calls raise ``StoreError``."""
        with self._lock:
            for conn in (self._lazy, self._conn):
                if conn is not None:
                    conn.close()
            self._conn = self._lazy = None

    def __enter__(self) -> SqliteCoordinatorState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_summary(path: Path) -> StateSummary:
    """The state file's summary for ``genogate-coordinator status``, read with the file opened read-only (a
    running coordinator may hold it open; nothing is created, locked for writing or stored, so expiries not
    yet stored by a call show as APPROVED). ``StoreError`` names the file when it is missing or unreadable."""

    def rows(sql: str) -> list[tuple[object, ...]]:
        return read_only(path, "coordinator state", sql, missing="the coordinator creates it when it first serves")

    studies = {
        str(s): int(str(n)) for s, n in rows("SELECT lower(state), count(*) FROM studies GROUP BY state ORDER BY state")
    }
    return StateSummary(
        studies=studies,
        researchers=int(str(rows("SELECT count(*) FROM researchers")[0][0])),
        queries=int(str(rows("SELECT count(*) FROM queries")[0][0])),
        nodes=tuple((str(n), str(e)) for n, e in rows("SELECT name, endpoint FROM nodes ORDER BY name")),
    )
