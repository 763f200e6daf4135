"""The definition of a storage backend (``node.backend.GenotypeBackend``): every backend, run on the same store
files (``conftest.KINDS``), gives exactly these answers.

* exact counts on real 1000 Genomes data equal bcftools +fill-tags and plink2 --geno-counts (SNPs, indels,
  symbolic SVs, split multi-allelic sites, chrX male half-calls, haploid chrMT; overall and per
  super-population, sex and case/control status: ``tests.reference``);
* participants, consent and cohort filters; the catalogue (build, contigs, coverage) and the cohort
  fingerprint; region variant lists; carriers;
* absent variants: looked up as absent, given a stored neighbour as stand-in, whose rows are read and not
  counted (the timing-oracle fix: ``tests/statistical/test_refusal_timing.py``);
* and every backend class implements every protocol member with the protocol's signature.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from genogate.filter import parse_filter
from genogate.query import Region, Variant
from node.backend import GenotypeBackend, ParticipantSource, open_backend
from node.cohort import Cohorts
from node.duckdb_backend import DuckDBBackend
from node.ingest import default_key_path, pseudonym
from node.memory import MemoryBackend
from node.records import HEMI_ALT, HEMI_REF, HET, HOM_ALT
from node.store import Store
from tests.conformance.conftest import MEMORY_MB
from tests.conftest import CASE_TERM, CONTROL_TERM, REFERENCE, SUBSET
from tests.reference import (
    acan_differences,
    counts,
    expected_acan,
    expected_gcount,
    expected_split,
    key,
    read_table,
)

IMPLEMENTATIONS = (DuckDBBackend, MemoryBackend)
YEAR = 2026
ALT = [HET, HOM_ALT, HEMI_ALT]


def _members(protocol: type) -> dict[str, object]:
    """The members a protocol (and the protocols it extends) declares, by name."""
    out: dict[str, object] = {}
    for base in reversed(protocol.__mro__):
        if getattr(base, "_is_protocol", False) and base.__module__ == "node.backend":
            out.update({n: v for n, v in vars(base).items() if not n.startswith("_")})
    return out


# The interface ---------------------------------------------------------------------------------------------


def test_the_protocol_declares_what_the_query_path_needs() -> None:
    members = _members(GenotypeBackend)
    assert {"participants", "terms"} <= set(_members(ParticipantSource))
    assert {
        "path", "build", "n_samples", "prefetch", "contigs", "covered_regions", "cohort_sha256", "participants",
        "terms", "variants", "lookup", "lookup_with_stand_ins", "fetch", "count", "class_counts", "carriers", "close",
    } == set(members)  # fmt: skip


@pytest.mark.parametrize("cls", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_every_backend_class_implements_every_protocol_member_with_its_signature(cls: type) -> None:
    for name, declared in _members(GenotypeBackend).items():
        assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
        if isinstance(declared, property):
            assert not callable(getattr(cls, name)), f"{cls.__name__}.{name} must be a value, not a method"
            continue
        ours = inspect.signature(getattr(cls, name))
        theirs = inspect.signature(declared)  # type: ignore[arg-type]
        assert list(ours.parameters.values()) == list(theirs.parameters.values()), f"{cls.__name__}.{name}"
        assert ours.return_annotation == theirs.return_annotation, f"{cls.__name__}.{name}"


def test_every_kind_builds_its_class_and_it_is_a_backend(tiny: GenotypeBackend, kind: str) -> None:
    assert isinstance(tiny, GenotypeBackend) and isinstance(tiny, ParticipantSource)
    assert type(tiny) is {"duckdb": DuckDBBackend, "memory": MemoryBackend}[kind]
    assert tiny.prefetch is (kind == "duckdb")  # the in-memory copy answers on the query's own thread
    assert isinstance(tiny.path, Path) and isinstance(tiny.n_samples, int)


def test_auto_takes_the_copy_only_when_it_fits_and_memory_refuses_a_store_that_does_not(tiny_store: Path) -> None:
    from genogate.errors import StoreError

    for kind, memory_mb, cls in (("auto", MEMORY_MB, MemoryBackend), ("auto", 0, DuckDBBackend)):
        backend = open_backend(tiny_store, kind, memory_mb)  # type: ignore[arg-type]
        try:
            assert type(backend) is cls
        finally:
            backend.close()
    with pytest.raises(StoreError, match="backend = 'memory' but the copy of its calls would take"):
        open_backend(tiny_store, "memory", 0)
    with pytest.raises(StoreError, match="unknown store backend"):
        open_backend(tiny_store, "spark", 0)  # type: ignore[arg-type]


# Catalogue, participants, consent and filters --------------------------------------------------------------


def test_catalogue_and_fingerprint(tiny: GenotypeBackend, tiny_store: Path) -> None:
    assert tiny.build == "GRCh37" and tiny.contigs() == ["1", "X", "Y"] and tiny.covered_regions() is None
    assert tiny.n_samples == 10
    store = Store.open(tiny_store)
    try:
        assert tiny.cohort_sha256() == store.cohort_sha256() and len(tiny.cohort_sha256()) == 64
    finally:
        store.close()


def test_participants_are_the_sheet(tiny: GenotypeBackend, tiny_sid: dict[str, int]) -> None:
    people = tiny.participants()
    order = [f"P{i}" for i in range(10)]

    def by_name(values: tuple[object, ...]) -> list[object]:
        return [values[tiny_sid[p]] for p in order]

    assert len(people) == 10 and sorted(tiny_sid.values()) == list(range(10))
    assert by_name(people.sex) == ["F", "M"] * 5
    assert by_name(people.birth_year) == [1950, 1960, 1970, 1980, 1990, 2000, 1955, None, 1975, 1985]
    assert by_name(people.ancestry) == ["EUR", "EUR", "AFR", "AFR", "EAS", "EAS", "SAS", None, "EUR", "AFR"]
    seizure = ("HP:0001250",)
    assert by_name(people.phenotypes) == [
        seizure,
        seizure,
        (),
        (),
        seizure,
        (),
        ("ICD10:Z00.0",),
        seizure,
        seizure,
        seizure,
    ]
    assert [sorted(c) for c in by_name(people.consent)] == [  # type: ignore[call-overload]
        ["GRU"], ["HMB"], ["GRU"], ["GRU", "NPU"], ["GRU"], ["HMB"], ["GRU"], ["GRU"], ["WITHDRAWN"], ["DS-C61"],
    ]  # fmt: skip
    # A term's participants include those annotated with any descendant (HP:0000118: every HPO abnormality).
    seized = sorted(tiny_sid[p] for p in ("P0", "P1", "P4", "P7", "P8", "P9"))
    assert people.under["HP:0001250"].tolist() == seized
    assert people.under["HP:0000118"].tolist() == seized
    assert people.under["ICD10:Z00.0"].tolist() == [tiny_sid["P6"]]
    assert all(ids.dtype == np.int32 and (np.diff(ids) > 0).all() for ids in people.under.values())
    # Each participant's keyed-hash pseudonym (how consent changes name them: ``node.consent``), in sid order.
    key = bytes.fromhex(default_key_path(tiny.path).read_text().strip())
    assert by_name(people.pseudonym) == [pseudonym(key, p) for p in order]


def test_live_consent_replaces_the_codes_and_keeps_the_fingerprint_function(
    tiny: GenotypeBackend, tiny_sid: dict[str, int]
) -> None:
    """What a serving node does with a consent change (``node.consent_view``): the same attributes with other
    codes, and the store's own fingerprint function over the codes in force."""
    from genogate import duo
    from node.store import cohort_sha256_of

    people, cohorts = tiny.participants(), Cohorts(tiny)
    rows = list(zip(people.pseudonym, people.sex, people.birth_year, people.ancestry, people.phenotypes, strict=True))
    assert cohort_sha256_of((*r, c) for r, c in zip(rows, people.consent, strict=True)) == tiny.cohort_sha256()
    codes = list(people.consent)
    codes[tiny_sid["P0"]] = (duo.WITHDRAWN,)
    changed = cohorts.with_consent(codes)
    gru = duo.parse_purpose("GRU")

    def admits(c: tuple[str, ...]) -> bool:
        return duo.admits(c, gru)

    before, after = cohorts.consented(gru, admits), changed.consented(gru, admits)
    assert before[tiny_sid["P0"]] and not after[tiny_sid["P0"]]
    assert int(before.sum()) - 1 == int(after.sum())
    assert (changed.mask(parse_filter("sex=F"), YEAR) == cohorts.mask(parse_filter("sex=F"), YEAR)).all()
    assert cohort_sha256_of((*r, c) for r, c in zip(rows, codes, strict=True)) != tiny.cohort_sha256()


