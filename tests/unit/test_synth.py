"""The synthetic cohort generator: determinism, VCF == SiteCalls, sheet, chrX ploidy, planted signal,
spectrum and consent mix. Sizes are small so the module runs in seconds; every statistical assertion states
its false-failure bound (the seeds are fixed, so a failure would reproduce, but it must not be a fluke)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from cyvcf2 import VCF

from node.ingest import synth_sample, synth_sites, synth_spec
from node.ingest.synth import SynthSource
from node.ingest.synth_files import run, write_sheet, write_vcf
from node.ingest.synth_sites import planted
from node.ingest.synth_spec import SynthSpec, cohort
from node.records import HEMI_ALT, HEMI_REF, HET, HOM_ALT, NO_CALL, SiteCalls

SMALL = SynthSpec(samples=300, variants=500, seed=1)
# chr21 + chrX with many tri-allelic records: every GT path (diploid, haploid, multi-allelic) is exercised.
MIXED = SynthSpec(samples=300, variants=600, seed=5, multiallelic_rate=0.08,
                  chromosomes=(("chr21", 46709983), ("chrX", 156040895)))  # fmt: skip
X_ONLY = SynthSpec(samples=200, variants=2000, seed=9, chromosomes=(("chrX", 156040895),))


def _key(sc: SiteCalls) -> tuple[str, int, str, str, bytes, bytes, str]:
    return sc.chrom, sc.pos, sc.ref, sc.alt, sc.sids.tobytes(), sc.cls.tobytes(), sc.origin


def _calls(spec: SynthSpec) -> list[SiteCalls]:
    return list(SynthSource(spec).records())


def _decode(genotypes: npt.NDArray[np.int16], k: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """cyvcf2 ``genotype.array()`` (-1 missing allele, -2 vector end = haploid) to the classes of ALT ``k``
    (1-based), other ALTs counting as REF, as ``node.records`` defines them."""
    a, b = genotypes[:, 0], genotypes[:, 1]
    haploid, missing = b == -2, a == -1
    copies = (a == k).astype(np.int64) + (b == k)
    cls = np.where(haploid, np.where(a == k, HEMI_ALT, HEMI_REF), copies)
    cls = np.where(missing, NO_CALL, cls).astype(np.uint8)
    sids = np.flatnonzero(cls).astype(np.int32)
    return sids, cls[sids]


def _allele_freq(sc: SiteCalls, members: npt.NDArray[np.int64]) -> tuple[int, int]:
    """(AC, AN) of the diploid autosomal calls of ``members``."""
    cls = np.zeros(int(members.max()) + 1 if members.size else 0, dtype=np.uint8)
    keep = sc.sids < len(cls)
    cls[sc.sids[keep]] = sc.cls[keep]
    c = cls[members]
    return int((c == HET).sum() + 2 * (c == HOM_ALT).sum()), int(2 * (c != NO_CALL).sum())


def test_same_seed_gives_identical_files_and_calls(tmp_path: Path) -> None:
    a, b = run(tmp_path / "a", SMALL), run(tmp_path / "b", SMALL)
    assert set(a) == {"samples", "truth", "vcf"}
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert [_key(s) for s in _calls(SMALL)] == [_key(s) for s in _calls(SMALL)]


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    other = SynthSpec(samples=SMALL.samples, variants=SMALL.variants, seed=SMALL.seed + 1)
    a, b = run(tmp_path / "a", SMALL), run(tmp_path / "b", other)
    for name in a:
        assert a[name].read_bytes() != b[name].read_bytes(), name
    assert [_key(s) for s in _calls(SMALL)] != [_key(s) for s in _calls(other)]


@pytest.mark.parametrize("spec", [SMALL, MIXED, X_ONLY], ids=["small", "mixed", "x-only"])
def test_vcf_decodes_to_exactly_the_sitecalls(tmp_path: Path, spec: SynthSpec) -> None:
    path = write_vcf(spec, tmp_path / "c.vcf.gz")
    expected = iter(_calls(spec))
    vcf = VCF(str(path))
    assert list(vcf.samples) == list(SynthSource(spec).samples)
    for variant in vcf:
        genotypes = variant.genotype.array()[:, :2]
        for k, alt in enumerate(variant.ALT, start=1):
            sc = next(expected)
            assert (sc.chrom, sc.pos, sc.ref, sc.alt) == (variant.CHROM, variant.POS, variant.REF, alt)
            sids, cls = _decode(genotypes, k)
            np.testing.assert_array_equal(sc.sids, sids)
            np.testing.assert_array_equal(sc.cls, cls)
    assert next(expected, None) is None


def test_every_gt_path_is_exercised() -> None:
    calls = _calls(MIXED)
    seen = set(np.concatenate([s.cls for s in calls]).tolist())
    assert {HET, HOM_ALT, HEMI_REF, HEMI_ALT, NO_CALL} <= seen
    sites = [(s.chrom, s.pos) for s in calls]
    assert len(sites) > len(set(sites)), "no multi-allelic record"


def test_bgzf_structure(tmp_path: Path) -> None:
    path = write_vcf(SMALL, tmp_path / "c.vcf.gz")
    data = path.read_bytes()
    at, blocks = 0, 0
    while at < len(data):
        magic, flags, xlen, si1, si2, slen, bsize = struct.unpack_from("<3sB6xH2BHH", data, at)
        assert (magic, flags, xlen, si1, si2, slen) == (b"\x1f\x8b\x08", 4, 6, 66, 67, 2)
        isize = struct.unpack_from("<I", data, at + bsize - 3)[0]
        assert isize <= 65536
        at += bsize + 1
        blocks += 1
    assert at == len(data) and blocks > 2
    assert data.endswith(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    assert gzip.decompress(data).startswith(b"##fileformat=VCFv4.2\n")
    subprocess.run(["gzip", "-t", str(path)], check=True)
    if shutil.which("bgzip"):  # htslib's own check where Debian's tabix package is installed
        subprocess.run(["bgzip", "-t", str(path)], check=True)
    if shutil.which("tabix"):  # indexing needs valid BGZF offsets and sorted records
        subprocess.run(["tabix", "-p", "vcf", str(path)], check=True)
        assert path.with_name(path.name + ".tbi").stat().st_size > 0


def test_vcf_header(tmp_path: Path) -> None:
    lines = []
    with gzip.open(write_vcf(MIXED, tmp_path / "h.vcf.gz"), "rt") as fh:
        for line in fh:
            lines.append(line)
            if line.startswith("#CHROM"):
                break
    header = "".join(lines)
    assert header.startswith("##fileformat=VCFv4.2\n")
    assert "##source=genogate-synth\n" in header
    # The spec's chr21/chrX are written by their canonical names, with GRCh38's lengths and ##reference.
    assert "##reference=GRCh38\n" in header
    assert "##contig=<ID=21,length=46709983>\n##contig=<ID=X,length=156040895>\n" in header
    assert '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">' in header


def test_sheet_header_and_values(tmp_path: Path) -> None:
    spec = SynthSpec(samples=2000, variants=0, seed=3)
    rows = [line.split("\t") for line in write_sheet(spec, tmp_path / "s.tsv").read_text().splitlines()]
    assert rows[0] == ["sample_id", "sex", "birth_year", "ancestry", "phenotypes", "consent"]
    body = rows[1:]
    assert [r[0] for r in body] == [f"SYN{i:06d}" for i in range(1, 2001)]
    assert all(len(r) == 6 for r in body)
    assert {r[1] for r in body} == {"M", "F", "unknown"}
    assert all(1930 <= int(r[2]) <= 2010 for r in body)
    assert {r[3] for r in body} == {"AFR", "AMR", "EAS", "EUR", "SAS"}
    term = re.compile(r"^(HP:\d{7}|ICD10:[A-Z]\d\d(\.\d+)?)$")
    assert all(term.match(t) for r in body if r[4] for t in r[4].split(";"))
    assert any(r[4] == "" for r in body)
    duo = {"GRU", "HMB", "NPU", "DS-C50", "WITHDRAWN"}
    assert all(set(r[5].split(";")) <= duo for r in body)
    assert all(r[5] == "WITHDRAWN" for r in body if "WITHDRAWN" in r[5])
    assert {r[5] for r in body} == {"GRU", "HMB", "DS-C50", "NPU;GRU", "WITHDRAWN"}


def test_consent_and_case_mix() -> None:
    co = cohort(SynthSpec(samples=20000, variants=0, seed=4))
    n = len(co.ids)
    # Each share is Binomial(20000, p): the bounds sit >= 5 standard deviations from p, so each fails with
    # probability < 6e-7 (two-sided) and the test < 4e-6 overall.
    withdrawn = sum(c == "WITHDRAWN" for c in co.consent) / n
    assert 0.015 <= withdrawn <= 0.025  # p = 0.02, sd 0.001
    assert 0.09 <= co.case.mean() <= 0.11  # p = 0.10, sd 0.0021
    assert 0.005 <= (co.sex == synth_spec.UNKNOWN_SEX).mean() <= 0.015  # p = 0.01, sd 0.0007
    assert all(("HP:0001250" in ph.split(";")) == bool(c) for ph, c in zip(co.phenotypes, co.case, strict=True))


def test_chrx_males_haploid_outside_pars_only() -> None:
    co = cohort(X_ONLY)
    male = co.sex == synth_spec.MALE
    in_par = in_nonpar = 0
    for sc in _calls(X_ONLY):
        par = any(lo <= sc.pos <= hi for lo, hi in synth_spec.GRCH38_PARS)
        hemi = sc.sids[(sc.cls == HEMI_REF) | (sc.cls == HEMI_ALT)]
        if par:
            in_par += 1
            assert hemi.size == 0
        else:
            in_nonpar += 1
            # every male is listed, haploid or missing; nobody else is haploid
            males_here = male[sc.sids]
            assert males_here.sum() == male.sum()
            assert np.isin(sc.cls[males_here], [HEMI_REF, HEMI_ALT, NO_CALL]).all()
            assert not np.isin(sc.cls[~males_here], [HEMI_REF, HEMI_ALT]).any()
    # PARs hold ~2% of chrX: ~40 of 2000 records expected; none would be a ~e^-40 event
    assert in_par > 0 and in_nonpar > 0


def test_planted_variants_are_enriched_in_cases() -> None:
    spec = SynthSpec(samples=4000, variants=300, seed=2)
    co = cohort(spec)
    cases, controls = np.flatnonzero(co.case), np.flatnonzero(~co.case)
    by_id = {f"{s.chrom}-{s.pos}-{s.ref}-{s.alt}": s for s in _calls(spec)}
    ids = planted(spec)
    assert len(ids) == spec.planted_count == len(set(ids))
    for vid in ids:
        ac1, an1 = _allele_freq(by_id[vid], cases)
        ac0, an0 = _allele_freq(by_id[vid], controls)
        # Base AF p in [0.15, 0.35], ALT odds ratio 2.5 in cases (~400 cases, ~800 alleles): at the worst
        # p = 0.15 the case AF is 0.306 vs 0.15, the difference's sd is <= 0.019 even with only 300 cases,
        # so "case AF > control AF" fails with probability < 1e-16 per variant. The pooled odds ratio
        # averages ~2.4 (pooling groups attenuates it a little) with log-scale sd ~0.09 (measured over 150
        # variants); below 1.3 is > 6 sd away: probability < 1e-9 per variant.
        assert ac1 / an1 > ac0 / an0, vid
        odds = (ac1 / (an1 - ac1)) / (ac0 / (an0 - ac0))
        assert odds > 1.3, (vid, odds)


def test_rare_dominated_spectrum_and_missingness() -> None:
    spec = SynthSpec(samples=2000, variants=2000, seed=6, chromosomes=(("chr1", 248956422),))
    everyone = np.arange(spec.samples)
    freqs, no_calls, records, site = [], 0, 0, ("", 0)
    for sc in _calls(spec):
        ac, an = _allele_freq(sc, everyone)
        freqs.append(ac / an)
        if (sc.chrom, sc.pos) != site:  # a tri-allelic record's two ALTs list the same no-calls
            site = (sc.chrom, sc.pos)
            records += 1
            no_calls += int((sc.cls == NO_CALL).sum())
    af = np.array(freqs)
    # Base spectrum 70% < 0.5%, 20% in [0.5%, 5%), 10% >= 5%; sampling 4000 alleles and drift across groups
    # move some records across the edges. Over 30 seeds the shares were 0.729 (sd 0.0096) and 0.113 (sd
    # 0.0060): the bounds are >= 7.8 sd away, a false failure < 1e-14.
    assert 0.62 <= (af < 0.005).mean() <= 0.82
    assert 0.05 <= (af > 0.05).mean() <= 0.16
    # only the second ALT of a tri-allelic record may be absent: ~20 such records (sd 4.5), bound 50
    assert (af == 0).mean() < 0.025
    # missing: 0.5% of ~4 million calls, sd 0.0000354 -> bounds are > 10 sd away
    assert 0.004 <= no_calls / (spec.samples * records) <= 0.006


def test_every_record_carries_an_alt_allele(tmp_path: Path) -> None:
    for variant in VCF(str(write_vcf(SMALL, tmp_path / "c.vcf.gz"))):
        assert (variant.genotype.array()[:, :2] > 0).any()


def test_carrier_counts_match_hardy_weinberg() -> None:
    """Sparse (thinned geometric skips) and dense draws both give the carrier and hom-alt counts the
    per-stratum frequencies predict."""
    spec = SynthSpec(samples=3000, variants=3000, seed=8, multiallelic_rate=0.0, missing_rate=0.0,
                     chromosomes=(("chr1", 248956422),))  # fmt: skip
    co = cohort(spec)
    lay = synth_sample._layout(co, np.zeros(spec.samples, dtype=np.bool_))
    sites = synth_sites.chromosome_sites(spec, 0, synth_sites.planted_local(spec)[0])
    p = synth_sample._carrier_p(sites.af, sites.af_case, lay)
    p_hom = synth_sample._code_probs(sites.af, sites.af_case, lay)[..., 2]
    calls = _calls(spec)
    carriers = np.array([len(s.sids) for s in calls])
    hom = np.array([(s.cls == HOM_ALT).sum() for s in calls])
    expected, var = p @ lay.sizes, (p * (1 - p)) @ lay.sizes
    # Records expected to have >= 20 carriers (none gets a forced carrier, P(0 carriers) < e^-20).
    for dense in (True, False):
        pick = ((p.max(axis=1) > synth_sample._DENSE_P) == dense) & (expected >= 20)
        assert pick.sum() > 50
        # sums of independent counts: |z| > 6 has probability < 2e-9
        z = (carriers[pick].sum() - expected[pick].sum()) / np.sqrt(var[pick].sum())
        assert abs(z) < 6, (dense, z)
        hom_exp, hom_var = p_hom[pick] @ lay.sizes, (p_hom[pick] * (1 - p_hom[pick])) @ lay.sizes
        z = (hom[pick].sum() - hom_exp.sum()) / np.sqrt(hom_var.sum())
        assert abs(z) < 6, (dense, z)


def test_source_protocol_and_order() -> None:
    src = SynthSource(MIXED)
    assert src.name == "synthetic(seed=5)"
    assert len(src.samples) == MIXED.samples
    order = {name.removeprefix("chr"): i for i, (name, _) in enumerate(MIXED.chromosomes)}  # canonical names
    last = (-1, 0)
    for sc in src.records():
        here = (order[sc.chrom], sc.pos)
        assert here >= last
        last = here
        assert sc.origin == f"synthetic:{sc.chrom}:{sc.pos}"
        assert sc.sids.dtype == np.int32 and sc.cls.dtype == np.uint8
        assert (np.diff(sc.sids) > 0).all() and sc.sids.min(initial=0) >= 0
        assert sc.sids.max(initial=0) < MIXED.samples
        assert ((sc.cls >= 1) & (sc.cls <= 5)).all()


def test_truth_and_run_without_vcf(tmp_path: Path) -> None:
    paths = run(tmp_path / "out", SMALL, vcf=False)
    assert set(paths) == {"samples", "truth"}
    assert not (tmp_path / "out" / "cohort.vcf.gz").exists()
    truth = json.loads(paths["truth"].read_text())
    assert truth["case_phenotype"] == "HP:0001250"
    assert truth["planted_variants"] == planted(SMALL)
    assert truth["spec"]["seed"] == SMALL.seed and truth["spec"]["samples"] == SMALL.samples
    ids = {f"{s.chrom}-{s.pos}-{s.ref}-{s.alt}" for s in _calls(SMALL)}
    assert set(truth["planted_variants"]) <= ids


@pytest.mark.parametrize(
    "bad",
    [
        {"samples": 0},
        {"seed": -1},
        {"missing_rate": 1.0},
        {"rare_fraction": 0.8, "common_fraction": 0.3},
        {"consents": (("GRU", 0.9), ("WITHDRAWN;GRU", 0.1))},
        {"chromosomes": (("chr1", 1000),), "variants": 5000},
    ],
)
def test_invalid_spec_is_refused(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"samples": 10, "variants": 10, "seed": 0, **bad}
    with pytest.raises(ValueError, match="invalid SynthSpec"):
        SynthSpec(**args)  # type: ignore[arg-type]


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("bcftools") is None, reason="needs bcftools")
def test_bcftools_counts_match_sitecalls(tmp_path: Path) -> None:
    """bcftools' own split (``norm -m-``) and AN/AC (``+fill-tags``) agree with the SiteCalls, haploid chrX
    males and tri-allelic records included."""
    path = write_vcf(MIXED, tmp_path / "c.vcf.gz")
    norm = subprocess.run(["bcftools", "norm", "-m-", "-Ou", str(path)], check=True, capture_output=True)
    tags = ["bcftools", "+fill-tags", "-Ou", "-", "--", "-t", "AN,AC"]
    filled = subprocess.run(tags, input=norm.stdout, check=True, capture_output=True)
    query = ["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\t%AN\t%AC\n", "-"]
    got = subprocess.run(query, input=filled.stdout, check=True, capture_output=True).stdout.decode()
    want = []
    for sc in _calls(MIXED):
        c = np.bincount(sc.cls, minlength=6)
        an = 2 * (MIXED.samples - len(sc.sids) + c[HET] + c[HOM_ALT]) + c[HEMI_REF] + c[HEMI_ALT]
        ac = c[HET] + 2 * c[HOM_ALT] + c[HEMI_ALT]
        want.append(f"{sc.chrom}\t{sc.pos}\t{sc.ref}\t{sc.alt}\t{an}\t{ac}\n")
    assert got == "".join(want)


def test_store_path_and_vcf_path_give_the_same_canonical_grch38_store(tmp_path: Path) -> None:
    """``synth --store`` writes canonical names and the build directly; ingesting ``synth``'s VCF (whose header
    states GRCh38) gives the very same variants and counts."""
    from node import freq
    from node.duckdb_backend import DuckDBBackend
    from node.ingest import ingest
    from node.synth_cli import synth_store

    paths, summary = synth_store(tmp_path / "direct.duckdb", tmp_path / "direct", MIXED, progress=False)
    assert (summary.build, summary.build_from) == ("GRCh38", "from the file header")
    files = run(tmp_path / "vcf", MIXED)
    ingest(tmp_path / "via_vcf.duckdb", [files["vcf"]], files["samples"])
    rows = []
    for name in ("direct.duckdb", "via_vcf.duckdb"):
        backend = DuckDBBackend.open(tmp_path / name, point_reads=False)
        try:
            assert backend.build == "GRCh38" and backend.contigs() == ["21", "X"]
            rows.append(list(freq.rows(backend)))
        finally:
            backend.close()
    assert len(rows[0]) > 600 and rows[0] == rows[1]
    assert all(v.split("-")[0] in ("21", "X") for v in planted(MIXED))
