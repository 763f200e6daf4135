"""The node's query service: every check a query must pass, then exact counts, a durable charge, noise.

Order of work for one query (each step may refuse; nothing is charged until step 6 and no noise is drawn
before it):

1. decode and validate the envelope (query id, ε, the query itself);
2. authorise: the study's committee-signed grant verifies (``node.grants``: signatures, validity, site,
   revocation, nonce) or, for a local study, it is known and in force and the caller is one of its
   researchers; the study names this kind, and this node's policy accepts the kind and the study's purpose;
3. caps: ε at least the node's floor and within the study's and the node's per-query caps; variant count
   within the node's limit; the study's request rate;
4. reduce the query to its canonical form (``genogate.kinds.canonical``: one spelling per variant, on the
   build the query or its study names, which must be this node's: WRONG_ASSEMBLY; filters in their canonical
   form, ``genogate.normalform``, ages folded with this node's year; a filter that selects nobody whatever the
   data is INVALID_FILTER), then refuse what the node
   cannot answer truthfully, from public information only: a contig it does not have (UNKNOWN_CONTIG), a
   position its data does not cover (NOT_COVERED) or past a chromosome's end (``Catalogue``), a phenotype term
   outside the store's vocabulary (UNKNOWN_TERM: decided from the ontologies, never from who is annotated);
5. plan the noise (``QueryKind.plans`` with ``genogate.privacy.plan``: mechanism and scale from the kind's
   declared sensitivity);
6. ``Ledger.begin``: a durable charge (or the stored answer of the same question, at no cost; a retry or a
   repeat is never computed). This is the last refusal (BUDGET_EXHAUSTED and the node-wide caps), and
   nothing of the store has been touched before it (no variant lookup, no row read, no cohort mask) but
   the list of sites in a region, which a node reads only when it declares that list public (step 3);
7. look the variants up and read their rows, with the same work per requested variant whether the store
   holds it or not (a variant it lacks gets a stored neighbour's rows, read and not counted): from the
   in-memory copy of the store's calls once the charge is on disk, or through DuckDB on a fetch worker that
   starts as soon as the ledger has decided to charge (``begin(on_charge=...)``, while the commit syncs);
   build the cohort masks (consented participants only); once the charge is durable, count exactly, draw
   the noise (OpenDP), apply the minimum-reportable-count rule to the *noisy* values, and store the result
   (first completion wins);
8. wrap the stored result in a signed release.

What differs between query kinds is the kind's (``genogate.kinds``, looked up once per step): its variants
and region, filters and cohort arms, noise plans, exact counts over this node's data (``node.counting``, the
one adapter between kinds and the store) and the shape of its noisy release. This module stays generic.

No refusal, error message, branch or the time either takes depends on the data: every refusal is decided
from the envelope, the study, the policy and the ledger before the store is touched (the refused-query
timing test in tests/statistical/test_refusal_timing.py holds held and absent variants indistinguishable),
and thresholding looks at noisy values only. The work of counting does not depend on who is in the cohort
(``GenotypeBackend.class_counts``).

Budgets, epochs, callers (``node.ledger``): a charge is attributed to the researcher (a grant's researcher key
fingerprint, or ``cn:<common name>`` for a local study) and checked, in the charging transaction, against the
study's cap, the researcher's cap across studies and the node's cap over the policy's rolling period. The
service registers its store's cohort fingerprint as a consent epoch when it starts; the same question is
answered from the store only within the epoch. A query id is answered again only to the certificate that
first sent it. A release states what this request paid now (0 for a retry, a stored release, or a query
that joined an identical one being charged), the original charge and the epoch of its values.

Threading: one instance serves every gRPC worker thread. A query runs on its gRPC thread, handing off at most
one read to a small pool of fetch workers (when the store is read through DuckDB: thread wake-ups and GIL
hand-offs cost more on this path than the counting itself). The backend keeps its own per-thread state
(DuckDB: one cursor per thread); the ledger serialises itself; the caches are guarded by a lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt

from genogate import duo, metrics, privacy, results
from genogate.convert import result_to_pb
from genogate.envelope import receive
from genogate.errors import (
    GenogateError,
    Internal,
    InvalidArgument,
    PermissionDenied,
    Reason,
    ResourceExhausted,
)
from genogate.kinds import KINDS, canonical, canonical_bytes, filters_of
from genogate.query import Filter, Kind, Query, Region, Variant
from genogate.rpc import max_envelope_bytes
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from node import dp
from node.backend import GenotypeBackend
from node.catalogue import Catalogue
from node.cohort import Cohorts
from node.counting import Counting
from node.grants import GrantVerifier
from node.ledger import Answered, Charged, Ledger, Pending
from node.store import Calls
from node.studies import Study

log = logging.getLogger("genogate.node")


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


@dataclass(frozen=True)
class Caller:
    """Who is asking: the common name of the client certificate that mTLS verified."""

    common_name: str


class QueryService:
    def __init__(
        self,
        *,
        name: str,
        backend: GenotypeBackend,
        ledger: Ledger,
        studies: Callable[[], Mapping[str, Study]],
        policy: Policy,
        noise: dp.Noise,
        signer: Signer,
        grants: GrantVerifier | None = None,
        clock: Callable[[], float] = time.time,
        fetch_workers: int = 4,
        build: str = "",
        covered_regions: Sequence[Region] | None = None,
        covered_bed: Path | None = None,
        diseases: duo.Diseases = duo.ICD10_ONLY,
        disease_releases: Mapping[str, str] | None = None,
        coordinator_common_name: str = "",
    ):
        self.name = name
        # The coordinator's certificate common name: the only caller given a site's own value under a grant
        # without the per-site breakdown, and the only one given a budget under a grant ("" = nobody).
        self.coordinator_common_name = coordinator_common_name
        self.policy = policy
        # The genotype data (``node.backend``: DuckDB, or the calls copied into memory); the service owns it.
        self._backend = backend
        # The node's public catalogue, read once: its build, contigs and covered regions. Queries are checked
        # against it before anything else is read (never answered as absent: refused, naming what exists).
        self.catalogue = Catalogue.of(backend, build, covered_regions, covered_bed)
        # Loaded once: participants' attributes (filters become numpy masks).
        self._cohorts = Cohorts(backend)
        self._ledger = ledger
        self._studies = studies
        self._noise = noise
        self._signer = signer
        self._grants = grants
        self.revocations = grants.revocations if grants is not None else None
        self._clock = clock
        self._diseases = diseases  # the hierarchies DS-<disease> consents are matched in
        self._disease_releases = dict(disease_releases or {})
        self._lock = threading.Lock()
        self._consent: dict[tuple[str, frozenset[str]], npt.NDArray[np.bool_]] = {}
        self._rates: dict[str, deque[float]] = {}
        # Reads of the store's rows, started as soon as a query's variants are known (see _query).
        self._fetch_pool = ThreadPoolExecutor(max_workers=fetch_workers, thread_name_prefix="node-fetch")
        self.n_samples = backend.n_samples
        # The consent epoch of the store's cohort: stored answers of earlier epochs answer no new query id.
        self.epoch = ledger.register_epoch(backend.cohort_sha256(), now_ms=int(clock() * 1000))
        log.info("consent epoch", extra={"epoch": self.epoch})

    def labels(self) -> list[tuple[str, tuple[str, ...]]]:
        """The labels of each categorical attribute at this node (published in GetNodeInfo)."""
        return [("ancestry", self._cohorts.ancestry_groups), ("sex", ("F", "M", "U"))]

    def ontologies(self) -> dict[str, str]:
        """The ontology releases the store's phenotype terms were validated against."""
        return {**self._cohorts.terms.releases, **self._disease_releases}

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=True, cancel_futures=True)
        self._backend.close()
        if self._grants is not None:
            self._grants.close()

    # Public operations ------------------------------------------------------------------------------------

    def query(
        self, caller: Caller, payload: bytes, *, grant: pb.StudyGrant | None = None, signature: bytes = b""
    ) -> pb.Release:
        """Answer one query envelope (serialized ``QueryEnvelope``) or raise a ``GenogateError``.

        With a ``grant``, the node verifies everything itself (``node.grants``): the committee's signature,
        the grant's window, site, the steward's rules and revocation, then the researcher's signature over
        ``payload``, the timestamp and the nonce. Without one, the study must be in the node's local
        trusted-studies file and the caller's certificate name one of its researchers.

        Every outcome goes to the audit log: a release in the same ledger transaction that stores or finds
        its result, a refusal (or a failure after the charge) on its own.
        """
        entry: dict[str, object] = {
            "event": "query",
            "caller": caller.common_name,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        }
        outcome = _Outcome()
        try:
            try:
                release = self._query(caller, payload, grant, signature, entry, outcome)
            except GenogateError:
                raise
            except Exception as exc:  # a bug: still a typed error for the caller, and audited like any failure
                log.exception("query failed unexpectedly", extra={"study": entry.get("study", "")})
                raise Internal(f"{type(exc).__name__} answering a query") from exc
        except GenogateError as exc:
            entry["decision"] = "failed" if entry.get("charged") else "refused"
            entry["reason"] = exc.reason.name
            metrics.node_query(
                str(entry.get("kind", "")), str(entry["decision"]), str(entry.get("study", "")), outcome.charged
            )
            try:
                self._ledger.record(entry, now_ms=int(self._clock() * 1000))
            except GenogateError:
                log.exception("could not write a refusal to the audit log")  # the refusal itself stands
            raise
        metrics.node_query(str(entry["kind"]), outcome.decision, str(entry["study"]), outcome.charged)
        return release

    def _too_large(self, size: int) -> InvalidArgument:
        return InvalidArgument(
            f"envelope of {size} bytes > {max_envelope_bytes(self.policy.max_variants_per_query)}",
            reason=Reason.TOO_MANY_VARIANTS,
            message=f"the query is larger than this site answers (at most {self.policy.max_variants_per_query} "
            "variants per query)",
        )

    def _query(
        self,
        caller: Caller,
        payload: bytes,
        grant: pb.StudyGrant | None,
        signature: bytes,
        entry: dict[str, object],
        outcome: _Outcome,
    ) -> pb.Release:
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
            verified = self._verifier().open(
                grant, received, caller=caller.common_name, coordinator_common_name=self.coordinator_common_name
            )
            opened, study = verified.opened, verified.study
            env = opened.envelope
            researcher = verified.grant.researcher_key_fingerprint
            opened.check_ids()
            self._check_purpose(study)
        else:
            opened = received.open_unsigned()
            env = opened.envelope
            opened.check_ids()
            entry.update(study=env.study_id, query_id=env.query_id)
            study = self._authorise(caller, env.study_id)
            researcher = _local_researcher(caller)
            if env.sites and self.name not in env.sites:
                raise PermissionDenied(
                    "envelope does not name this site",
                    reason=Reason.GRANT_WRONG_SITE,
                    message="the query is not addressed to this site",
                )
        entry.update(researcher=researcher, consent_epoch=self.epoch)  # whom the node-wide caps charge
        epsilon = opened.epsilon
        if epsilon < self.policy.epsilon_per_query_min:  # decided from the request alone, before any charge
            raise InvalidArgument(
                f"epsilon {epsilon} < floor {self.policy.epsilon_per_query_min}",
                reason=Reason.INVALID_EPSILON,
                message=f"epsilon {epsilon:.3g} is below this site's floor of {self.policy.epsilon_per_query_min} "
                "per query",
            )
        query = opened.query
        self._check_kind(study, query.kind)
        cap = min(study.epsilon_per_query_cap, self.policy.epsilon_per_query_cap)
        if epsilon > cap:
            raise ResourceExhausted(
                f"epsilon {epsilon} > cap {cap}",
                reason=Reason.EPSILON_OVER_CAP,
                message="the requested epsilon exceeds the per-query cap",
            )
        year = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC).year  # ages fold at the oldest possible one
        query = canonical(query, self.catalogue.assembly_of(env.assembly, study.assembly), year)
        self.catalogue.check(query)
        for f in filters_of(query):
            self._cohorts.terms.check(f)
        variants = self._variants_of(query)
        self._rate_limit(study.study_id)

        canonical_sha = hashlib.sha256(canonical_bytes(query)).hexdigest()
        entry.update(study=study.study_id, query_id=env.query_id, kind=query.kind.label, canonical_sha256=canonical_sha)
        # Every refusal is decided above and in ``Ledger.begin`` from the envelope, the study, the policy and
        # the ledger: nothing of the store is touched (no index lookup, no read, no cohort mask) until the
        # charge is durable, so a refusal takes the same work whether or not the node holds the variants or
        # has the participants. A retry or a repeat of an answered question is answered from the ledger.
        sens, plans = self._plans(query, len(variants) if variants is not None else None, epsilon)
        charge_eps = sum((p.epsilon for p in plans), Decimal(0))
        charge_delta = sum((p.delta for p in plans), Decimal(0))
        payload_sha = hashlib.sha256(payload).digest()
        entry.update(epsilon=str(charge_eps), delta=str(charge_delta))
        # Reading through DuckDB starts as soon as the ledger has decided to charge, on a fetch worker, while
        # the charge's commit syncs; a refusal never starts it, and a failed commit drops it unread.
        prefetch: list[Future[_Rows] | None] = []
        try:
            begun = self._ledger.begin(
                study_id=study.study_id,
                query_id=env.query_id,
                payload_sha256=payload_sha.hex(),
                canonical_sha256=canonical_sha,
                epsilon=charge_eps,
                delta=charge_delta,
                epsilon_cap=self._study_cap(study),
                delta_cap=self.policy.delta_per_study_cap,
                now_ms=int(self._clock() * 1000),
                researcher=researcher,
                caller=caller.common_name,
                epoch=self.epoch,
                researcher_cap=self.policy.epsilon_per_researcher_cap,
                node_cap=self.policy.epsilon_per_node_cap,
                period_days=self.policy.budget_period_days,
                audit=entry,
                on_charge=lambda: prefetch.append(self._prefetch(query, variants)),
            )
        except BaseException:
            for started in prefetch:
                if started is not None:
                    started.cancel()  # or, already running, it finishes and its rows are dropped unread
            raise
        # What this request paid now: its charge if it made one (or paid a suspect one again), else nothing:
        # a retry, a repeat of a stored release, or a query joining an identical one being charged.
        charged = (charge_eps, charge_delta) if isinstance(begun, Charged) else (Decimal(0), Decimal(0))
        if isinstance(begun, Answered):
            result_bytes, from_store = begun.result, begun.from_store
            outcome.decision = "replay" if from_store else "retry"
        else:
            entry["charged"] = True
            # A Pending charge was made by an earlier call with this query id (or question): not charged again.
            if isinstance(begun, Charged):
                outcome.decision, outcome.charged = "charged", charge_eps
            else:
                outcome.decision = "retry"
            # Charged by this call: its read started with the charge; a Pending charge's read starts now.
            counts = self._exact(query, variants, study, prefetch[0] if prefetch else self._prefetch(query, variants))
            result = self._release(query, variants, counts, sens, plans)
            # The one place the kind's domain result becomes wire bytes: stored as released, then signed.
            result_bytes = self._ledger.complete(
                begun.charge_id, result_to_pb(result).SerializeToString(deterministic=True), audit=entry
            )
            # Joining another query id's pending charge (paying nothing): the values are that query id's release
            # (first completion wins). A recharge (``Charged``) is paid by this request: not a stored release.
            from_store = isinstance(begun, Pending) and begun.original_query_id != env.query_id
        original = begun.original_query_id
        body = pb.ReleaseBody(
            query_id=env.query_id,
            study_id=study.study_id,
            site=self.name,
            query_sha256=payload_sha,  # binds the release (the receipt) to exactly the researcher's request
            result=pb.QueryResult.FromString(result_bytes),
            epsilon_charged=float(charged[0]),
            delta_charged=float(charged[1]),
            from_store=from_store,
            cached_query_id=original if from_store else "",
            budget_after=self.budget_pb(study, researcher),
            released_unix_ms=int(self._clock() * 1000),
            original_epsilon_charged=float(begun.original_epsilon),
            original_delta_charged=float(begun.original_delta),
            consent_epoch=begun.epoch,
        )
        payload_out = body.SerializeToString(deterministic=True)
        return pb.Release(
            payload=payload_out,
            node_signature=self._signer.sign("genogate.v1.ReleaseBody", payload_out),
            node_key_id=self._signer.key_id,
        )

    def budget(self, caller: Caller, study_id: str, grant: pb.StudyGrant | None = None) -> pb.BudgetStatus:
        """A study's budget here, for the study's researcher and the coordinator only.

        Under a grant only the coordinator is answered: the grant names the researcher by a signing key, not
        by a certificate, so no certificate proves that its holder is the study's researcher (who reads the
        budget through the coordinator, or in each release's ``budget_after``). For a local study: one of its
        researchers (by certificate common name) or the coordinator."""
        coordinator = bool(self.coordinator_common_name) and caller.common_name == self.coordinator_common_name
        if grant is not None and grant.payload:
            if not coordinator:
                raise _not_coordinator(caller, self.coordinator_common_name, "budgets under a grant")
            body, study = self._verifier().verify_grant(grant)
            if study.study_id != study_id:
                raise PermissionDenied(study_id, reason=Reason.GRANT_MISSING, message="the grant is for another study")
            return self.budget_pb(study, body.researcher_key_fingerprint)
        if coordinator:
            local = self._studies().get(study_id)
            if local is None:
                raise PermissionDenied(
                    f"unknown study {study_id!r}",
                    reason=Reason.GRANT_MISSING,
                    message="this node holds no grant for the study",
                )
            return self.budget_pb(local, "")
        return self.budget_pb(self._authorise(caller, study_id), _local_researcher(caller))

    def _verifier(self) -> GrantVerifier:
        if self._grants is None:
            raise PermissionDenied(
                "no committee keys configured",
                reason=Reason.UNTRUSTED_COMMITTEE,
                message="this node trusts no committee keys",
            )
        return self._grants

    def budget_pb(self, study: Study, researcher: str = "") -> pb.BudgetStatus:
        """The study's budget here, with ``researcher``'s spending across all their studies in the window
        ("" when the researcher is not known: the coordinator asking about a local study)."""
        p = self.policy
        b = self._ledger.budget(
            study.study_id,
            self._study_cap(study),
            p.delta_per_study_cap,
            researcher=researcher,
            now_ms=int(self._clock() * 1000),
            period_days=p.budget_period_days,
        )
        return pb.BudgetStatus(
            study_id=study.study_id,
            site=self.name,
            epsilon_cap=float(b.epsilon_cap),
            epsilon_spent=float(b.epsilon_spent),
            epsilon_remaining=float(b.epsilon_remaining),
            queries_answered=b.queries_answered,
            researcher_epsilon_cap=float(p.epsilon_per_researcher_cap),
            researcher_epsilon_spent=float(b.researcher_epsilon_spent),
            budget_period_days=p.budget_period_days,
            consent_epoch=self.epoch,
        )

    # Checks -----------------------------------------------------------------------------------------------

    def _authorise(self, caller: Caller, study_id: str) -> Study:
        study = self._studies().get(study_id)
        if study is None:
            raise PermissionDenied(
                f"unknown study {study_id!r}",
                reason=Reason.GRANT_MISSING,
                message="this node holds no grant for the study",
            )
        now = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)
        if study.not_before is not None and now < study.not_before:
            raise PermissionDenied(
                study_id, reason=Reason.GRANT_NOT_YET_VALID, message="the study grant is not yet valid"
            )
        if study.not_after is not None and now >= study.not_after:
            raise PermissionDenied(study_id, reason=Reason.GRANT_EXPIRED, message="the study grant has expired")
        if caller.common_name not in study.researchers:
            raise PermissionDenied(
                f"{caller.common_name!r} is not a researcher of {study_id!r}",
                reason=Reason.RESEARCHER_MISMATCH,
                message="the caller is not a researcher of this study",
            )
        self._check_purpose(study)
        return study

    def _check_purpose(self, study: Study) -> None:
        permission = study.purpose[0]
        accepted = self.policy.allowed_purposes
        if permission not in accepted and not (permission.startswith("DS-") and "DS" in accepted):
            raise PermissionDenied(
                f"purpose {study.purpose_text!r}",
                reason=Reason.PURPOSE_REFUSED,
                message="this node's policy does not accept the study's purpose",
            )

    def _check_kind(self, study: Study, kind: Kind) -> None:
        if kind not in study.kinds:
            raise PermissionDenied(
                kind.label, reason=Reason.KIND_NOT_GRANTED, message="the study grant does not include this query kind"
            )
        if kind not in self.policy.allowed_kinds:
            raise PermissionDenied(
                kind.label, reason=Reason.KIND_REFUSED, message="this node's policy does not answer this query kind"
            )

    def _study_cap(self, study: Study) -> Decimal:
        return min(study.epsilon_total, self.policy.epsilon_per_study_cap)

    def _rate_limit(self, study_id: str) -> None:
        now = self._clock()
        with self._lock:
            window = self._rates.setdefault(study_id, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= self.policy.rate_limit_per_study_per_minute:
                raise ResourceExhausted(
                    study_id, reason=Reason.RATE_LIMITED, message="too many queries for this study; try again later"
                )
            window.append(now)

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
                    message="this node does not publish its site list: name the variants",
                )
            rows = self._backend.variants(region)
            variants = [rows.variant(i) for i in range(len(rows))]
        if len(variants) > self.policy.max_variants_per_query:
            raise InvalidArgument(
                f"{len(variants)} variants",
                reason=Reason.TOO_MANY_VARIANTS,
                message=f"at most {self.policy.max_variants_per_query} variants per query",
            )
        return variants

    # Noise plans ------------------------------------------------------------------------------------------

    def _plans(
        self, q: Query, k: int | None, epsilon: Decimal
    ) -> tuple[list[privacy.Sensitivity], list[privacy.NoisePlan]]:
        """The releases a query makes: one, or two for a carrier count with an allele-frequency cut-off
        (a noisy AF of the region over every consented participant picks the qualifying variants; the
        count of carriers follows; each gets half the ε)."""
        return KINDS[q.kind].plans(q, k, epsilon, self.policy.delta_per_query)

    # Computing --------------------------------------------------------------------------------------------

    def _consented(self, study: Study) -> npt.NDArray[np.bool_]:
        with self._lock:
            mask = self._consent.get(study.purpose)
        if mask is None:
            mask = np.zeros(self.n_samples, dtype=bool)
            for codes, members in self._cohorts.consent_groups:
                if duo.admits(codes, study.purpose, self._diseases):
                    mask |= members
            with self._lock:
                self._consent[study.purpose] = mask
        return mask

    def _cohort(self, f: Filter, consent: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        year = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC).year
        return self._cohorts.mask(f, year) & consent

    def _masks(self, study: Study, q: Query) -> _Cohort:
        """The consented participants and the query's cohort masks (case/control: the arms, disjoint)."""
        consent = self._consented(study)
        kind = KINDS[q.kind]
        return _Cohort(consent, kind.arms([self._cohort(f, consent) for f in kind.filters(q)]))

    def _prefetch(self, q: Query, variants: list[Variant] | None) -> Future[_Rows] | None:
        """``_lookup_and_read`` of a charged query started on a fetch worker, when the backend's reads are slow
        enough (DuckDB); None when ``_exact`` takes them on the query's own thread (the in-memory copy answers
        in microseconds)."""
        if self._backend.prefetch and self._reads(q, variants):
            return self._fetch_pool.submit(self._lookup_and_read, q, variants)
        return None

    @staticmethod
    def _reads(q: Query, variants: list[Variant] | None) -> bool:
        """Whether a query's counts need its variants' rows (a carrier count without a frequency cut reads its
        carriers through DuckDB instead)."""
        return bool(variants) and KINDS[q.kind].reads_rows(q)

    def _lookup_and_read(self, q: Query, variants: list[Variant] | None) -> _Rows:
        """The query's vids (stand-ins for variants the store lacks, ``held`` saying which are real) and, when
        its counts need them, their rows: the same work per requested variant whether held or not."""
        if not variants:
            return _Rows(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool), None)
        vids, held = self._backend.lookup_with_stand_ins(variants)
        return _Rows(vids, held, self._backend.fetch(vids) if self._reads(q, variants) else None)

    def _exact(self, q: Query, variants: list[Variant] | None, study: Study, prefetch: Future[_Rows] | None) -> _Exact:
        """The exact counts a query's first release is drawn from (no noise; never leaves this process
        unless ``_release`` noises it after the charge, which is durable before this is called).

        The work is the same per requested variant whether the store holds it or not: a variant it lacks is
        looked up, and a stored neighbour's rows read, like a held one, and then counted as absent (zero
        calls: every cohort member hom-ref). A DuckDB read runs on a fetch worker (``prefetch``, started when
        the ledger decided to charge) while this thread builds the cohort masks."""
        try:
            cohort = self._masks(study, q)
        except BaseException:
            if prefetch is not None:
                prefetch.cancel()  # or, already running, it finishes and its rows are dropped unread
            raise
        got = prefetch.result() if prefetch is not None else self._lookup_and_read(q, variants)
        data = Counting(cohort.consent, cohort.masks, got.vids, got.held, got.calls, self._backend)
        return _Exact(KINDS[q.kind].exact(q, data), data)

    def _release(
        self,
        q: Query,
        variants: list[Variant] | None,
        exact: _Exact,
        sens: list[privacy.Sensitivity],
        plans: list[privacy.NoisePlan],
    ) -> results.QueryResult:
        """Noise the exact counts (the charge is durable by now) and shape the result."""
        return KINDS[q.kind].release(q, variants, exact.counts, exact.data, _Release(self, sens, plans))

    def _draw(
        self, exact: npt.NDArray[np.int64], sens: privacy.Sensitivity, p: privacy.NoisePlan
    ) -> npt.NDArray[np.int64]:
        return self._noise.draw(exact.astype(np.int64), p, sens)

    def _value(self, noisy: int | np.integer, p: privacy.NoisePlan, stddev: float | None = None) -> results.NoisyValue:
        """One noisy count with its 95% interval, or "fewer than k" when the *noisy* value is below k."""
        k = self.policy.min_reportable_count
        sd = p.stddev if stddev is None else stddev
        if k > 0 and int(noisy) < k:  # k = 0: the node reports every value, negative noisy ones included
            return results.NoisyValue(
                noise_scale=p.scale, below_threshold=True, threshold=k, mechanism=p.mechanism, noise_stddev=sd
            )
        n = int(noisy)
        return results.NoisyValue(n, p.scale, n - p.ci95_halfwidth, n + p.ci95_halfwidth, False, k, p.mechanism, sd)

    def _sum_value(self, a: int | np.integer, b: int | np.integer, p: privacy.NoisePlan) -> results.NoisyValue:
        """The sum of two independently noised counts (AN = alt + ref): the interval is the union bound of
        two 97.5% intervals, so it covers the true sum at least 95% of the time."""
        n, sd, k = int(a) + int(b), p.stddev * 2**0.5, self.policy.min_reportable_count
        if k > 0 and n < k:
            return self._value(n, p, sd)
        half = 2 * privacy.halfwidth(p, 0.025)
        return results.NoisyValue(n, p.scale, n - half, n + half, False, k, p.mechanism, sd)