def test_consent_groups_and_filters(tiny: GenotypeBackend, tiny_sid: dict[str, int]) -> None:
    cohorts = Cohorts(tiny)
    name = {sid: p for p, sid in tiny_sid.items()}

    def names(mask: npt.NDArray[np.bool_]) -> set[str]:
        return {name[int(i)] for i in mask.nonzero()[0]}

    groups = {tuple(sorted(codes)): names(mask) for codes, mask in cohorts.consent_groups}
    assert groups == {
        ("GRU",): {"P0", "P2", "P4", "P6", "P7"},
        ("HMB",): {"P1", "P5"},
        ("GRU", "NPU"): {"P3"},
        ("WITHDRAWN",): {"P8"},
        ("DS-C61",): {"P9"},
    }

    def members(f: str) -> set[str]:
        return names(cohorts.mask(parse_filter(f), YEAR))

    assert members("sex=F") == {"P0", "P2", "P4", "P6", "P8"}
    assert members("ancestry=eur") == {"P0", "P1", "P8"}  # canonical upper case
    assert members("age>=60") == {"P0", "P1", "P6"}  # P7's unknown birth year never matches
    assert members("not age>=60") == {"P2", "P3", "P4", "P5", "P7", "P8", "P9"}  # exactly the complement
    assert members("phenotype=HP:0000118") == {"P0", "P1", "P4", "P7", "P8", "P9"}  # a term matches descendants
    assert members("phenotype=HP:0001250 and sex=M") == {"P1", "P7", "P9"}
    assert members("") == set(tiny_sid)


