"""Federated queries at the coordinator: check the researcher's request, fan it out, combine, record.

The coordinator checks what it can before any site spends anything, cheapest and least trusting first:

1. the signed envelope is at most ``max_envelope_bytes`` (from ``[policy] max_variants_per_query``), refused
   before a byte of it is decoded (the server's gRPC limit refuses bigger requests before that);
2. the study id is read from the envelope's top-level wire fields alone (``study_id_of``: at most
   ``MAX_TOP_LEVEL_FIELDS`` of them, nothing nested is parsed), the study is approved and in force, and the
   envelope's bytes are signed by the researcher key its grant names: only then is the envelope decoded, once
   (``genogate.envelope``): every later check and the fan-out read the opened envelope;
3. the query is well formed; every site it names is a registered site (at most ``MAX_SITES``, checked
   against the registry before a name reaches a log field, a metric label or the state), and the grant's;
4. its ε is at least every target site's floor (``epsilon_per_query_min`` in the site's GetNodeInfo, else
   the coordinator's ``[policy] epsilon_per_query_min``), so a tiny ε cannot charge every site and return
   nothing; every ancestry label its filters name is published by at least one of those sites
   (``_check_labels``). Then every targeted site gets the same signed bytes with the committee's grant
(``coordinator.fanout``, which is handed the opened envelope and sends its bytes unchanged), and the answers
are combined (``coordinator.combine``). Nodes check all of this again and decide for themselves; the
coordinator's checks only save them the work.

Every run is appended to the coordinator's audit log (who asked, the study, the request's hash, each site's
outcome with the digests and signature of the node-signed receipt of each release, the combination's digest)
and to the study's history (``coordinator.record``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from coordinator.combine import combine_results
from coordinator.fanout import FanOut, SiteResult, refused
from coordinator.preview import MAX_SITES, SITE_NAME_RE, caps_of
from coordinator.record import record_run, run_query_entry
from coordinator.state import CoordinatorState
from genogate import metrics, varint
from genogate.audit import AuditLog
from genogate.convert import grant_to_pb
from genogate.envelope import receive
from genogate.errors import (
    FailedPrecondition,
    GenogateError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unauthenticated,
    name_list,
    number,
)
from genogate.kinds import canonical, combined_to_pb, filters_of, result_from_pb
from genogate.ontology import canonical_label
from genogate.query import AncestryIn, And, Filter, Not, Or, Query
from genogate.rpc import max_envelope_bytes
from genogate.studies import NodeInfo, StudyState
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import node_pb2 as npb

_STATUS_LABEL: dict[int, str] = {
    pb.SITE_STATUS_ANSWERED: "answered",
    pb.SITE_STATUS_TIMED_OUT: "timed_out",
    pb.SITE_STATUS_REFUSED: "refused",
    pb.SITE_STATUS_FAILED: "failed",
}
_NOT_IN_FORCE = {
    StudyState.PROPOSED: (Reason.GRANT_MISSING, "the study is not approved"),
    StudyState.REJECTED: (Reason.GRANT_MISSING, "the study was rejected"),
    StudyState.REVOKED: (Reason.GRANT_REVOKED, "the study grant has been revoked"),
    StudyState.EXPIRED: (Reason.GRANT_EXPIRED, "the study grant has expired"),
}


MAX_TOP_LEVEL_FIELDS = MAX_SITES + 16
"""Most top-level wire fields an envelope may have (eight fields, ``sites`` repeated up to MAX_SITES)."""


def status_label(status: int) -> str:
    return _STATUS_LABEL.get(int(status), "failed")


def study_id_of(payload: bytes) -> str:
    """The ``study_id`` (field 2) of a serialized ``QueryEnvelope``, read from its top-level fields without
    parsing anything nested (the last occurrence wins, as in protobuf). Raises ``InvalidArgument`` for
    malformed wire data or more than ``MAX_TOP_LEVEL_FIELDS`` fields, so the work is bounded by that count."""
    found = b""
    i = fields = 0
    try:
        while i < len(payload):
            fields += 1
            if fields > MAX_TOP_LEVEL_FIELDS:
                raise ValueError("too many fields")
            key, i = varint.read(payload, i)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, i = varint.read(payload, i)
            elif wire_type == 1:
                i += 8
            elif wire_type == 5:
                i += 4
            elif wire_type == 2:
                length, i = varint.read(payload, i)
                if number == 2:
                    found = payload[i : i + length]
                i += length
            else:
                raise ValueError(f"wire type {wire_type}")
            if i > len(payload) or number == 0:
                raise ValueError("truncated")
        return found.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("undecodable query envelope", message="the query envelope is malformed") from None


@dataclass(frozen=True)
class QueryLimits:
    """The coordinator's limits on what it fans out (``[policy]``)."""

    epsilon_per_query_min: Decimal = Decimal("0.001")
    max_variants_per_query: int = 10_000

    @property
    def max_envelope_bytes(self) -> int:
        return max_envelope_bytes(self.max_variants_per_query)


