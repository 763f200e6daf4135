"""The node's reads of its store for one charged query (step 7 of ``node.service``): the variants' lookup with
stand-ins, their rows, the cohort masks, and the exact counts a kind computes over them (``node.counting``).

Invariant: nothing here runs before ``Ledger.begin`` has decided to charge. ``Reader.prefetch`` is what the
service hands the ledger as ``begin(on_charge=...)``: a DuckDB read starts on a fetch worker as soon as the
ledger has decided, while the charge's commit syncs, and ``Reader.exact`` waits for it only once the charge
is durable. The work is the same per requested variant whether the store holds it or not: a variant it lacks
is looked up, and a stored neighbour's rows read, like a held one, and then counted as absent (zero calls:
every cohort member hom-ref). Cohort masks cover consented participants only; the work of counting does not
depend on who is in the cohort (``GenotypeBackend.class_counts``). Exact counts never leave this process
unless ``node.release`` noises them.

Threading: one ``Reader`` serves every gRPC worker thread. A query hands off at most one read to a small pool
of fetch workers (when the store is read through DuckDB: thread wake-ups and GIL hand-offs cost more on this
path than the counting itself); the in-memory copy is read on the query's own thread. The backend keeps its
own per-thread state (DuckDB: one cursor per thread). The cohort masks come from the ``Cohorts`` of the
consent state the query was charged under (``node.consent_view``), handed to ``exact`` with the query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from genogate import duo
from genogate.kinds import KINDS
from genogate.query import Query, Variant
from node.backend import GenotypeBackend
from node.cohort import Cohorts
from node.counting import Counting
from node.store import Calls
from node.studies import Study


@dataclass(frozen=True)
class Cohort:
    """Who a query counts: every consented participant, and the cohort mask of each of its filters."""

    consent: npt.NDArray[np.bool_]
    masks: list[npt.NDArray[np.bool_]]


@dataclass(frozen=True)
class Rows:
    """A charged query's vids, which of them the store holds, and their rows (None when not needed)."""

    vids: npt.NDArray[np.int32]
    held: npt.NDArray[np.bool_]
    calls: Calls | None


@dataclass(frozen=True)
class Exact:
    """Exact counts for a query's first release, and the data a second stage counts (carrier counts)."""

    counts: npt.NDArray[np.int64]
    data: Counting


class Reader:
    """Reads a charged query's rows and cohort and counts them exactly."""

    def __init__(
        self,
        backend: GenotypeBackend,
        *,
        clock: Callable[[], float],
        diseases: duo.Diseases,
        fetch_workers: int,
    ):
        self._backend = backend
        self._clock = clock
        self._diseases = diseases  # the hierarchies DS-<disease> consents are matched in
        self._fetch_pool = ThreadPoolExecutor(max_workers=fetch_workers, thread_name_prefix="node-fetch")
        self.n_samples = backend.n_samples

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=True, cancel_futures=True)

    def prefetch(self, q: Query, variants: list[Variant] | None) -> Future[Rows] | None:
        """``lookup_and_read`` of a charged query started on a fetch worker, when the backend's reads are slow
        enough (DuckDB); None when ``exact`` takes them on the query's own thread (the in-memory copy answers
        in microseconds)."""
        if self._backend.prefetch and _reads(q, variants):
            return self._fetch_pool.submit(self.lookup_and_read, q, variants)
        return None

    def lookup_and_read(self, q: Query, variants: list[Variant] | None) -> Rows:
        """The query's vids (stand-ins for variants the store lacks, ``held`` saying which are real) and, when
        its counts need them, their rows: the same work per requested variant whether held or not."""
        if not variants:
            return Rows(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool), None)
        vids, held = self._backend.lookup_with_stand_ins(variants)
        return Rows(vids, held, self._backend.fetch(vids) if _reads(q, variants) else None)

    def exact(
        self, q: Query, variants: list[Variant] | None, study: Study, prefetch: Future[Rows] | None, cohorts: Cohorts
    ) -> Exact:
        """The exact counts a query's first release is drawn from (no noise; never leaves this process
        unless ``node.release`` noises it after the charge, which is durable before this is called).

        A DuckDB read runs on a fetch worker (``prefetch``, started when the ledger decided to charge) while
        this thread builds the cohort masks (from ``cohorts``: the consent state the query was charged in)."""
        try:
            cohort = self._masks(cohorts, study, q)
        except BaseException:
            if prefetch is not None:
                prefetch.cancel()  # or, already running, it finishes and its rows are dropped unread
            raise
        got = prefetch.result() if prefetch is not None else self.lookup_and_read(q, variants)
        data = Counting(cohort.consent, cohort.masks, got.vids, got.held, got.calls, self._backend)
        return Exact(KINDS[q.kind].exact(q, data), data)

    def consenting(self, cohorts: Cohorts, purpose: tuple[str, frozenset[str]]) -> int:
        """How many participants of ``cohorts`` (the consent state in force) have consent admitting ``purpose``
        (for the study preview's bucket; reads no genotype data). Not cached: any coordinator may ask about any
        purpose, and the per-purpose cache of ``Cohorts.consented`` is for purposes queries use."""
        return sum(
            int(members.sum())
            for codes, members in cohorts.consent_groups
            if duo.admits(codes, purpose, self._diseases)
        )

    def _masks(self, cohorts: Cohorts, study: Study, q: Query) -> Cohort:
        """The consented participants and the query's cohort masks (case/control: the arms, disjoint)."""
        purpose = study.purpose
        consent = cohorts.consented(purpose, lambda codes: duo.admits(codes, purpose, self._diseases))
        year = dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC).year
        kind = KINDS[q.kind]
        return Cohort(consent, kind.arms([cohorts.mask(f, year) & consent for f in kind.filters(q)]))


def _reads(q: Query, variants: list[Variant] | None) -> bool:
    """Whether a query's counts need its variants' rows (a carrier count without a frequency cut reads its
    carriers through DuckDB instead)."""
    return bool(variants) and KINDS[q.kind].reads_rows(q)