def test_subset_participants_and_filters_equal_the_sheet(subset: GenotypeBackend) -> None:
    sheet = list(read_table(SUBSET / "1KG_phase3_subset_annot.tsv"))
    people = subset.participants()
    assert len(people) == subset.n_samples == len(sheet) == 1126
    cohorts = Cohorts(subset)
    for f, expected in (
        ("sex=F", sum(r["sex"] == "F" for r in sheet)),
        ("ancestry=EUR", sum(r["super_pop"] == "EUR" for r in sheet)),
        (f"phenotype={CASE_TERM}", 108),
        (f"phenotype={CONTROL_TERM}", len(sheet) - 108),
    ):
        assert int(cohorts.mask(parse_filter(f), YEAR).sum()) == expected, f
    assert subset.build == "GRCh37" and subset.contigs() == [*map(str, range(1, 23)), "X"]


# Exact counts on real data ---------------------------------------------------------------------------------


def test_overall_ac_an_equal_bcftools(subset: GenotypeBackend) -> None:
    ours = counts(subset)
    expected = expected_acan(REFERENCE / "1kg_subset_1126" / "bcftools_filltags_all.tsv")
    assert len(ours) == len(expected) == 26250  # 25,709 records, multi-allelics split
    bad = acan_differences(ours, None, expected)
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"


