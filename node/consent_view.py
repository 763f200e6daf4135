"""The serving node's view of consent: ``LiveConsent`` holds the current ``ConsentState`` (the cohorts with
every participant's codes in force, and the consent epoch they make) and rebuilds it when the consent store
(``node.consent``) has changed.

When: ``current`` is called once at the start of every query, before ``Ledger.begin`` decides (the epoch is
part of the charge). When nothing changed it costs one ``PRAGMA data_version`` on a kept connection (a few
microseconds); after a ``genogate-node consent`` command has committed, the first query rebuilds: the codes in
force (the store's, overridden by each changed participant's latest change), a ``Cohorts`` sharing every
attribute mask (``Cohorts.with_consent``), the cohort fingerprint over them (``node.store.cohort_sha256_of``,
the same function ingest records, so a store re-ingested with the overrides applied keeps its epoch) and its
consent epoch (``Ledger.register_epoch``: a changed fingerprint is a new epoch, never an old one revisited,
so no answer stored before a withdrawal answers a query after it). The node appends a ``consent_epoch`` entry
to its audit log when it applies a change. The rebuild reads only the consent store and what was read at
start (no genotype store read; nothing depends on the query).

Threading: the state is an immutable object swapped under a lock; a query uses the one state it got from
``current`` for its epoch, charge and cohort masks, so a change committed while it runs takes effect at the
next query. Concurrent first queries after a change wait for one rebuild.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from genogate.errors import StoreError
from node.backend import GenotypeBackend
from node.cohort import Cohorts
from node.consent import ConsentStore
from node.ledger import Ledger
from node.store import cohort_sha256_of

log = logging.getLogger("genogate.node")


@dataclass(frozen=True)
class ConsentState:
    """Who may be counted now: the cohorts with the codes in force, and their consent epoch."""

    cohorts: Cohorts
    epoch: int
    fingerprint: str
    overridden: int  # participants whose codes in force differ from the genotype store's


class LiveConsent:
    """The node's current ``ConsentState``, rebuilt when the consent store changes (module docstring)."""

    def __init__(
        self,
        backend: GenotypeBackend,
        ledger: Ledger,
        store: ConsentStore | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger, self._store, self._clock = ledger, store, clock
        self._base = Cohorts(backend)
        participants = backend.participants()
        self._pseudonyms = participants.pseudonym
        self._sid = {p: i for i, p in enumerate(self._pseudonyms)}
        self._rows = list(
            zip(
                participants.pseudonym,
                participants.sex,
                participants.birth_year,
                participants.ancestry,
                participants.phenotypes,
                strict=True,
            )
        )
        self._store_sha256 = backend.cohort_sha256()
        self._lock = threading.Lock()
        self._version = -1 if store is None else store.version()
        self._state = self._build(first=True)

    @property
    def base(self) -> Cohorts:
        """The cohorts as the genotype store holds them (attributes; consent as last ingested)."""
        return self._base

    def current(self) -> ConsentState:
        """The state in force now (rebuilt first if the consent store changed since the last call)."""
        store = self._store
        if store is None or store.version() == self._version:
            return self._state
        with self._lock:
            version = store.version()
            if version != self._version:
                self._state = self._build(first=False)
                self._version = version
            return self._state

    def _build(self, *, first: bool) -> ConsentState:
        overrides = {} if self._store is None else self._store.overrides()
        consent = list(self._base.consent)
        overridden = 0
        for pseudonym, codes in overrides.items():
            sid = self._sid.get(pseudonym)
            if sid is None:
                # Not in this store (recorded against another store's participants): never counted anyway.
                continue
            if tuple(sorted(codes)) != tuple(sorted(consent[sid])):
                consent[sid] = codes
                overridden += 1
        if overridden == 0:
            cohorts, fingerprint = self._base, self._store_sha256
        else:
            if len(self._pseudonyms) != self._base.n:
                raise StoreError("the store's participants were read without their pseudonyms")
            cohorts = self._base.with_consent(consent)
            fingerprint = cohort_sha256_of((*row, codes) for row, codes in zip(self._rows, consent, strict=True))
        now_ms = int(self._clock() * 1000)
        epoch = self._ledger.register_epoch(fingerprint, now_ms=now_ms)
        state = ConsentState(cohorts, epoch, fingerprint, overridden)
        previous = None if first else self._state
        if previous is None or previous.epoch != epoch:
            log.info("consent epoch", extra={"epoch": epoch, "overridden": overridden})
        if previous is not None and previous.epoch != epoch:
            self._ledger.record(
                {
                    "event": "consent_epoch",
                    "epoch": epoch,
                    "previous_epoch": previous.epoch,
                    "cohort_sha256": fingerprint,
                    "overridden": overridden,
                },
                now_ms=now_ms,
            )
        return state
