"""The hybrid store counts exactly what a brute-force count over a dense genotype matrix gives, whichever
layout (sparse rows or bitsets) each class ended up in, for any cohort and any requested variant list."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from genogate.query import Region
from node.duckdb_backend import DuckDBBackend
from node.freq import iter_all_counts
from node.ingest.writer import StoreWriter
from node.memory import MemoryCalls
from node.records import N_CLASSES, SiteCalls
from node.store import Store


def _build(n_samples: int, n_variants: int, seed: int) -> tuple[Store, np.ndarray]:
    rng = np.random.default_rng(seed)
    store = Store(duckdb.connect(":memory:"), Path(":memory:"))
    store.create_schema()
    store.con.execute(
        "INSERT INTO samples SELECT i, 'p' || i, 'U', NULL, NULL, []::VARCHAR[], ['GRU'] FROM range(?) t(i)",
        [n_samples],
    )
    writer = StoreWriter(store.con, n_samples, 0)
    dense = np.zeros((n_variants, n_samples), dtype=np.uint8)
    for v in range(n_variants):
        # Mix rare and common classes so both layouts are exercised.
        p = rng.choice([0.001, 0.02, 0.3, 0.6])
        dense[v] = np.where(rng.random(n_samples) < p, rng.integers(1, N_CLASSES, n_samples), 0)
        sids = np.flatnonzero(dense[v]).astype(np.int32)
        perm = rng.permutation(len(sids))  # sources may list calls in any order
        writer.add(SiteCalls("1", 100 + v, "A", "G", sids[perm], dense[v][sids[perm]], f"t:{v}"), sids[perm], 0, v)
    writer.flush()
    if n_samples >= 64:  # tiny cohorts put every class in a bitset
        assert writer.stats.bitsets > 0 and writer.stats.calls_sparse > 0
    return store, dense


def _brute(dense: np.ndarray, vids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros((len(vids), N_CLASSES), dtype=np.int64)
    for i, v in enumerate(vids):
        if v < 0:
            out[i, 0] = mask.sum()
        else:
            out[i] = np.bincount(dense[v][mask], minlength=N_CLASSES)
    return out


@pytest.mark.parametrize("n_samples", [1, 7, 64, 1000, 2049])
def test_counts_equal_brute_force(n_samples: int) -> None:
    store, dense = _build(n_samples, 60, seed=n_samples)
    rng = np.random.default_rng(1)
    for _ in range(10):
        mask = rng.random(n_samples) < rng.random()
        vids = rng.integers(-1, 60, size=rng.integers(0, 40)).astype(np.int32)  # holes, repeats, any order
        assert np.array_equal(store.class_counts(vids, mask), _brute(dense, vids, mask))


@pytest.mark.parametrize("n_samples", [1, 64, 2049])
def test_the_in_memory_copy_counts_exactly_as_the_store(n_samples: int) -> None:
    store, dense = _build(n_samples, 60, seed=n_samples)
    memory = MemoryCalls.load(store, 1 << 30)
    assert memory is not None
    rng = np.random.default_rng(2)
    for _ in range(20):
        mask = rng.random(n_samples) < rng.random()
        vids = rng.integers(-1, 60, size=rng.integers(0, 40)).astype(np.int32)  # holes, repeats, any order
        expected = _brute(dense, vids, mask)
        assert np.array_equal(Store.count(memory.fetch(vids), mask), expected)
        assert np.array_equal(Store.count(store.fetch(vids), mask), expected)
    beyond = np.array([59, 60, 1000], dtype=np.int32)  # vids the store lacks read as no rows
    assert np.array_equal(Store.count(memory.fetch(beyond), np.ones(n_samples, dtype=bool))[1:, 0], [n_samples] * 2)


def test_the_in_memory_copy_is_taken_only_when_it_fits_and_sorts_rows_it_finds_out_of_order() -> None:
    store, dense = _build(1000, 60, seed=5)
    store.con.execute("CREATE TABLE shuffled AS SELECT * FROM calls ORDER BY hash(vid * 7919 + sid)")
    store.con.execute("DROP TABLE calls")
    store.con.execute("ALTER TABLE shuffled RENAME TO calls")
    assert not (np.diff(store.con.execute("SELECT vid FROM calls").fetchnumpy()["vid"]) >= 0).all()
    need = MemoryCalls.size(store)
    assert MemoryCalls.load(store, need - 1) is None
    memory = MemoryCalls.load(store, need)
    assert memory is not None and 0 < memory.nbytes <= need
    mask = np.random.default_rng(3).random(1000) < 0.5
    vids = np.arange(-1, 60, dtype=np.int32)
    assert np.array_equal(Store.count(memory.fetch(vids), mask), _brute(dense, vids, mask))


def test_empty_and_full_cohorts() -> None:
    store, dense = _build(500, 30, seed=3)
    vids = np.arange(30, dtype=np.int32)
    none = np.zeros(500, dtype=bool)
    assert not store.class_counts(vids, none).any()
    full = np.ones(500, dtype=bool)
    assert np.array_equal(store.class_counts(vids, full), _brute(dense, vids, full))


def test_region_and_chunked_iteration_cover_every_variant() -> None:
    store, dense = _build(300, 50, seed=5)
    mask = np.arange(300) % 3 == 0
    seen = []
    for rows, counts in iter_all_counts(DuckDBBackend(store, point_reads=False), mask, Region("1", 110, 129)):
        assert np.array_equal(counts, _brute(dense, rows.vid, mask))
        seen.extend(rows.pos.tolist())
    assert seen == list(range(110, 130))


def test_lookup_marks_absent_variants() -> None:
    from genogate.query import Variant

    store, _ = _build(10, 5, seed=7)
    got = store.lookup([Variant("1", 102, "A", "G"), Variant("1", 102, "A", "T"), Variant("2", 102, "A", "G")])
    assert got.tolist() == [2, -1, -1]


def test_carriers_equal_brute_force() -> None:
    from node.records import HEMI_ALT, HET, HOM_ALT

    for n in (50, 2000):  # small: every class dense; large: both layouts
        store, dense = _build(n, 40, seed=n + 1)
        rng = np.random.default_rng(2)
        for _ in range(5):
            mask = rng.random(n) < 0.5
            vids = rng.integers(-1, 40, size=12).astype(np.int32)
            chosen = dense[vids[vids >= 0]]
            expected = (np.isin(chosen, (HET, HOM_ALT, HEMI_ALT)).any(axis=0) & mask).sum()
            assert store.carriers(vids, mask) == expected


def test_variant_index_agrees_with_sql_lookup() -> None:
    from genogate.query import Variant
    from node.variant_index import VariantIndex

    store, _ = _build(20, 40, seed=9)
    index = VariantIndex(store)
    wanted = [Variant("1", 100 + i, "A", alt) for i in range(-2, 45) for alt in ("G", "T")] + [
        Variant("7", 101, "A", "G")
    ]
    assert len(index) == 40
    assert index.lookup(wanted).tolist() == store.lookup(wanted).tolist()


def test_carriers_count_only_the_counted_vids() -> None:
    from node.records import HEMI_ALT, HET, HOM_ALT

    store, dense = _build(2000, 40, seed=11)
    rng = np.random.default_rng(3)
    for _ in range(10):
        mask = rng.random(2000) < 0.5
        vids = rng.integers(-1, 40, size=12).astype(np.int32)
        counted = rng.random(12) < 0.5
        chosen = dense[vids[(vids >= 0) & counted]]
        expected = (np.isin(chosen, (HET, HOM_ALT, HEMI_ALT)).any(axis=0) & mask).sum()
        assert store.carriers(vids, mask, counted) == expected


def test_stand_ins_are_stored_neighbours_and_marked_not_held() -> None:
    """A variant the store lacks gets a stored neighbour's vid (read like a held one's, never counted)."""
    from genogate.query import Variant
    from node.variant_index import VariantIndex

    store, _ = _build(20, 40, seed=9)
    index = VariantIndex(store)
    wanted = [Variant("1", 100 + i, "A", alt) for i in range(-2, 45) for alt in ("G", "T")] + [
        Variant("7", 101, "A", "G"),
        Variant("MT", 10**9, "C", "CA"),
    ]
    vids, held = index.lookup_with_stand_ins(wanted)
    assert held.tolist() == [v.alt == "G" and 0 <= v.pos - 100 < 40 and v.chrom == "1" for v in wanted]
    assert vids[held].tolist() == index.lookup(wanted)[held].tolist()
    assert ((vids >= 0) & (vids < 40)).all()  # every stand-in is a stored variant
    for v, vid, h in zip(wanted, vids.tolist(), held.tolist(), strict=True):
        if not h and v.chrom == "1":
            assert abs(vid - min(max(v.pos - 100, 0), 39)) <= 1  # its neighbour in position order