@pytest.mark.parametrize(
    ("by", "table", "groups"),
    [
        ("ancestry", "superpop", {"AFR": "AFR", "AMR": "AMR", "EAS": "EAS", "EUR": "EUR", "SAS": "SAS"}),
        ("sex", "sex", {"F": "female", "M": "male"}),
        ("phenotype", "status", {CASE_TERM: "case", CONTROL_TERM: "control"}),
    ],
)
def test_grouped_ac_an_equal_bcftools(subset: GenotypeBackend, by: str, table: str, groups: dict[str, str]) -> None:
    ours = counts(subset, by=by)
    path = REFERENCE / "1kg_subset_1126" / f"bcftools_filltags_by_{table}.tsv"
    for our_group, their_group in groups.items():
        bad = acan_differences(ours, our_group, expected_acan(path, their_group))
        assert not bad, f"{our_group}: {len(bad)} alleles differ, first: {bad[:3]}"


@pytest.mark.parametrize(
    ("where", "gcount"),
    [
        ("", "plink2.gcount"),
        (f"phenotype={CASE_TERM}", "plink2_bystatus.case.gcount"),
        (f"phenotype={CONTROL_TERM}", "plink2_bystatus.control.gcount"),
    ],
)
def test_genotype_classes_equal_plink2(subset: GenotypeBackend, where: str, gcount: str) -> None:
    """Biallelic sites, chrX male half-calls (haploid classes) included."""
    ref = REFERENCE / "1kg_subset_1126"
    expected = expected_gcount(ref / gcount, ref / "bcftools_filltags_all.tsv")
    ours = counts(subset, where=where)
    assert len(expected) == 25193
    bad = [(k, v, ours[(None, k)][2:]) for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} sites differ, first: {bad[:3]}"
    x = [v for k, v in expected.items() if k[0] == "X"]
    assert x and sum(v[HEMI_REF] + v[HEMI_ALT] for v in x) > 0  # the males' half-calls are counted haploid


