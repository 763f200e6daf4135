"""The node's policy and everything a query must pass before the node touches its store (steps 1 to 5 of
``node.service``).

``Policy`` holds the node's own limits (``[policy]`` in its config), ``Caller`` who is asking. ``Gate`` decides,
for one query: the envelope, decoded once and bounded in size before it is decoded or its signature checked
(``genogate.envelope``); who may ask for which study (a committee-signed grant, verified by ``node.grants``, or
a local study in force whose researchers name the caller's certificate); the study's purpose and kinds against
this node's policy; ε against the node's floor and the per-query caps; the canonical reduction of the query
(``genogate.kinds.canonical``) and the public refusals (``Catalogue``: assembly, contigs, coverage; the
ontologies' vocabulary); the variant count; the study's request rate; and the noise plans whose ε and δ the
ledger then charges. It also decides who may read a study's budget.

Invariant: every refusal here is decided from the envelope, the study, the policy and public information only,
never from the genotype data, and in the order ``node.service`` calls it (the refused-query timing test,
tests/statistical/test_refusal_timing.py, holds refusals of held and absent variants indistinguishable). The
one read of the store here is the list of sites in a region, which a node makes only when its policy declares
that list public (``Policy.public_site_catalogue``). Error reasons and messages are part of the contract.

Threading: one ``Gate`` serves every gRPC worker thread; the rate windows are guarded by a lock.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from genogate import privacy
from genogate.envelope import OpenedEnvelope, receive
from genogate.errors import InvalidArgument, PermissionDenied, Reason, ResourceExhausted, name_list, number
from genogate.kinds import KINDS, canonical, filters_of
from genogate.query import Kind, Query, Variant
from genogate.rpc import max_envelope_bytes
from genogate.wire.v1 import common_pb2 as pb
from node.backend import GenotypeBackend
from node.catalogue import Catalogue
from node.grants import GrantVerifier
from node.nonces import NonceClaim
from node.ontology import TermIndex
from node.studies import Study


@dataclass(frozen=True)
class Policy:
    """The node's own limits (from ``[policy]`` in its config)."""

    epsilon_per_query_cap: Decimal
    epsilon_per_study_cap: Decimal
    delta_per_query: Decimal
    delta_per_study_cap: Decimal
    min_reportable_count: int
    allowed_kinds: frozenset[Kind]
    allowed_purposes: frozenset[str]
    max_variants_per_query: int
    rate_limit_per_study_per_minute: int
    public_site_catalogue: bool
    epsilon_per_query_min: Decimal = Decimal("0.001")
    epsilon_per_researcher_cap: Decimal = Decimal("8")
    epsilon_per_node_cap: Decimal = Decimal("100")
    budget_period_days: int = 365
    preview_participants: bool = False

    def accepts(self, permission: str) -> bool:
        """Whether a study purpose's DUO permission (``DS-C50``, ``HMB``) is one this node accepts: listed, or
        any disease-specific one when ``DS`` is."""
        accepted = self.allowed_purposes
        return permission in accepted or (permission.startswith("DS-") and "DS" in accepted)

    def study_cap(self, study: Study) -> Decimal:
        """The ε a study may spend at this node: its own total, within the node's per-study cap."""
        return min(study.epsilon_total, self.epsilon_per_study_cap)


@dataclass(frozen=True)
class Caller:
    """Who is asking: the common name of the client certificate that mTLS verified."""

    common_name: str


@dataclass(frozen=True, slots=True)
class Asked:
    """An authorised request: its opened envelope, the study it is for and the researcher its charge is
    attributed to (a grant's researcher key fingerprint, or ``cn:<common name>`` for a local study)."""

    opened: OpenedEnvelope
    study: Study
    researcher: str
    nonce: NonceClaim | None = None
    """A signed query's nonce, checked and not yet recorded: recorded with the query's charge or refusal."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """A query that passed every check before the charge: its canonical form and the variants it releases
    values for (None for cohort counts; a region's: the node's public site list)."""

    query: Query
    variants: list[Variant] | None


@dataclass(frozen=True, slots=True)
class Charge:
    """A query's noise plans (one per release) and the ε and δ they spend together: what the ledger charges."""

    sens: list[privacy.Sensitivity]
    plans: list[privacy.NoisePlan]
    epsilon: Decimal
    delta: Decimal


