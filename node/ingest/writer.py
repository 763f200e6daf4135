"""Writes split, sample-mapped calls into a store inside the ingest transaction.

Buffers sparse rows and dense bitsets and appends them in large batches (DuckDB scans the numpy
buffers directly). Variant ids are given in arrival order; ingest renumbers them at the end when the
input was not in genomic order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import numpy.typing as npt

from genogate.genome import contig_rank
from node.records import N_CLASSES, SiteCalls
from node.store import DENSE_DIVISOR

_FLUSH_ROWS = 4_000_000
_FLUSH_DENSE_BYTES = 256 << 20


@dataclass
class WriteStats:
    sites: int = 0
    alleles: int = 0
    calls_sparse: int = 0
    bitsets: int = 0
    class_totals: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(N_CLASSES, dtype=np.int64))


class StoreWriter:
    def __init__(self, con: duckdb.DuckDBPyConnection, n_samples: int, first_vid: int):
        self.con = con
        self.n_samples = n_samples
        self.dense_min = max(1, n_samples // DENSE_DIVISOR)
        self.next_vid = first_vid
        self.stats = WriteStats()
        self._sparse: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.uint8]]] = []
        self._sparse_rows = 0
        self._dense: list[tuple[int, int, bytes]] = []
        self._dense_bytes = 0
        self._variants: dict[str, list[object]] = {k: [] for k in _VARIANT_COLUMNS}
        self._last_key: tuple[int, str, int] | None = None
        self._last_origin = ""
        self.in_order = True

    def add(self, calls: SiteCalls, sids: npt.NDArray[np.int32], source_id: int, line: int) -> None:
        """Append one ALT allele; ``sids`` are store sample ids (already mapped from file columns)."""
        vid = self.next_vid
        self.next_vid += 1
        key = (contig_rank(calls.chrom), calls.chrom, calls.pos)
        if self._last_key is not None and key < self._last_key:
            self.in_order = False
        self._last_key = key
        per_class = np.bincount(calls.cls, minlength=N_CLASSES)
        self.stats.class_totals += per_class
        self.stats.alleles += 1
        if calls.origin != self._last_origin:  # the ALT alleles of one record share its origin
            self.stats.sites += 1
            self._last_origin = calls.origin
        dense_classes = np.flatnonzero(per_class[1:] >= self.dense_min) + 1
        if len(dense_classes):
            sparse_keep = np.ones(len(sids), dtype=bool)
            for c in dense_classes:
                members = calls.cls == c
                bits = np.zeros(self.n_samples, dtype=bool)
                bits[sids[members]] = True
                packed = np.packbits(bits).tobytes()
                self._dense.append((vid, int(c), packed))
                self._dense_bytes += len(packed)
                sparse_keep &= ~members
            sids, cls = sids[sparse_keep], calls.cls[sparse_keep]
        else:
            cls = calls.cls
        if len(sids):
            self._sparse.append((np.full(len(sids), vid, dtype=np.int32), sids, cls))
            self._sparse_rows += len(sids)
        v = self._variants
        for name, value in zip(
            _VARIANT_COLUMNS,
            (
                vid,
                calls.chrom,
                key[0],
                calls.pos,
                calls.ref,
                calls.alt,
                source_id,
                line,
                *per_class[1:].tolist(),
            ),
            strict=True,
        ):
            v[name].append(value)
        if self._sparse_rows >= _FLUSH_ROWS or self._dense_bytes >= _FLUSH_DENSE_BYTES or len(v["vid"]) >= 200_000:
            self.flush()

    def flush(self) -> None:
        con = self.con
        if self._sparse:
            buf = {
                "vid": np.concatenate([s[0] for s in self._sparse]),
                "sid": np.concatenate([s[1] for s in self._sparse]),
                "cls": np.concatenate([s[2] for s in self._sparse]),
            }
            con.register("_sparse_buf", buf)
            con.execute("INSERT INTO calls SELECT vid, sid, cls FROM _sparse_buf")
            con.unregister("_sparse_buf")
            self.stats.calls_sparse += len(buf["vid"])
            self._sparse, self._sparse_rows = [], 0
        if self._dense:
            dbuf = {
                "vid": np.array([d[0] for d in self._dense], dtype=np.int32),
                "cls": np.array([d[1] for d in self._dense], dtype=np.uint8),
                "bits": np.array([d[2] for d in self._dense], dtype=object),
            }
            con.register("_dense_buf", dbuf)
            con.execute("INSERT INTO dense SELECT vid, cls, bits FROM _dense_buf")
            con.unregister("_dense_buf")
            self.stats.bitsets += len(self._dense)
            self._dense, self._dense_bytes = [], 0
        v = self._variants
        if v["vid"]:
            vbuf = {
                "vid": np.array(v["vid"], dtype=np.int32),
                "chrom": np.array(v["chrom"], dtype=object),
                "contig_order": np.array(v["contig_order"], dtype=np.int32),
                "pos": np.array(v["pos"], dtype=np.int32),
                "ref": np.array(v["ref"], dtype=object),
                "alt": np.array(v["alt"], dtype=object),
                "source_id": np.array(v["source_id"], dtype=np.int32),
                "line": np.array(v["line"], dtype=np.int64),
                **{name: np.array(v[name], dtype=np.int32) for name in _VARIANT_COLUMNS[8:]},
            }
            con.register("_variant_buf", vbuf)
            con.execute(f"INSERT INTO variants SELECT {', '.join(_VARIANT_COLUMNS)} FROM _variant_buf")
            con.unregister("_variant_buf")
            self._variants = {k: [] for k in _VARIANT_COLUMNS}


_VARIANT_COLUMNS = (
    "vid",
    "chrom",
    "contig_order",
    "pos",
    "ref",
    "alt",
    "source_id",
    "line",
    "n_het",
    "n_hom_alt",
    "n_hemi_ref",
    "n_hemi_alt",
    "n_no_call",
)