@pytest.mark.parametrize(
    ("where", "gcount", "group"),
    [
        ("", "plink2.gcount", ""),
        (f"phenotype={CASE_TERM}", "plink2_bystatus.case.gcount", "case"),
        (f"phenotype={CONTROL_TERM}", "plink2_bystatus.control.gcount", "control"),
    ],
)
def test_split_multiallelic_classes_equal_plink2_multiallelic_columns(
    subset: GenotypeBackend, where: str, gcount: str, group: str
) -> None:
    ref = REFERENCE / "1kg_subset_1126"
    filltags = ref / ("bcftools_filltags_by_status.tsv" if group else "bcftools_filltags_all.tsv")
    expected = expected_split(ref / gcount, filltags, group)
    ours = counts(subset, where=where)
    assert len(expected) == 1057  # the ALT alleles of the 516 multi-allelic sites
    bad = [(k, v, ours[(None, k)][2:]) for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"


def test_chrmt_haploid_and_multiallelic_equal_bcftools_and_plink2(chrmt: GenotypeBackend) -> None:
    ref = REFERENCE / "1kg_chrMT_2534"
    ours = counts(chrmt)
    bad = acan_differences(ours, None, expected_acan(ref / "bcftools_filltags_all.tsv"))
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"
    expected = expected_gcount(ref / "plink2.gcount", ref / "bcftools_filltags_all.tsv")
    bad = [k for k, v in expected.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} sites differ, first: {bad[:3]}"
    assert all(v[2] == v[3] == v[4] == 0 for v in ours.values())  # no diploid calls on chrMT
    split = expected_split(ref / "plink2.gcount", ref / "bcftools_filltags_all.tsv")
    assert len(split) > 100
    bad = [(k, v, ours[(None, k)][2:]) for k, v in split.items() if ours[(None, k)][2:] != v]
    assert not bad, f"{len(bad)} alleles differ, first: {bad[:3]}"


def test_the_tiny_store_counts_every_class_exactly(tiny: GenotypeBackend, tiny_sid: dict[str, int]) -> None:
    variants = [
        Variant("1", 100, "A", "G"),
        Variant("1", 200, "C", "T"),
        Variant("1", 200, "C", "G"),
        Variant("X", 5000, "G", "A"),
        Variant("Y", 3000, "C", "T"),
    ]
    vids = tiny.lookup(variants)
    assert (vids >= 0).all()
    everyone = np.ones(10, dtype=bool)
    # columns: HOM_REF HET HOM_ALT HEMI_REF HEMI_ALT NO_CALL
    assert tiny.class_counts(vids, everyone).tolist() == [
        [6, 2, 2, 0, 0, 0],
        [7, 2, 0, 0, 0, 1],  # P0's 0/2 is reference for T; P2's 1/2 is HET for T and for G
        [7, 2, 0, 0, 0, 1],
        [3, 1, 1, 1, 3, 1],  # females diploid, males haploid, P5 missing
        [0, 0, 0, 2, 2, 6],  # males haploid; the females (and P9) missing
    ]
    males = np.zeros(10, dtype=bool)
    males[[tiny_sid[f"P{i}"] for i in (1, 3, 5, 7, 9)]] = True
    assert tiny.class_counts(vids[3:], males).tolist() == [[0, 0, 0, 1, 3, 1], [0, 0, 0, 2, 2, 1]]
    calls = tiny.fetch(np.concatenate([vids, vids[::-1], [-1]]).astype(np.int32))  # repeats, any order, absent
    got = tiny.count(calls, males)
    assert got[:5].tolist() == got[5:10][::-1].tolist() and got[10].tolist() == [5, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("n", [0, 1, 37])
def test_counts_equal_the_store_read_directly_for_any_vids_and_cohort(
    subset: GenotypeBackend, subset_store: Path, n: int
) -> None:
    """Any requested list (repeats, any order, -1 for absent) and any cohort: the same counts as ``Store``."""
    rng = np.random.default_rng(n)
    store = Store.open(subset_store)
    try:
        total = len(store.variants())
        for _ in range(5):
            vids = rng.integers(-1, total, size=n).astype(np.int32)
            mask = rng.random(subset.n_samples) < rng.random()
            assert np.array_equal(subset.class_counts(vids, mask), store.class_counts(vids, mask))
            fetched = subset.fetch(vids)
            assert np.array_equal(subset.count(fetched, ~mask), store.class_counts(vids, ~mask))  # read once
    finally:
        store.close()


# Absent variants: stand-ins read and not counted -----------------------------------------------------------


def test_absent_variants_get_a_stored_neighbour_as_stand_in(tiny: GenotypeBackend) -> None:
    rows = tiny.variants()
    held = [Variant("1", 100, "A", "G"), Variant("X", 5000, "G", "A")]
    absent = [
        Variant("1", 100, "A", "T"),  # a held position, another allele
        Variant("1", 150, "A", "T"),  # between two held variants
        Variant("Y", 9000, "A", "T"),  # past the last variant
        Variant("MT", 10, "A", "T"),  # a contig the store lacks
    ]
    assert tiny.lookup(held + absent).tolist() == [*tiny.lookup(held).tolist(), -1, -1, -1, -1]
    vids, is_held = tiny.lookup_with_stand_ins(held + absent)
    assert is_held.tolist() == [True, True, False, False, False, False]
    assert vids[:2].tolist() == tiny.lookup(held).tolist()
    assert (vids >= 0).all() and set(vids.tolist()) <= set(rows.vid.tolist())  # every stand-in is stored
    site = {int(rows.vid[i]): (rows.variant(i).chrom, rows.variant(i).pos) for i in range(len(rows))}
    assert site[int(vids[3])] == ("1", 200)  # the next stored variant in (contig, position) order
    everyone = np.ones(10, dtype=bool)
    assert tiny.class_counts(np.array([-1], dtype=np.int32), everyone).tolist() == [[10, 0, 0, 0, 0, 0]]


def test_a_stand_ins_rows_are_read_and_never_counted_as_carriers(subset: GenotypeBackend) -> None:
    rows = subset.variants(Region("22", 16_000_000, 17_500_000))
    assert len(rows) > 20
    held = [rows.variant(i) for i in range(0, len(rows), 2)]
    absent = [Variant(v.chrom, v.pos, v.ref, "N" * 7) for v in held]  # no such allele anywhere
    vids, is_held = subset.lookup_with_stand_ins(held + absent)
    assert is_held.tolist() == [True] * len(held) + [False] * len(absent)
    assert (vids[len(held) :] >= 0).all()
    everyone = np.ones(subset.n_samples, dtype=bool)
    only_held = subset.carriers(vids[: len(held)], everyone)
    assert only_held > 0
    assert subset.carriers(vids, everyone, is_held) == only_held
    assert subset.carriers(vids[len(held) :], everyone, np.zeros(len(absent), dtype=bool)) == 0
    assert subset.carriers(vids[len(held) :], everyone) > 0  # the stand-ins' own rows do carry alleles


# Region variants and carriers ------------------------------------------------------------------------------


def test_region_variants_equal_the_reference_table(subset: GenotypeBackend) -> None:
    region = Region("22", 17_000_000, 22_000_000)
    rows = subset.variants(region)
    table = REFERENCE / "1kg_subset_1126" / "bcftools_filltags_all.tsv"
    expected = sorted(
        (int(k[1]), k[2], k[3])
        for k in (key(r["CHROM"], r["POS"], r["REF"], a) for r in read_table(table) for a in r["ALT"].split(","))
        if k[0] == "22" and region.start <= int(k[1]) <= region.end
    )
    got = [(v.pos, v.ref, v.alt) for v in (rows.variant(i) for i in range(len(rows)))]
    assert len(got) > 50 and sorted(got) == expected
    assert [p for p, _, _ in got] == sorted(p for p, _, _ in got) and {str(c) for c in rows.chrom} == {"22"}
    assert len(subset.variants()) == 26250
    assert len(subset.variants(Region("22", 1, 10))) == 0


def _carriers_brute_force(backend: GenotypeBackend, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_]) -> int:
    """Members with an ALT class at any of ``vids``, one participant at a time through ``count``."""
    calls = backend.fetch(vids)
    n = 0
    for i in np.flatnonzero(mask):
        one = np.zeros(backend.n_samples, dtype=bool)
        one[i] = True
        n += bool(backend.count(calls, one)[:, ALT].any())
    return n


def test_carriers_equal_a_brute_force_count(tiny: GenotypeBackend, subset: GenotypeBackend) -> None:
    tiny_vids = tiny.variants().vid.astype(np.int32)
    everyone = np.ones(10, dtype=bool)
    assert tiny.carriers(tiny_vids[:3], everyone) == 6  # chr1: P0, P1, P2, P6, P8, P9
    for f in ("", "sex=M", "phenotype=HP:0001250"):
        mask = Cohorts(tiny).mask(parse_filter(f), YEAR)
        assert tiny.carriers(tiny_vids, mask) == _carriers_brute_force(tiny, tiny_vids, mask), f
    rows = subset.variants(Region("X", 2_000_000, 3_000_000))  # haploid males' half-calls among them
    vids = rows.vid[:40].astype(np.int32)
    for f in ("", "sex=M", f"phenotype={CASE_TERM}"):
        mask = Cohorts(subset).mask(parse_filter(f), YEAR)
        assert subset.carriers(vids, mask) == _carriers_brute_force(subset, vids, mask), f
    everyone = np.ones(subset.n_samples, dtype=bool)
    for vid in vids[:10]:  # one variant: its carriers are its ALT classes
        assert (
            subset.carriers(np.array([vid], dtype=np.int32), everyone)
            == subset.class_counts(np.array([vid], dtype=np.int32), everyone)[0, ALT].sum()
        )