class Gate:
    """Every check a query passes before the node touches its store, in ``node.service``'s order."""

    def __init__(
        self,
        *,
        name: str,
        policy: Policy,
        studies: Callable[[], Mapping[str, Study]],
        grants: GrantVerifier | None,
        catalogue: Catalogue,
        terms: TermIndex,
        backend: GenotypeBackend,
        clock: Callable[[], float],
        coordinator_common_name: str,
    ):
        self.name = name
        self.policy = policy
        self.coordinator_common_name = coordinator_common_name
        self._studies = studies
        self._grants = grants
        self._catalogue = catalogue
        self._terms = terms
        self._backend = backend  # read here only for a region's site list, when the policy makes it public
        self._clock = clock
        self._lock = threading.Lock()
        self._rates: dict[str, deque[float]] = {}

    # Steps 1 and 2: the envelope and who may ask ----------------------------------------------------------

    def authorise(
        self, caller: Caller, payload: bytes, grant: pb.StudyGrant | None, signature: bytes, entry: dict[str, object]
    ) -> Asked:
        """Decode the envelope once and authorise the caller for its study (under a grant: everything the grant
        verifier checks; else a local study's researcher), recording the study in the audit ``entry`` as soon as
        it is known on the local path."""
        # Bounded work before authentication: an envelope larger than the biggest query this node answers
        # could take is refused before it is decoded or its signature checked. It is decoded once
        # (``genogate.envelope``); everything below reads the opened envelope.
        received = receive(
            payload,
            signature,
            max_bytes=max_envelope_bytes(self.policy.max_variants_per_query),
            too_large=self._too_large,
        )
        if grant is not None and grant.payload:
            # The nonce is checked, and recorded in the ledger transaction that charges or refuses the query.
            verified = self.verifier().open(
                grant,
                received,
                caller=caller.common_name,
                coordinator_common_name=self.coordinator_common_name,
                defer_nonce=True,
            )
            opened, study = verified.opened, verified.study
            researcher = verified.grant.researcher_key_fingerprint
            opened.check_ids()
            self._check_purpose(study)
            return Asked(opened, study, researcher, verified.nonce)
        opened = received.open_unsigned()
        env = opened.envelope
        opened.check_ids()
        entry.update(study=env.study_id, query_id=env.query_id)
        study = self.local_study(caller, env.study_id)
        researcher = local_researcher(caller)
        if env.sites and self.name not in env.sites:
            raise PermissionDenied(
                "envelope does not name this site",
                reason=Reason.GRANT_WRONG_SITE,
                message=f"the query is not addressed to this site: this is {self.name}; the query names "
                f"{name_list(env.sites)}",
            )
        return Asked(opened, study, researcher)

    def _too_large(self, size: int) -> InvalidArgument:
        return InvalidArgument(
            f"envelope of {size} bytes > {max_envelope_bytes(self.policy.max_variants_per_query)}",
            reason=Reason.TOO_MANY_VARIANTS,
            message=f"the query is larger than this site answers (at most {self.policy.max_variants_per_query} "
            "variants per query)",
        )

    def verifier(self) -> GrantVerifier:
        """The grant verifier, or a refusal when the node trusts no committee keys."""
        if self._grants is None:
            raise PermissionDenied(
                "no committee keys configured",
                reason=Reason.UNTRUSTED_COMMITTEE,
                message="this node trusts no committee keys",
            )
        return self._grants

    def local_study(self, caller: Caller, study_id: str) -> Study:
        """A study of the node's trusted-studies file, in force, with the caller among its researchers and a
        purpose this node accepts."""
        study = self._studies().get(study_id)
        if study is None:
            raise no_grant(study_id)
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        if study.not_before is not None and now < study.not_before:
            raise PermissionDenied(
                study_id,
                reason=Reason.GRANT_NOT_YET_VALID,
                message=f"the study grant is not yet valid: study {study_id[:64]} starts at "
                f"{study.not_before:%Y-%m-%d %H:%M} UTC",
            )
        if study.not_after is not None and now >= study.not_after:
            raise PermissionDenied(
                study_id,
                reason=Reason.GRANT_EXPIRED,
                message=f"the study grant has expired: study {study_id[:64]} ended at "
                f"{study.not_after:%Y-%m-%d %H:%M} UTC",
            )
        if caller.common_name not in study.researchers:
            raise PermissionDenied(
                f"{caller.common_name!r} is not a researcher of {study_id!r}",
                reason=Reason.RESEARCHER_MISMATCH,
                message=f"the caller is not a researcher of this study: {caller.common_name[:64]} is not among the "
                f"researchers of study {study_id[:64]}",
            )
        self._check_purpose(study)
        return study

    def _check_purpose(self, study: Study) -> None:
        permission, accepted = study.purpose[0], self.policy.allowed_purposes
        if not self.policy.accepts(permission):
            raise PermissionDenied(
                f"purpose {study.purpose_text!r}",
                reason=Reason.PURPOSE_REFUSED,
                message="this node's policy does not accept the study's purpose: the study's purpose is "
                f"{permission[:64]}; this site accepts {name_list(sorted(accepted))}",
            )

    # Steps 3 and 4: caps, the canonical reduction, the public refusals -----------------------------------

    def admit(self, asked: Asked) -> Admitted:
        """In this order: ε at least the node's floor; the study and the node accept the kind; ε within the
        per-query caps; the canonical reduction (WRONG_ASSEMBLY, INVALID_FILTER) and the catalogue's and the
        ontologies' refusals; the variants and their count; the study's request rate."""
        policy, study, epsilon = self.policy, asked.study, asked.opened.epsilon
        cap = min(study.epsilon_per_query_cap, policy.epsilon_per_query_cap)
        if epsilon < policy.epsilon_per_query_min:  # decided from the request alone, before any charge
            floor = number(policy.epsilon_per_query_min)
            raise InvalidArgument(
                f"epsilon {epsilon} < floor {policy.epsilon_per_query_min}",
                reason=Reason.INVALID_EPSILON,
                message=f"epsilon {number(epsilon)} is below this site's floor of {floor} per query: this study may"
                f" ask from ε {floor} to ε {number(cap)} per query here",
            )
        query = asked.opened.query
        self._check_kind(study, query.kind)
        if epsilon > cap:
            raise ResourceExhausted(
                f"epsilon {epsilon} > cap {cap}",
                reason=Reason.EPSILON_OVER_CAP,
                message=f"the requested epsilon exceeds the per-query cap: the query asks ε {number(epsilon)}, the cap"
                f" is ε {number(cap)} (the study's grant allows ε {number(study.epsilon_per_query_cap)} per query,"
                f" this site's policy ε {number(policy.epsilon_per_query_cap)})",
            )
        year = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC).year  # ages fold at the oldest possible one
        query = canonical(query, self._catalogue.assembly_of(asked.opened.envelope.assembly, study.assembly), year)
        self._catalogue.check(query)
        for f in filters_of(query):
            self._terms.check(f)
        variants = self._variants_of(query)
        self._rate_limit(study.study_id)
        return Admitted(query, variants)

    def _check_kind(self, study: Study, kind: Kind) -> None:
        if kind not in study.kinds:
            raise PermissionDenied(
                kind.label,
                reason=Reason.KIND_NOT_GRANTED,
                message=f"the study grant does not include this query kind: {kind.label}; the grant names "
                f"{_kinds(study.kinds)}",
            )
        if kind not in self.policy.allowed_kinds:
            raise PermissionDenied(
                kind.label,
                reason=Reason.KIND_REFUSED,
                message=f"this node's policy does not answer this query kind: {kind.label}; this site answers "
                f"{_kinds(self.policy.allowed_kinds)}",
            )

    def _variants_of(self, q: Query) -> list[Variant] | None:
        """The variants a query releases values for (None for cohort counts). Region queries list the
        node's site catalogue, which only a node that declares it public may do."""
        kind = KINDS[q.kind]
        if not kind.uses_variants:
            return None
        region = kind.region(q)
        if region is None:
            variants = list(kind.variants(q))
        else:
            if not self.policy.public_site_catalogue:
                raise PermissionDenied(
                    "region query without a public site catalogue",
                    reason=Reason.KIND_REFUSED,
                    message="this node does not publish its site list, so it answers no query over a region: name the"
                    " variants instead",
                )
            rows = self._backend.variants(region)
            variants = [rows.variant(i) for i in range(len(rows))]
        if len(variants) > self.policy.max_variants_per_query:
            raise InvalidArgument(
                f"{len(variants)} variants",
                reason=Reason.TOO_MANY_VARIANTS,
                message=f"this site answers at most {self.policy.max_variants_per_query} variants per query: the "
                + (f"query names {len(variants)}" if region is None else f"region holds {len(variants)} of its sites"),
            )
        return variants

    def _rate_limit(self, study_id: str) -> None:
        now = self._clock()
        with self._lock:
            window = self._rates.setdefault(study_id, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= self.policy.rate_limit_per_study_per_minute:
                limit = self.policy.rate_limit_per_study_per_minute
                retry = max(1, round(window[0] + 60 - now))
                raise ResourceExhausted(
                    study_id,
                    reason=Reason.RATE_LIMITED,
                    message=f"too many queries for this study; try again later: this site answers at most {limit} "
                    f"queries per study per minute (try again in {retry} s)",
                )
            window.append(now)

    # Step 5: the noise plans ------------------------------------------------------------------------------

    def charge(self, admitted: Admitted, epsilon: Decimal) -> Charge:
        """The releases a query makes, with their noise planned from the kind's declared sensitivity: one, or
        two for a carrier count with an allele-frequency cut-off (a noisy AF of the region over every consented
        participant picks the qualifying variants; the count of carriers follows; each gets half the ε)."""
        variants = admitted.variants
        sens, plans = KINDS[admitted.query.kind].plans(
            admitted.query, len(variants) if variants is not None else None, epsilon, self.policy.delta_per_query
        )
        return Charge(
            sens,
            plans,
            sum((p.epsilon for p in plans), Decimal(0)),
            sum((p.delta for p in plans), Decimal(0)),
        )

    # Who may read a budget --------------------------------------------------------------------------------

    def budget_reader(self, caller: Caller, study_id: str, grant: pb.StudyGrant | None) -> tuple[Study, str]:
        """The study whose budget ``caller`` may read, and the researcher whose spending it shows ("" when the
        researcher is not known: the coordinator asking about a local study).

        Under a grant only the coordinator is answered: the grant names the researcher by a signing key, not
        by a certificate, so no certificate proves that its holder is the study's researcher (who reads the
        budget through the coordinator, or in each release's ``budget_after``). For a local study: one of its
        researchers (by certificate common name) or the coordinator."""
        coordinator = bool(self.coordinator_common_name) and caller.common_name == self.coordinator_common_name
        if grant is not None and grant.payload:
            if not coordinator:
                raise not_coordinator(caller, self.coordinator_common_name, "budgets under a grant")
            body, study = self.verifier().verify_grant(grant)
            if study.study_id != study_id:
                raise PermissionDenied(
                    study_id,
                    reason=Reason.GRANT_MISSING,
                    message=f"the grant is for another study: asked about {study_id[:64]}, the grant is for "
                    f"{study.study_id[:64]}",
                )
            return study, body.researcher_key_fingerprint
        if coordinator:
            local = self._studies().get(study_id)
            if local is None:
                raise no_grant(study_id)
            return local, ""
        return self.local_study(caller, study_id), local_researcher(caller)


def no_grant(study_id: str) -> PermissionDenied:
    """GRANT_MISSING for a study this node holds no grant or local study for, echoing the id asked."""
    return PermissionDenied(
        f"unknown study {study_id!r}",
        reason=Reason.GRANT_MISSING,
        message=f"this node holds no grant for the study: no study {study_id[:64]!r} here (a study the committee"
        " approved is asked for through the coordinator, with its grant)",
    )


def _kinds(kinds: Iterable[Kind]) -> str:
    return name_list(sorted(k.label for k in kinds))


def local_researcher(caller: Caller) -> str:
    """The researcher a local study's charge is attributed to: the caller's certificate common name, in a
    namespace apart from grants' key fingerprints."""
    return "cn:" + caller.common_name


def not_coordinator(caller: Caller, coordinator: str, what: str) -> PermissionDenied:
    if not coordinator:
        return PermissionDenied(
            f"{what}: [grants] coordinator_common_name is not set",
            message="this node answers this only to the coordinator, and its operator has not named the "
            "coordinator: set [grants] coordinator_common_name",
        )
    return PermissionDenied(
        f"{what}: caller {caller.common_name!r} is not the coordinator {coordinator!r}",
        message="this node answers this only to the federation's coordinator",
    )
