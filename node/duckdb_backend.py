"""``DuckDBBackend``: the DuckDB store (``node.store``) as the query path's ``node.backend.GenotypeBackend``, every
read a DuckDB statement on the calling thread's own cursor, variant lookups through an in-memory
``node.variant_index.VariantIndex``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from genogate.query import Region, Variant
from node.ontology import TermIndex
from node.participants import Participants
from node.store import Calls, Store, VariantRows
from node.variant_index import VariantIndex


class DuckDBBackend:
    """The DuckDB store as a ``node.backend.GenotypeBackend``: every read a DuckDB statement, on the calling
    thread's own cursor (``Store.cursor``); variant lookups through an in-memory ``VariantIndex``.

    ``point_reads`` (a serving node): the variant index, participants and layout flags are loaded at once and
    DuckDB then runs each statement on one thread (one thread per small scan: handing it to a second thread
    costs a quarter of a read's CPU, measured). Without it (an operator's whole-store scans, ``freq``) they
    are loaded when first asked for and DuckDB keeps its own threads.
    """

    prefetch = True  # a read is a DuckDB statement (~0.5 ms of CPU): worth starting on a fetch worker

    def __init__(self, store: Store, *, point_reads: bool = True):
        self._root = store
        self._local = threading.local()
        self._lock = threading.Lock()
        self._index: VariantIndex | None = None
        self._participants: Participants | None = None
        if point_reads:
            # Everything a cursor copies from the root (``Store.cursor``), read once before any cursor exists.
            store.load_caches()
            self._index, self._participants = VariantIndex(store), store.participants()
            store.con.execute("SET threads = 1")

    @classmethod
    def open(cls, path: Path, *, point_reads: bool = True) -> DuckDBBackend:
        store = Store.open(path)
        try:
            return cls(store, point_reads=point_reads)
        except BaseException:
            store.close()
            raise

    def _store(self) -> Store:
        """This thread's cursor on the store (a connection shared across threads gave wrong results)."""
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self._root.cursor()
        return store

    @property
    def path(self) -> Path:
        return self._root.path

    @property
    def build(self) -> str | None:
        return self._root.build

    @property
    def n_samples(self) -> int:
        return self._root.n_samples

    def contigs(self) -> list[str]:
        return self._root.contigs()

    def covered_regions(self) -> list[Region] | None:
        return self._root.covered_regions()

    def cohort_sha256(self) -> str:
        return self._store().cohort_sha256()

    def participants(self) -> Participants:
        if self._participants is None:
            with self._lock:
                if self._participants is None:
                    self._participants = self._store().participants()
        return self._participants

    def terms(self) -> TermIndex:
        return self._store().terms()

    def variants(self, region: Region | None = None) -> VariantRows:
        return self._store().variants(region)

    def _variant_index(self) -> VariantIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = VariantIndex(self._store())
        return self._index

    def lookup(self, variants: Sequence[Variant]) -> npt.NDArray[np.int32]:
        return self._variant_index().lookup(variants)

    def lookup_with_stand_ins(self, variants: Sequence[Variant]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        return self._variant_index().lookup_with_stand_ins(variants)

    def fetch(self, vids: npt.NDArray[np.int32]) -> Calls:
        return self._store().fetch(vids)

    def count(self, calls: Calls, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return Store.count(calls, mask)

    def class_counts(self, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return self.count(self.fetch(vids), mask)

    def carriers(
        self, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_], counted: npt.NDArray[np.bool_] | None = None
    ) -> int:
        return self._store().carriers(vids, mask, counted)

    def close(self) -> None:
        self._root.close()