class FederatedQueries:
    def __init__(
        self,
        state: CoordinatorState,
        fanout: FanOut,
        audit: AuditLog,
        *,
        clock: Callable[[], float] = time.time,
        limits: QueryLimits = QueryLimits(),  # noqa: B008 - frozen
    ):
        self.state = state
        self.fanout = fanout
        self.audit = audit
        self._clock = clock
        self.limits = limits
        self.decoded = 0
        """Envelopes decoded so far (after their size and signature passed): what tests watch."""

    def _study(self, study_id: str) -> tuple[pb.StudyGrant, pb.GrantBody]:
        """The study's signed grant (as forwarded to nodes) and its body, if the study is in force."""
        study = self.state.get(study_id)
        if study.state != StudyState.APPROVED or study.grant is None:
            reason, message = _NOT_IN_FORCE.get(study.state, (Reason.GRANT_MISSING, "the study has no grant"))
            raise PermissionDenied(
                study_id, reason=reason, message=f"{message}: study {study_id[:64]} is {study.state.name.lower()}"
            )
        return grant_to_pb(study.grant), pb.GrantBody.FromString(study.grant.payload)

    def _too_large(self, size: int) -> InvalidArgument:
        return InvalidArgument(
            f"envelope of {size} bytes",
            message=f"the query envelope is larger than the coordinator accepts ({self.limits.max_envelope_bytes} "
            f"bytes, for {self.limits.max_variants_per_query} variants)",
        )

    def run(self, caller: str, request: cpb.RunQueryRequest) -> cpb.RunQueryResponse:
        signed = request.signed_query
        received = receive(
            signed.payload,
            signed.researcher_signature,
            max_bytes=self.limits.max_envelope_bytes,
            too_large=self._too_large,
        )
        study_id = study_id_of(received.payload)
        if not study_id:
            raise InvalidArgument("the envelope names no study", reason=Reason.INVALID_STUDY)
        signed_grant, grant = self._study(study_id)
        # The one decode of this envelope in the coordinator: what follows, the fan-out included, reads it.
        try:
            opened = received.open(grant.researcher_public_key)
        except Unauthenticated:
            raise Unauthenticated(
                "researcher signature",
                reason=Reason.BAD_SIGNATURE,
                message="the query is not signed by the study's researcher",
            ) from None
        except GenogateError:
            self.decoded += 1  # signed by the researcher, but not an envelope
            raise
        self.decoded += 1
        env = opened.envelope
        if env.study_id != study_id or not env.query_id:
            raise InvalidArgument("the envelope names no query id", reason=Reason.INVALID_STUDY)
        query = opened.query  # malformed queries stop here, before any site is asked
        kind = query.kind
        epsilon = opened.epsilon
        if env.assembly and env.assembly != grant.assembly:
            raise FailedPrecondition(
                f"query {env.assembly}, study {grant.assembly}",
                reason=Reason.WRONG_ASSEMBLY,
                message=f"the query is on {env.assembly[:20]}; the study's sites are on {grant.assembly or 'no build'}",
            )
        canonical(query, grant.assembly or None)  # a RefSeq accession of another build stops here too
        registered = {n.name: n for n in self.state.list_nodes()}
        targets = self._targets(env, grant, registered)
        granted = set(grant.sites)
        results: dict[str, SiteResult] = {}
        to_ask = []
        for site in targets:
            if site not in granted:
                results[site] = refused(site, not_granted(site, grant))
            elif site not in registered:
                results[site] = refused(site, not_registered(site))
            else:
                to_ask.append(registered[site])
        self._check_floor(epsilon, to_ask, request.site_timeout_ms)
        self._check_labels(query, to_ask, request.site_timeout_ms)
        started = time.monotonic()
        asked = self.fanout.run(to_ask, opened, signed_grant, timeout_ms=request.site_timeout_ms)
        for r in asked:
            results[r.site] = r
        ordered = [results[site] for site in targets]
        answered = [r for r in ordered if r.status == pb.SITE_STATUS_ANSWERED and r.body is not None]
        try:
            # The sites' signed results as domain results, combined, and back to the wire (the edge).
            combined = combine_results([result_from_pb(r.body.result) for r in answered if r.body is not None])
        except ValueError as exc:  # sites disagree on the question itself: nothing sound to combine
            raise FailedPrecondition(str(exc), message="the sites' answers cannot be combined") from None
        response = cpb.RunQueryResponse(
            query_id=env.query_id,
            study_id=env.study_id,
            kind=kind.value,  # type: ignore[arg-type]
            epsilon=env.epsilon,
            sites=[r.to_pb(with_release=grant.per_site_breakdown) for r in ordered],
        )
        if combined is not None:
            response.combined.CopyFrom(combined_to_pb(combined))
        response.charge_note = charge_note(ordered)
        self._record(caller, opened.payload, env, kind.label, epsilon, grant, ordered, response)
        metrics.coordinator_query(
            kind.label,
            time.monotonic() - started,
            [
                metrics.SiteOutcome(
                    r.site,
                    status_label(r.status),
                    r.reason.name if r.reason != Reason.UNSPECIFIED else "",
                    r.latency_ms / 1000,
                    r.epsilon_charged,
                )
                for r in ordered
            ],
        )
        return response

    def _targets(self, env: pb.QueryEnvelope, grant: pb.GrantBody, registered: dict[str, NodeInfo]) -> list[str]:
        """The sites the query targets (the envelope's, else the grant's). Every name the envelope gives must be
        a registered site, at most ``MAX_SITES`` of them: anything else is refused here, naming none of them,
        before a caller-chosen name reaches the state, a log field or a metric label."""
        if not env.sites:
            return list(dict.fromkeys(grant.sites))
        names = list(dict.fromkeys(env.sites))
        if len(names) > MAX_SITES:
            raise InvalidArgument(f"{len(names)} sites", message=f"a query may name at most {MAX_SITES} sites")
        unknown = [s for s in names if s not in registered or not SITE_NAME_RE.fullmatch(s)]
        if unknown:
            # The message echoes a name only if it looks like a site name (at most 64 characters of [A-Za-z0-9._-]),
            # and names the study's own sites: a typo in --sites is answered with the names to choose from.
            shown = [s for s in unknown if SITE_NAME_RE.fullmatch(s)]
            said = f": {name_list(shown, most=5)}" if len(shown) == len(unknown) else ""
            raise InvalidArgument(
                f"{len(unknown)} unregistered site names",
                message=f"{len(unknown)} of the {len(names)} site names the query gives "
                f"{'is' if len(unknown) == 1 else 'are'} not a registered site{said}; the study's sites are "
                f"{name_list(dict.fromkeys(grant.sites))}",
            )
        return names

    def _check_floor(self, epsilon: Decimal, nodes: Sequence[NodeInfo], timeout_ms: int) -> None:
        """Refuse (INVALID_EPSILON) before any site is asked a query whose ε is below a target site's floor (as
        the site publishes it; the coordinator's ``[policy] epsilon_per_query_min`` where it does not say)."""
        if not nodes:
            return
        infos = self.fanout.infos(nodes, timeout_ms=timeout_ms)
        below = []
        for node, info in zip(nodes, infos, strict=True):
            floor = caps_of(info).per_query_min or self.limits.epsilon_per_query_min
            if epsilon < floor:
                below.append(f"{node.name} {floor}")
        if below:
            raise InvalidArgument(
                f"epsilon {epsilon} below {', '.join(below)}",
                reason=Reason.INVALID_EPSILON,
                message=f"epsilon {number(epsilon)} is below the floor on ε per query of "
                f"{', '.join(below)}; nothing was asked or charged",
            )

    def _check_labels(self, query: Query, nodes: Sequence[NodeInfo], timeout_ms: int) -> None:
        """Refuse (UNKNOWN_LABEL) a filter naming an ancestry label that no site of the study publishes.

        Decided from the labels the sites publish in GetNodeInfo (cached), never from answers. A site that
        cannot be asked does not block the check: the labels of the sites that answered decide, and the
        message says which sites were not heard from (they would fail the query itself anyway). When no site
        answers, nothing is refused here and each site's outcome is reported as usual. A label a site has but
        that the study's consented cohort lacks is not refused: that would depend on the data.
        """
        wanted: set[str] = set()
        for f in filters_of(query):
            wanted |= _ancestry_labels(f)
        if not wanted or not nodes:
            return
        infos = self.fanout.infos(nodes, timeout_ms=timeout_ms)
        published = [
            set(ls.labels) for info in infos if info is not None for ls in info.labels if ls.attribute == "ancestry"
        ]
        if not published:
            return
        known = set().union(*published)
        missing = sorted(wanted - known)
        if missing:
            silent = [n.name for n, info in zip(nodes, infos, strict=True) if info is None]
            note = f" (sites not heard from: {', '.join(silent)})" if silent else ""
            raise InvalidArgument(
                f"ancestry {', '.join(missing)}",
                reason=Reason.UNKNOWN_LABEL,
                message=f"ancestry {', '.join(missing)} is not a label at any site of the study; the labels are: "
                f"{', '.join(sorted(known)) or '(none)'}{note}",
            )

    def _record(
        self,
        caller: str,
        payload: bytes,
        env: pb.QueryEnvelope,
        kind: str,
        epsilon: Decimal,
        grant: pb.GrantBody,
        ordered: Sequence[SiteResult],
        response: cpb.RunQueryResponse,
    ) -> None:
        """The run's audit entry (digests of the releases, not their values) and history row, for one fsync
        (``coordinator.record``)."""
        entry = run_query_entry(
            caller=caller,
            researcher_key=grant.researcher_key_fingerprint,
            payload=payload,
            env=env,
            kind=kind,
            epsilon=epsilon,
            ordered=ordered,
            status=status_label,
            combined=response.combined if response.HasField("combined") else None,
        )
        record_run(self.state, self.audit, entry, now_ms=int(self._clock() * 1000))

    def budgets(self, request: cpb.GetStudyBudgetRequest) -> list[cpb.SiteBudget]:
        signed_grant, grant = self._study(request.study_id)
        registered = {n.name: n for n in self.state.list_nodes()}
        targets = self._targets(pb.QueryEnvelope(sites=request.sites), grant, registered)
        out: dict[str, cpb.SiteBudget] = {}
        to_ask = []
        for site in targets:
            if site not in grant.sites or site not in registered:
                err = not_granted(site, grant) if site not in grant.sites else not_registered(site)
                out[site] = cpb.SiteBudget(
                    site=site,
                    status=pb.SITE_STATUS_REFUSED,
                    reason=err.reason.value,  # type: ignore[arg-type]
                    message=err.message,
                )
            else:
                to_ask.append(registered[site])
        for result, budget in self.fanout.budgets(
            to_ask, npb.GetBudgetRequest(study_id=request.study_id, grant=signed_grant)
        ):
            entry = cpb.SiteBudget(
                site=result.site,
                status=result.status,
                reason=int(result.reason),  # type: ignore[arg-type]
                message=result.message,
            )
            if budget is not None:
                entry.budget.CopyFrom(budget)
            out[result.site] = entry
        return [out[site] for site in targets]