@dataclass
class _Outcome:
    """How a query was decided, for the metrics: decision and the ε this call charged."""

    decision: str = "refused"
    charged: Decimal = Decimal(0)


@dataclass(frozen=True)
class _Cohort:
    """Who a query counts: every consented participant, and the cohort mask of each of its filters."""

    consent: npt.NDArray[np.bool_]
    masks: list[npt.NDArray[np.bool_]]


@dataclass(frozen=True)
class _Rows:
    """A charged query's vids, which of them the store holds, and their rows (None when not needed)."""

    vids: npt.NDArray[np.int32]
    held: npt.NDArray[np.bool_]
    calls: Calls | None


@dataclass(frozen=True)
class _Exact:
    """Exact counts for a query's first release, and the data a second stage counts (carrier counts)."""

    counts: npt.NDArray[np.int64]
    data: Counting


@dataclass(frozen=True)
class _Release:
    """The node's noise for one charged query, as its kind shapes the release (``genogate.kinds.base.Release``):
    ``stage`` indexes the query's sensitivities and noise plans."""

    service: QueryService
    sens: list[privacy.Sensitivity]
    plans: list[privacy.NoisePlan]

    def draw(self, exact: npt.NDArray[np.int64], stage: int = 0) -> npt.NDArray[np.int64]:
        return self.service._draw(exact, self.sens[stage], self.plans[stage])

    def value(self, noisy: int | np.integer, stage: int = 0) -> results.NoisyValue:
        return self.service._value(noisy, self.plans[stage])

    def sum_value(self, a: int | np.integer, b: int | np.integer, stage: int = 0) -> results.NoisyValue:
        return self.service._sum_value(a, b, self.plans[stage])


def _local_researcher(caller: Caller) -> str:
    """The researcher a local study's charge is attributed to: the caller's certificate common name, in a
    namespace apart from grants' key fingerprints."""
    return "cn:" + caller.common_name


def _not_coordinator(caller: Caller, coordinator: str, what: str) -> PermissionDenied:
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
