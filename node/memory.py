"""The in-memory backend: a read-only copy of a store's calls in memory (``MemoryCalls``), for the query path.

``MemoryBackend`` is the ``node.backend.GenotypeBackend`` that reads a query's rows from the copy instead of
a DuckDB statement (a few microseconds instead of ~0.5 ms of CPU on a thread competing for the GIL); it is
built from the DuckDB file at start and answers everything else (region variant lists, carriers, the
catalogue and participants) as ``node.duckdb_backend.DuckDBBackend`` does. Counts are the same: the conformance suite
(``tests/conformance/``) holds both backends to the same exact answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from node.duckdb_backend import DuckDBBackend
from node.store import Calls, Store, calls_of, scalar


class MemoryCalls:
    """A read-only copy of a store's calls in memory, for the query path: the same ``Calls`` as
    ``Store.fetch`` (the tests hold them equal), sliced out of numpy arrays instead of read by a DuckDB
    statement, whose fixed cost (parse, plan, scan a row group, convert) is most of a point query's.

    ``load`` takes it only when the whole copy fits the given size (a store's calls take about 9 bytes
    per stored call plus its dense bitsets); else the node reads through DuckDB. Immutable: threads share it.
    """

    def __init__(self, sparse: dict[str, Any], dense: dict[str, Any], n_variants: int):
        self._sparse, self._dense, self._top = sparse, dense, n_variants
        wanted = np.arange(n_variants + 1, dtype=np.int64)
        self._at = np.searchsorted(sparse["vid"], wanted)  # rows of vid v: _at[v] .. _at[v + 1]
        self._dense_at = np.searchsorted(dense["vid"], wanted)
        self.nbytes = sum(a.nbytes for a in sparse.values()) + self._at.nbytes + self._dense_at.nbytes
        self.nbytes += sum(a.nbytes for a in dense.values()) + sum(len(b) for b in dense["bits"])

    @staticmethod
    def size(store: Store) -> int:
        """Bytes the copy of ``store``'s calls would take (what ``load`` compares with its limit)."""
        rows = int(scalar(store.con, "SELECT count(*) FROM calls"))
        dense_rows = int(scalar(store.con, "SELECT count(*) FROM dense"))
        top = int(scalar(store.con, "SELECT coalesce(max(vid) + 1, 0) FROM variants"))
        bitset = -(-store.n_samples // 8)  # every bitset packs one bit per participant (StoreWriter)
        return rows * 9 + dense_rows * (5 + 8 + 33 + bitset) + 16 * (top + 1)

    @classmethod
    def load(cls, store: Store, max_bytes: int) -> MemoryCalls | None:
        """The copy of ``store``'s calls, or None when it would take more than ``max_bytes``."""
        return cls.read(store) if cls.size(store) <= max_bytes else None

    @classmethod
    def read(cls, store: Store) -> MemoryCalls:
        """The copy of ``store``'s calls, whatever it takes (``size`` says how much)."""
        top = int(scalar(store.con, "SELECT coalesce(max(vid) + 1, 0) FROM variants"))
        sparse = store.con.execute("SELECT vid, sid, cls FROM calls").fetchnumpy()
        if len(sparse["vid"]) and not bool((np.diff(sparse["vid"]) >= 0).all()):  # written in vid order, but
            order = np.argsort(sparse["vid"], kind="stable")  # a store need not keep rows in that order
            sparse = {k: v[order] for k, v in sparse.items()}
        dense = store.con.execute("SELECT vid, cls, bits FROM dense ORDER BY vid, cls").fetchnumpy()
        columns = {k: np.ascontiguousarray(v) for k, v in sparse.items()}
        dense_columns = {k: np.asarray(v) for k, v in dense.items()}
        for a in (*columns.values(), *dense_columns.values()):
            a.flags.writeable = False
        return cls(columns, dense_columns, top)

    def fetch(self, vids: npt.NDArray[np.int32]) -> Calls:
        """The calls of ``vids``, exactly as ``Store.fetch`` returns them (views into the copy)."""

        def span(first: int, last: int, part: npt.NDArray[np.int32]) -> tuple[dict[str, Any], dict[str, Any] | None]:
            first, end = min(first, self._top), min(last + 1, self._top)  # vids the store lacks have no rows
            a, b = self._at[first], self._at[end]
            sparse = {k: v[a:b] for k, v in self._sparse.items()}
            da, db = self._dense_at[first], self._dense_at[end]
            dense = {k: v[da:db] for k, v in self._dense.items()} if db > da else None
            return sparse, dense

        return calls_of(vids, span)


class MemoryBackend(DuckDBBackend):
    """A store's calls held in memory (``MemoryCalls.read``), everything else as ``DuckDBBackend``."""

    prefetch = False  # slicing the copy takes microseconds: a fetch worker would only add a thread hand-off

    def __init__(self, store: Store):
        super().__init__(store, point_reads=True)
        self._memory = MemoryCalls.read(store)
        self.nbytes = self._memory.nbytes

    def fetch(self, vids: npt.NDArray[np.int32]) -> Calls:
        return self._memory.fetch(vids)