def not_granted(site: str, grant: pb.GrantBody) -> PermissionDenied:
    """GRANT_WRONG_SITE for a registered site the study's grant does not name, naming the study's sites."""
    return PermissionDenied(
        site,
        reason=Reason.GRANT_WRONG_SITE,
        message=f"the grant does not name this site: the study's sites are {name_list(dict.fromkeys(grant.sites))}",
    )


def not_registered(site: str) -> NotFound:
    """NOT_FOUND for a site the study's grant names but the registry no longer holds."""
    return NotFound(
        site,
        reason=Reason.NOT_FOUND,
        message=f"the site is not registered: the study's grant names {site}, which is not registered at this "
        "coordinator",
    )


def charge_note(ordered: Sequence[SiteResult]) -> str:
    """What the query charged, said plainly: which sites charged what, which answered from a stored release
    at no charge, which refused (a refusal charges nothing) and which did not answer (and may have charged:
    resending the same signed query returns their answer at no further cost)."""
    charged = [
        f"{r.site} ε {r.body.epsilon_charged:g}" for r in ordered if r.body is not None and r.body.epsilon_charged > 0
    ]
    stored = [
        f"{r.site} (stored at ε {r.body.original_epsilon_charged:g})"
        for r in ordered
        if r.body is not None and r.body.epsilon_charged <= 0
    ]
    refusals = [f"{r.site} ({r.reason.name.lower()})" for r in ordered if r.status == pb.SITE_STATUS_REFUSED]
    silent = [r.site for r in ordered if r.body is None and r.status != pb.SITE_STATUS_REFUSED]
    parts = [f"charged: {', '.join(charged)}" if charged else "no site charged anything"]
    if stored:
        parts.append(f"answered from a stored release at no charge: {', '.join(stored)}")
    if refusals:
        parts.append(f"refused, charging nothing: {', '.join(refusals)}")
    if silent:
        parts.append(
            f"no answer, may have charged (resend the same signed query to get its answer at no further cost): "
            f"{', '.join(silent)}"
        )
    return "; ".join(parts)


def _ancestry_labels(f: Filter) -> set[str]:
    """The canonical ancestry labels a filter names (under NOT too: a misspelt label is refused either way)."""
    if isinstance(f, AncestryIn):
        return {canonical_label(g) for g in f.groups}
    if isinstance(f, Not):
        return _ancestry_labels(f.item)
    if isinstance(f, And | Or):
        return set().union(*(_ancestry_labels(i) for i in f.items))
    return set()
