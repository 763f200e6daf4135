"""``VariantIndex``: the query path's in-memory ``chrom-pos-ref-alt -> vid`` lookup over a store's variants
(``node.store``), built once when a serving node opens its store (``node.duckdb_backend``, ``node.memory``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from genogate.query import Variant
from node.store import Store


class VariantIndex:
    """In-memory ``chrom-pos-ref-alt -> vid`` lookup for the query path (about 20 MB per million variants).

    Entries are sorted by (chromosome, position); REF/ALT are compared through a 64-bit BLAKE2b digest,
    so a wrong match needs a digest collision between two different alleles at the same position.
    Immutable after construction: threads may share it.
    """

    def __init__(self, store: Store):
        d = store.con.execute("SELECT vid, chrom, pos, ref, alt FROM variants").fetchnumpy()
        self._chrom = {c: i for i, c in enumerate(sorted(set(d["chrom"].tolist())))}
        codes = np.array([self._chrom[c] for c in d["chrom"].tolist()], dtype=np.int64)
        keys = (codes << 32) | d["pos"].astype(np.int64)
        digests = np.array(
            [_allele_digest(r, a) for r, a in zip(d["ref"].tolist(), d["alt"].tolist(), strict=True)], dtype=np.int64
        )
        order = np.lexsort((digests, keys))
        self._keys, self._digests, self._vids = keys[order], digests[order], d["vid"][order].astype(np.int32)

    def __len__(self) -> int:
        return len(self._vids)

    def lookup(self, variants: Sequence[Variant]) -> npt.NDArray[np.int32]:
        """The vid of each variant, -1 where the store does not hold it (callers zero-fill)."""
        vids, held = self.lookup_with_stand_ins(variants)
        return np.where(held, vids, -1).astype(np.int32)

    def lookup_with_stand_ins(self, variants: Sequence[Variant]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        """The vid of each variant and whether the store holds it; a variant it does not hold gets a stand-in:
        the vid of the stored variant next to it in (chromosome, position) order, whose rows the caller reads
        and does not count. Every requested variant thus costs one digest, two binary searches and one
        neighbouring row read, held or not, so the work of answering does not say which are held (-1 only
        for an empty store)."""
        vids = np.full(len(variants), -1, dtype=np.int32)
        held = np.zeros(len(variants), dtype=bool)
        last = len(self._vids) - 1
        for i, v in enumerate(variants):
            digest = _allele_digest(v.ref, v.alt)
            key = (self._chrom.get(v.chrom, len(self._chrom)) << 32) | v.pos
            lo = int(np.searchsorted(self._keys, key, side="left"))
            hi = int(np.searchsorted(self._keys, key, side="right"))
            hits = np.flatnonzero(self._digests[lo:hi] == digest)
            if len(hits):
                vids[i], held[i] = self._vids[lo + int(hits[0])], True
            elif last >= 0:
                vids[i] = self._vids[min(lo, last)]
        return vids, held


def _allele_digest(ref: str, alt: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{ref}\x00{alt}".encode(), digest_size=8).digest(), "little", signed=True)
