"""The node's query service: every check a query must pass, then exact counts, a durable charge, noise.

``QueryService`` orchestrates: it holds the order of the steps below and nothing else (``_query`` is these
steps, one call each). Steps 1 to 5 are ``node.policy`` (``Policy``, ``Caller``, ``Gate``: every check decided
before the store is touched), the charge and the stored result are ``node.ledger``'s, the reads and exact counts
of step 7 are ``node.reader``'s, and the noise, the noisy values, the signed release and the budget status are
``node.release``'s. ``Policy`` and ``Caller`` are re-exported here.

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
   repeat is never computed), with a signed query's nonce (checked in step 2) in the same synced commit
   (``node.nonces``: one fsync per query; a query refused after step 2 records its nonce with its refusal).
   This is the last refusal (BUDGET_EXHAUSTED and the node-wide caps), and nothing of the store has been
   touched before it (no variant lookup, no row read, no cohort mask) but the list of sites in a region,
   which a node reads only when it declares that list public (step 3);
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
service registers its cohort fingerprint as a consent epoch when it starts, and again whenever a consent
change (``genogate-node consent``, ``node.consent``) changes it: each query takes the consent state in force
when it starts (``node.consent_view.LiveConsent.current``, before the charge) and uses it for its epoch and
its cohort masks; the same question is answered from the store only within the epoch. A query id is answered
again only to the certificate that first sent it. A release states what this request paid now (0 for a retry,
a stored release, or a query that joined an identical one being charged), the original charge and the epoch of
its values.

Threading: one instance serves every gRPC worker thread. A query runs on its gRPC thread, handing off at most
one read to a small pool of fetch workers (``node.reader``: when the store is read through DuckDB, thread
wake-ups and GIL hand-offs cost more on this path than the counting itself). The backend keeps its own
per-thread state (DuckDB: one cursor per thread); the ledger serialises itself; the gate's rate windows and
the reader's consent cache are each guarded by a lock.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from genogate import __version__, duo, metrics
from genogate.errors import GenogateError, Internal
from genogate.kinds import canonical_bytes
from genogate.query import Region
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from node import dp, preview, release
from node.backend import GenotypeBackend
from node.catalogue import Catalogue
from node.consent import ConsentStore
from node.consent_view import ConsentState, LiveConsent
from node.grants import GrantVerifier
from node.ledger import Answered, Charged, Ledger, Pending
from node.nonces import NonceClaim
from node.policy import Admitted, Asked, Caller, Charge, Gate, Policy, not_coordinator
from node.preview import PolicyView
from node.reader import Reader, Rows
from node.studies import Study

__all__ = ["Caller", "Policy", "QueryService"]

log = logging.getLogger("genogate.node")


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
        consent: ConsentStore | None = None,
    ):
        self.name = name
        self.policy = policy
        # The genotype data (``node.backend``: DuckDB, or the calls copied into memory); the service owns it.
        self._backend = backend
        # The node's public catalogue, read once: its build, contigs and covered regions. Queries are checked
        # against it before anything else is read (never answered as absent: refused, naming what exists).
        self.catalogue = Catalogue.of(backend, build, covered_regions, covered_bed)
        self._ledger = ledger
        # Participants' attributes loaded once (filters become numpy masks), with the consent codes in force:
        # the store's, overridden by the consent store's changes, re-read when it changes; and their epoch.
        self._consent_store = consent  # owned from here: closed with the service
        self._consent = LiveConsent(backend, ledger, consent, clock=clock)
        self._cohorts = self._consent.base
        self._noise = noise
        self._signer = signer
        self._grants = grants
        self.revocations = grants.revocations if grants is not None else None
        self._clock = clock
        self._disease_releases = dict(disease_releases or {})
        # Steps 1 to 5: every check before the store is touched (``node.policy``).
        self._gate = Gate(
            name=name,
            policy=policy,
            studies=studies,
            grants=grants,
            catalogue=self.catalogue,
            terms=self._cohorts.terms,
            backend=backend,
            clock=clock,
            coordinator_common_name=coordinator_common_name,
        )
        # Step 7: the reads of a charged query (``node.reader``), on fetch workers started with the charge.
        self._reader = Reader(backend, clock=clock, diseases=diseases, fetch_workers=fetch_workers)
        self.n_samples = backend.n_samples

    @property
    def epoch(self) -> int:
        """The consent epoch in force: stored answers of earlier epochs answer no new query id."""
        return self._consent.current().epoch

    @property
    def coordinator_common_name(self) -> str:
        """The coordinator's certificate common name: the only caller given a site's own value under a grant
        without the per-site breakdown, and the only one given a budget under a grant ("" = nobody). The gate
        decides with it; set here, it changes what the gate decides."""
        return self._gate.coordinator_common_name

    @coordinator_common_name.setter
    def coordinator_common_name(self, name: str) -> None:
        self._gate.coordinator_common_name = name

    def labels(self) -> list[tuple[str, tuple[str, ...]]]:
        """The labels of each categorical attribute at this node (published in GetNodeInfo)."""
        return [("ancestry", self._cohorts.ancestry_groups), ("sex", ("F", "M", "U"))]

    def ontologies(self) -> dict[str, str]:
        """The ontology releases the store's phenotype terms were validated against."""
        return {**self._cohorts.terms.releases, **self._disease_releases}

    def close(self) -> None:
        self._reader.close()
        self._backend.close()
        if self._consent_store is not None:
            self._consent_store.close()
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
        payload_sha = hashlib.sha256(payload).digest()  # hashed once: the audit entry, the ledger, the release
        entry: dict[str, object] = {"event": "query", "caller": caller.common_name, "payload_sha256": payload_sha.hex()}
        outcome = _Outcome()
        try:
            try:
                released = self._query(caller, payload, payload_sha, grant, signature, entry, outcome)
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
                self._ledger.record(entry, now_ms=int(self._clock() * 1000), nonce=outcome.nonce)
            except GenogateError:
                log.exception("could not write a refusal to the audit log")  # the refusal itself stands
            raise
        metrics.node_query(str(entry["kind"]), outcome.decision, str(entry["study"]), outcome.charged)
        return released

    def _query(
        self,
        caller: Caller,
        payload: bytes,
        payload_sha: bytes,
        grant: pb.StudyGrant | None,
        signature: bytes,
        entry: dict[str, object],
        outcome: _Outcome,
    ) -> pb.Release:
        """The steps of the module docstring, in order; each may refuse."""
        # 1-2. The envelope, bounded and decoded once, and who may ask for which study.
        asked = self._gate.authorise(caller, payload, grant, signature, entry)
        outcome.nonce = asked.nonce  # checked, not yet recorded: recorded with the charge, or with a refusal
        # The consent in force for this query (a change committed from now on applies to the next one).
        consent = self._consent.current()
        entry.update(researcher=asked.researcher, consent_epoch=consent.epoch)  # whom the node-wide caps charge
        # 3-4. ε floor, kind, per-query caps; the canonical form and the public refusals; variants; rate.
        admitted = self._gate.admit(asked)
        canonical_sha = hashlib.sha256(canonical_bytes(admitted.query)).hexdigest()
        entry.update(
            study=asked.study.study_id,
            query_id=asked.opened.envelope.query_id,
            kind=admitted.query.kind.label,
            canonical_sha256=canonical_sha,
        )
        # Every refusal is decided above and in ``Ledger.begin`` from the envelope, the study, the policy and
        # the ledger: nothing of the store is touched (no index lookup, no read, no cohort mask) until the
        # charge is durable, so a refusal takes the same work whether or not the node holds the variants or
        # has the participants. A retry or a repeat of an answered question is answered from the ledger.
        # 5. The noise plans, and the ε and δ they charge.
        charge = self._gate.charge(admitted, asked.opened.epsilon)
        entry.update(epsilon=str(charge.epsilon), delta=str(charge.delta))
        # 6. The durable charge, or the stored answer; reads start as soon as the ledger decides to charge.
        begun, prefetch = self._charge(caller, asked, admitted, charge, payload_sha, canonical_sha, entry, consent)
        # 7. Read, count exactly, draw the noise, store the result (first completion wins); or the stored one.
        result, from_store = self._answer(begun, prefetch, asked, admitted, charge, entry, outcome, consent)
        # 8. The signed release: what this request paid now (its charge if it made one, or paid a suspect one
        # again; else nothing: a retry, a repeat of a stored release, or a query joining an identical one).
        charged = (charge.epsilon, charge.delta) if isinstance(begun, Charged) else (Decimal(0), Decimal(0))
        body = release.release_body(
            query_id=asked.opened.envelope.query_id,
            study_id=asked.study.study_id,
            site=self.name,
            query_sha256=payload_sha,
            result=result,
            charged=charged,
            from_store=from_store,
            begun=begun,
            budget_after=self.budget_pb(asked.study, asked.researcher, epoch=consent.epoch),
            released_unix_ms=int(self._clock() * 1000),
        )
        return release.sign(body, self._signer)

    def _charge(
        self,
        caller: Caller,
        asked: Asked,
        admitted: Admitted,
        charge: Charge,
        payload_sha: bytes,
        canonical_sha: str,
        entry: dict[str, object],
        consent: ConsentState,
    ) -> tuple[Charged | Pending | Answered, list[Future[Rows] | None]]:
        """Step 6: ``Ledger.begin``, the last refusal. Reading through DuckDB starts as soon as the ledger has
        decided to charge, on a fetch worker, while the charge's commit syncs (``prefetch``: one entry once
        it has started); a refusal never starts it, and a failed commit drops it unread."""
        policy, study = self.policy, asked.study
        prefetch: list[Future[Rows] | None] = []
        try:
            begun = self._ledger.begin(
                study_id=study.study_id,
                query_id=asked.opened.envelope.query_id,
                payload_sha256=payload_sha.hex(),
                canonical_sha256=canonical_sha,
                epsilon=charge.epsilon,
                delta=charge.delta,
                epsilon_cap=policy.study_cap(study),
                delta_cap=policy.delta_per_study_cap,
                now_ms=int(self._clock() * 1000),
                researcher=asked.researcher,
                caller=caller.common_name,
                epoch=consent.epoch,
                researcher_cap=policy.epsilon_per_researcher_cap,
                node_cap=policy.epsilon_per_node_cap,
                period_days=policy.budget_period_days,
                audit=entry,
                nonce=asked.nonce,
                on_charge=lambda: prefetch.append(self._reader.prefetch(admitted.query, admitted.variants)),
            )
        except BaseException:
            for started in prefetch:
                if started is not None:
                    started.cancel()  # or, already running, it finishes and its rows are dropped unread
            raise
        return begun, prefetch

    def _answer(
        self,
        begun: Charged | Pending | Answered,
        prefetch: list[Future[Rows] | None],
        asked: Asked,
        admitted: Admitted,
        charge: Charge,
        entry: dict[str, object],
        outcome: _Outcome,
        consent: ConsentState,
    ) -> tuple[bytes, bool]:
        """Step 7: the stored result (serialized ``QueryResult``) and whether it is another query id's release:
        found by the ledger, or computed now (the charge is durable) and stored."""
        if isinstance(begun, Answered):
            outcome.decision = "replay" if begun.from_store else "retry"
            return begun.result, begun.from_store
        entry["charged"] = True
        # A Pending charge was made by an earlier call with this query id (or question): not charged again.
        if isinstance(begun, Charged):
            outcome.decision, outcome.charged = "charged", charge.epsilon
        else:
            outcome.decision = "retry"
        query, variants = admitted.query, admitted.variants
        # Charged by this call: its read started with the charge; a Pending charge's read starts now.
        started = prefetch[0] if prefetch else self._reader.prefetch(query, variants)
        exact = self._reader.exact(query, variants, asked.study, started, consent.cohorts)
        noise = release.Noiser(self._noise, self.policy.min_reportable_count, charge.sens, charge.plans)
        result = release.shape_result(query, variants, exact, noise)
        stored = self._ledger.complete(begun.charge_id, result.SerializeToString(deterministic=True), audit=entry)
        # Joining another query id's pending charge (paying nothing): the values are that query id's release
        # (first completion wins). A recharge (``Charged``) is paid by this request: not a stored release.
        return stored, isinstance(begun, Pending) and begun.original_query_id != asked.opened.envelope.query_id

    def describe(self, caller: Caller, purpose: str, kinds: Sequence[int]) -> PolicyView:
        """What this node's policy makes of a proposed study (``node.preview``), for the coordinator only.
        Read-only: no store read, no charge, no audit entry."""
        if not (self.coordinator_common_name and caller.common_name == self.coordinator_common_name):
            raise not_coordinator(caller, self.coordinator_common_name, "a study preview")
        return preview.describe(
            self.policy,
            name=self.name,
            genome_build=self.catalogue.build,
            version=__version__,
            purpose=purpose,
            kinds=kinds,
            consenting=lambda purpose: self._reader.consenting(self._consent.current().cohorts, purpose),
        )

    def budget(self, caller: Caller, study_id: str, grant: pb.StudyGrant | None = None) -> pb.BudgetStatus:
        """A study's budget here, for the study's researcher and the coordinator only (``Gate.budget_reader``
        decides who may read it)."""
        study, researcher = self._gate.budget_reader(caller, study_id, grant)
        return self.budget_pb(study, researcher)

    def budget_pb(self, study: Study, researcher: str = "", *, epoch: int | None = None) -> pb.BudgetStatus:
        """The study's budget here, with ``researcher``'s spending across all their studies in the window
        ("" when the researcher is not known: the coordinator asking about a local study)."""
        p = self.policy
        b = self._ledger.budget(
            study.study_id,
            p.study_cap(study),
            p.delta_per_study_cap,
            researcher=researcher,
            now_ms=int(self._clock() * 1000),
            period_days=p.budget_period_days,
        )
        return release.budget_status(
            b,
            study_id=study.study_id,
            site=self.name,
            researcher_cap=p.epsilon_per_researcher_cap,
            period_days=p.budget_period_days,
            epoch=self.epoch if epoch is None else epoch,
        )


@dataclass
class _Outcome:
    """How a query was decided, for the metrics: decision and the ε this call charged."""

    decision: str = "refused"
    charged: Decimal = Decimal(0)
    nonce: NonceClaim | None = None  # a signed query's nonce, for the refusal's audit commit to record
