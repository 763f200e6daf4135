"""Synthetic cohorts: the participants, the variant records and a ``SiteCalls`` stream, all from one seed (the
sample sheet, truth and BGZF VCF files are written from them by ``node.ingest.synth_files``).

For demos, tests and benchmarks at biobank scale without real participants. The cohort has unequal ancestry
groups with Balding-Nichols allele frequencies, a rare-dominated site-frequency spectrum, chrX haploid males
outside the PARs, ~0.5% missing calls, ~1% tri-allelic records, and a case phenotype with a few *planted*
associated variants (``planted``/``truth.json`` name them) so a case/control demo has something to find.

This module is the ONE place in the product allowed a PRNG (numpy's seeded ``Generator``): it makes *data*,
reproducibly from ``SynthSpec.seed``; it never draws privacy noise, which comes from OpenDP only.

How genotypes are drawn (per block of variants, so cost follows the calls, not samples x variants):

* each record's per-sample GT is a *code* (``GT_CODES``); a record lists only samples whose code differs from the
  layout's baseline (``0/0``, or ``0`` for males on non-PAR chrX). The VCF text and the ``SiteCalls`` are
  both derived from that one list, so they agree exactly;
* rare variants: carriers are positions of a Bernoulli process drawn by geometric skips at the largest
  per-stratum carrier probability and thinned to each sample's stratum (ancestry x case x ploidy), which is
  exact Hardy-Weinberg sampling without touching non-carriers; missing calls are one Bernoulli process over
  the block's samples x variants; common variants (carrier probability > ``_DENSE_P``) draw densely;
* every record carries at least one ALT allele (a site seen in the cohort, as in a joint-called VCF): a draw
  with none gets one random carrier.

Output is a pure function of the spec for a given version of this module and of numpy (its Generator
streams, and float maths such as ``log``/``exp`` that may differ in the last bit between CPUs).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from genogate.genome import canonical_contig
from node.records import HEMI_ALT, HEMI_REF, HET, HOM_ALT, NO_CALL, SiteCalls

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

GRCH38_CHROMOSOMES: tuple[tuple[str, int], ...] = (
    ("1", 248956422), ("2", 242193529), ("3", 198295559), ("4", 190214555),
    ("5", 181538259), ("6", 170805979), ("7", 159345973), ("8", 145138636),
    ("9", 138394717), ("10", 133797422), ("11", 135086622), ("12", 133275309),
    ("13", 114364328), ("14", 107043718), ("15", 101991189), ("16", 90338345),
    ("17", 83257441), ("18", 80373285), ("19", 58617616), ("20", 64444167),
    ("21", 46709983), ("22", 50818468), ("X", 156040895),
)  # fmt: skip
BUILD = "GRCh38"
"""The synthetic cohort's genome build: its VCF's ##reference, and what ``SynthSource`` states to ingest."""
GRCH38_PARS: tuple[tuple[int, int], ...] = ((10001, 2781479), (155701383, 156030895))
"""chrX pseudo-autosomal regions (1-based, inclusive): males are diploid inside, haploid outside."""
DEFAULT_ANCESTRIES = (("AFR", 0.20), ("AMR", 0.15), ("EAS", 0.08), ("EUR", 0.45), ("SAS", 0.12))
DEFAULT_CONSENTS = (("GRU", 0.70), ("HMB", 0.12), ("DS-C50", 0.06), ("NPU;GRU", 0.10), ("WITHDRAWN", 0.02))
WITHDRAWN = "WITHDRAWN"
BACKGROUND_TERMS = (  # (term, rate in females, rate in males); unknown sex gets the mean
    ("HP:0000118", 0.20, 0.20),  # phenotypic abnormality
    ("HP:0001627", 0.03, 0.04),  # abnormal heart morphology
    ("ICD10:C50", 0.06, 0.001),  # breast cancer
    ("ICD10:E11", 0.07, 0.09),  # type 2 diabetes
    ("ICD10:I10", 0.15, 0.17),  # essential hypertension
)
SHEET_HEADER = ("sample_id", "sex", "birth_year", "ancestry", "phenotypes", "consent")
FEMALE, MALE, UNKNOWN_SEX = 0, 1, 2
SEX_LABELS = ("F", "M", "unknown")

_AF_EDGES = (1e-5, 0.005, 0.05, 0.5)  # rare | low-frequency | common bins of the base ALT frequency
_PLANTED_AF = (0.15, 0.35)
_DENSE_P = 0.05  # a variant whose carrier probability exceeds this in some stratum is drawn densely
_MIN_P = 1e-12  # carrier probabilities below this are treated as zero (expected carriers < 1e-5 at 10M)
_BLOCK = 1024  # variants drawn together

# Per-sample genotype codes of one record; 0..6 diploid, 7..10 haploid.
GT_CODES = ("0/0", "0/1", "1/1", "0/2", "1/2", "2/2", "./.", "0", "1", "2", ".")
_DIP_REF, _DIP_MISS, _HAP_REF, _HAP_MISS = 0, 6, 7, 10
_N_GT = len(GT_CODES)
_PRIO_MISSING, _PRIO_CARRIER = 0, 1  # which draw wins when two name one call


@functools.cache
def _class_table() -> U8:
    """``SiteCalls`` class of each GT code, for ALT1 (row 0) and ALT2 (row 1); other ALTs count as REF."""
    alt1 = (0, HET, HOM_ALT, 0, HET, 0, NO_CALL, HEMI_REF, HEMI_ALT, HEMI_REF, NO_CALL)
    alt2 = (0, 0, 0, HET, HET, HOM_ALT, NO_CALL, HEMI_REF, HEMI_REF, HEMI_ALT, NO_CALL)
    return np.array([alt1, alt2], dtype=np.uint8)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. ``seed`` fixes everything; the defaults give a realistic GRCh38 cohort."""

    samples: int
    variants: int
    seed: int
    ancestries: tuple[tuple[str, float], ...] = DEFAULT_ANCESTRIES  # (group, share)
    fst: float = 0.07  # Balding-Nichols differentiation of each group from the base frequency
    chromosomes: tuple[tuple[str, int], ...] = GRCH38_CHROMOSOMES  # (name, length); variants ~ length
    rare_fraction: float = 0.70  # share of ALT alleles with base AF in [1e-5, 0.5%)
    common_fraction: float = 0.10  # share with base AF in [5%, 50%); the rest in [0.5%, 5%)
    multiallelic_rate: float = 0.01  # records with two ALT alleles
    indel_rate: float = 0.08  # biallelic records that are 1-3 bp insertions or deletions
    missing_rate: float = 0.005  # per call
    unknown_sex_rate: float = 0.01
    case_phenotype: str = "HP:0001250"
    case_rate: float = 0.10
    planted_count: int = 5  # autosomal SNVs with ALT odds ratio ``planted_odds_ratio`` in cases
    planted_odds_ratio: float = 2.5
    consents: tuple[tuple[str, float], ...] = DEFAULT_CONSENTS  # (";"-joined DUO codes, share)
    birth_years: tuple[int, int] = (1930, 2010)  # inclusive

    def __post_init__(self) -> None:
        problems = _spec_problems(self)
        if problems:
            raise ValueError("invalid SynthSpec: " + "; ".join(problems))


def _spec_problems(spec: SynthSpec) -> list[str]:
    """Every reason the spec cannot be generated (empty when it can)."""
    rates = ("rare_fraction", "common_fraction", "multiallelic_rate", "indel_rate", "missing_rate",
             "unknown_sex_rate", "case_rate")  # fmt: skip
    checks = [
        (spec.samples >= 1, "samples must be >= 1"),
        (spec.variants >= 0, "variants must be >= 0"),
        (spec.seed >= 0, "seed must be >= 0"),
        (0 < spec.fst < 1, "fst must be in (0, 1)"),
        (all(0 <= getattr(spec, r) <= 1 for r in rates), f"{', '.join(rates)} must be in [0, 1]"),
        (spec.rare_fraction + spec.common_fraction <= 1, "rare_fraction + common_fraction must be <= 1"),
        (spec.missing_rate < 1, "missing_rate must be < 1"),
        (spec.planted_count >= 0 and spec.planted_odds_ratio > 0, "planted_count >= 0, odds ratio > 0"),
        (_weights_ok(spec.ancestries) and _weights_ok(spec.consents), "group/consent shares must be > 0"),
        (all(WITHDRAWN not in c or c == WITHDRAWN for c, _ in spec.consents), "WITHDRAWN must stand alone"),
        (spec.birth_years[0] <= spec.birth_years[1], "birth_years must be (first, last)"),
        (
            len({canonical_contig(c) for c, _ in spec.chromosomes}) == len(spec.chromosomes) > 0,
            "chromosome names must be unique",
        ),
        (all(n > 100 for _, n in spec.chromosomes), "chromosome lengths must be > 100"),
    ]
    problems = [msg for ok, msg in checks if not ok]
    if not problems and any(n > length - 4 for n, (_, length) in zip(_allocate(spec), spec.chromosomes, strict=True)):
        problems.append("more variants than positions on a chromosome")
    return problems


def _weights_ok(pairs: tuple[tuple[str, float], ...]) -> bool:
    return len(pairs) > 0 and all(w > 0 for _, w in pairs)


# ----------------------------------------------------------------------------------------------- cohort


@dataclass(frozen=True, eq=False)
class Cohort:
    """The participants, in VCF column order. ``sex`` uses FEMALE/MALE/UNKNOWN_SEX; ``ancestry`` indexes
    ``SynthSpec.ancestries``; ``case`` marks carriers of ``SynthSpec.case_phenotype``."""

    ids: tuple[str, ...]
    sex: U8
    birth_year: I64
    ancestry: I64
    case: npt.NDArray[np.bool_]
    phenotypes: tuple[str, ...]
    consent: tuple[str, ...]


def cohort(spec: SynthSpec) -> Cohort:
    """Draw the participants of ``spec`` (deterministic in ``spec``)."""
    rng = np.random.default_rng([spec.seed, 0])
    n = spec.samples
    width = max(6, len(str(n)))
    u = spec.unknown_sex_rate
    sex = rng.choice(3, size=n, p=[(1 - u) / 2, (1 - u) / 2, u]).astype(np.uint8)
    birth = rng.integers(spec.birth_years[0], spec.birth_years[1] + 1, size=n)
    ancestry = rng.choice(len(spec.ancestries), size=n, p=_shares(spec.ancestries))
    case = rng.random(n) < spec.case_rate
    consents = [c for c, _ in spec.consents]
    consent_idx = rng.choice(len(consents), size=n, p=_shares(spec.consents))
    return Cohort(
        ids=tuple(f"SYN{i:0{width}d}" for i in range(1, n + 1)),
        sex=sex,
        birth_year=birth.astype(np.int64),
        ancestry=ancestry.astype(np.int64),
        case=case,
        phenotypes=_phenotypes(rng, spec.case_phenotype, case, sex),
        consent=tuple(consents[i] for i in consent_idx),
    )


def _shares(pairs: tuple[tuple[str, float], ...]) -> F64:
    w = np.array([x for _, x in pairs], dtype=np.float64)
    return np.asarray(w / float(w.sum()), dtype=np.float64)


def _phenotypes(rng: np.random.Generator, case_term: str, case: npt.NDArray[np.bool_], sex: U8) -> tuple[str, ...]:
    """``;``-joined terms per participant: the case term first, then background terms at their rates."""
    rates = np.array([[f, m, (f + m) / 2] for _, f, m in BACKGROUND_TERMS])  # (terms, sex)
    has = rng.random((len(case), len(BACKGROUND_TERMS))) < rates[:, sex].T
    names = [t for t, _, _ in BACKGROUND_TERMS]
    rows = []
    for is_case, row in zip(case.tolist(), has.tolist(), strict=True):
        terms = ([case_term] if is_case else []) + [t for t, h in zip(names, row, strict=True) if h]
        rows.append(";".join(terms))
    return tuple(rows)


# ------------------------------------------------------------------------------------------------ sites


@dataclass(frozen=True, eq=False)
class _Sites:
    """One chromosome's records: sorted positions, alleles and ALT frequencies per ancestry group."""

    chrom: str
    pos: I64
    ref: list[str]
    alts: list[tuple[str, ...]]
    af: F64  # (records, groups, 2): ALT1/ALT2 frequency in controls (ALT2 = 0 when biallelic)
    af_case: F64  # same for cases; differs only at planted records


def _allocate(spec: SynthSpec) -> list[int]:
    """Records per chromosome, proportional to length (largest remainder, so they sum to ``variants``)."""
    lengths = np.array([n for _, n in spec.chromosomes], dtype=np.float64)
    quota = spec.variants * lengths / lengths.sum()
    counts = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - counts), kind="stable")[: spec.variants - int(counts.sum())]
    counts[extra] += 1
    return [int(c) for c in counts]


def _planted_local(spec: SynthSpec) -> list[I64]:
    """Per chromosome, the indices of its planted records (chosen among all autosomal records)."""
    counts = _allocate(spec)
    auto = [
        0 if canonical_contig(name) in ("X", "Y", "MT") else c
        for (name, _), c in zip(spec.chromosomes, counts, strict=True)
    ]
    k = min(spec.planted_count, sum(auto))
    chosen = np.random.default_rng([spec.seed, 3]).choice(sum(auto), size=k, replace=False)
    starts = np.cumsum(auto) - auto
    return [np.sort(chosen[(chosen >= s) & (chosen < s + a)] - s) for s, a in zip(starts, auto, strict=True)]


def _sites(spec: SynthSpec, ci: int, planted_idx: I64) -> _Sites:
    """Draw chromosome ``ci``'s records (deterministic in spec and ci, independent of the genotypes)."""
    name, length = spec.chromosomes[ci]
    chrom = canonical_contig(name)  # records carry canonical names, as ingest stores them
    n = _allocate(spec)[ci]
    rng = np.random.default_rng([spec.seed, 1, ci])
    pos = np.sort(rng.choice(length - 4, size=n, replace=False)).astype(np.int64) + 1
    multi = rng.random(n) < spec.multiallelic_rate
    base = np.stack([_base_af(rng, spec, n), _base_af(rng, spec, n)], axis=1)
    base[:, 1] = np.where(multi, np.minimum(base[:, 1], 0.95 - base[:, 0]), 0.0)
    ref, alts = _alleles(rng, np.where(rng.random(n) < spec.indel_rate, rng.integers(1, 3, size=n), 0), multi)
    base[planted_idx, 0] = rng.uniform(*_PLANTED_AF, size=len(planted_idx))
    base[planted_idx, 1] = 0.0
    _plant_snvs(ref, alts, planted_idx)
    af = _balding_nichols(rng, base, len(spec.ancestries), spec.fst)
    return _Sites(chrom, pos, ref, alts, af, _case_af(af, planted_idx, spec.planted_odds_ratio))


def _case_af(af: F64, planted_idx: I64, odds: float) -> F64:
    """Cases' frequencies: ALT1 odds multiplied by ``odds`` at planted records, unchanged elsewhere."""
    out = af.copy()
    p = af[planted_idx, :, 0]
    out[planted_idx, :, 0] = odds * p / (1 - p + odds * p)
    return out


def _base_af(rng: np.random.Generator, spec: SynthSpec, n: int) -> F64:
    """Base ALT frequencies: log-uniform within the rare / low-frequency / common bins of the spectrum."""
    shares = [spec.rare_fraction, 1 - spec.rare_fraction - spec.common_fraction, spec.common_fraction]
    b = rng.choice(3, size=n, p=np.clip(shares, 0, None) / sum(shares))
    lo, hi = np.log(np.array(_AF_EDGES[:-1])[b]), np.log(np.array(_AF_EDGES[1:])[b])
    return np.asarray(np.exp(rng.uniform(lo, hi)), dtype=np.float64)


def _balding_nichols(rng: np.random.Generator, base: F64, groups: int, fst: float) -> F64:
    """Per-group frequencies ~ Beta(p(1-F)/F, (1-p)(1-F)/F): mean p, variance F p (1-p)."""
    scale = (1 - fst) / fst
    p = np.repeat(base[:, None, :], groups, axis=1)
    live = p > 0
    safe = np.where(live, p, 0.5)
    af = np.where(live, rng.beta(safe * scale, (1 - safe) * scale), 0.0)
    total = af.sum(axis=2, keepdims=True)
    return np.asarray(np.where(total > 0.95, af * 0.95 / np.maximum(total, 1e-300), af), dtype=np.float64)


def _alleles(
    rng: np.random.Generator, kind: I64, multi: npt.NDArray[np.bool_]
) -> tuple[list[str], list[tuple[str, ...]]]:
    """REF and ALT strings: SNVs, 1-3 bp insertions (kind 1) and deletions (kind 2), two SNV ALTs if multi."""
    n = len(kind)
    bases = "ACGT"
    r, shift = rng.integers(0, 4, size=n), rng.integers(1, 4, size=n)
    extra, size = rng.integers(0, 4, size=(n, 3)), rng.integers(1, 4, size=n)
    refs: list[str] = []
    alts: list[tuple[str, ...]] = []
    for i in range(n):
        b, a1, a2 = bases[r[i]], bases[(r[i] + shift[i]) % 4], bases[(r[i] + shift[i] % 3 + 1) % 4]
        if multi[i]:
            refs.append(b)
            alts.append((a1, a2))
            continue
        seq = "".join(bases[x] for x in extra[i, : size[i]])
        ref, alt = ((b, a1), (b, b + seq), (b + seq, b))[int(kind[i])]
        refs.append(ref)
        alts.append((alt,))
    return refs, alts


def _plant_snvs(refs: list[str], alts: list[tuple[str, ...]], idx: I64) -> None:
    """Make the planted records biallelic SNVs: keep REF's first base, ALT the next base in ACGT."""
    for i in idx.tolist():
        b = refs[i][0]
        refs[i] = b
        alts[i] = ("ACGT"[("ACGT".index(b) + 1) % 4],)


def planted(spec: SynthSpec) -> list[str]:
    """The planted variants as ``chrom-pos-ref-alt``, in genome order."""
    out: list[str] = []
    for ci, idx in enumerate(_planted_local(spec)):
        if idx.size:
            s = _sites(spec, ci, idx)
            out += [f"{s.chrom}-{s.pos[i]}-{s.ref[i]}-{s.alts[i][0]}" for i in idx.tolist()]
    return out


# ---------------------------------------------------------------------------------------------- layouts


@dataclass(frozen=True, eq=False)
class _Layout:
    """Per-sample ploidy in one kind of region (autosomes and PARs, or non-PAR chrX), and its baseline.

    Strata are ``(ancestry * 2 + case) * 2 + haploid``: samples in one stratum share genotype probabilities.
    ``text`` is the VCF sample columns of an all-baseline record; sample ``i``'s GT starts at ``offset[i]``.
    """

    stratum: I64
    hap: npt.NDArray[np.bool_]
    base: U8  # baseline code per sample: 0/0, or 0 for haploid samples
    miss: U8  # missing code per sample: ./. or .
    sizes: I64  # members per stratum
    inv: I64  # each sample's position when samples are sorted by stratum
    haploid: bool
    text: U8 = field(repr=False)
    offset: I64 = field(repr=False)


def _layout(co: Cohort, hap: npt.NDArray[np.bool_]) -> _Layout:
    stratum = (co.ancestry * 2 + co.case) * 2 + hap
    n_strata = 4 * (int(co.ancestry.max()) + 1)
    width = np.where(hap, 2, 4)
    offset = np.cumsum(width) - width
    text = np.empty(int(width.sum()), dtype=np.uint8)
    text[offset[~hap][:, None] + np.arange(4)] = np.frombuffer(b"0/0\t", np.uint8)
    text[offset[hap][:, None] + np.arange(2)] = np.frombuffer(b"0\t", np.uint8)
    text[-1] = ord("\n")
    return _Layout(
        stratum=stratum.astype(np.int64),
        hap=hap,
        base=np.where(hap, _HAP_REF, _DIP_REF).astype(np.uint8),
        miss=np.where(hap, _HAP_MISS, _DIP_MISS).astype(np.uint8),
        sizes=np.bincount(stratum, minlength=n_strata).astype(np.int64),
        inv=np.argsort(np.argsort(stratum, kind="stable")).astype(np.int64),
        haploid=bool(hap.any()),
        text=text,
        offset=offset.astype(np.int64),
    )


def _in_par(pos: I64) -> npt.NDArray[np.bool_]:
    inside = np.zeros(len(pos), dtype=np.bool_)
    for lo, hi in GRCH38_PARS:
        inside |= (pos >= lo) & (pos <= hi)
    return inside


def _segments(sites: _Sites, diploid: _Layout, xhap: _Layout) -> Iterator[tuple[int, int, _Layout]]:
    """Runs of records sharing a layout: all of them, or chrX split at the PAR boundaries."""
    if sites.chrom != "X" or not xhap.haploid:
        yield 0, len(sites.pos), diploid
        return
    nonpar = ~_in_par(sites.pos)
    cuts = [0, *(np.flatnonzero(nonpar[1:] != nonpar[:-1]) + 1).tolist(), len(nonpar)]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi > lo:
            yield lo, hi, (xhap if nonpar[lo] else diploid)


# -------------------------------------------------------------------------------------------- genotypes


@dataclass(frozen=True, eq=False)
class SiteRecord:
    """One VCF record: the samples whose GT code differs from the layout's baseline (sorted), and codes."""

    chrom: str
    pos: int
    ref: str
    alts: tuple[str, ...]
    cols: npt.NDArray[np.int32]
    codes: U8
    layout: _Layout


def site_records(spec: SynthSpec, co: Cohort) -> Iterator[SiteRecord]:
    """Every record of the cohort, in chromosome then position order."""
    diploid = _layout(co, np.zeros(spec.samples, dtype=np.bool_))
    xhap = _layout(co, co.sex == MALE)
    for ci, planted_idx in enumerate(_planted_local(spec)):
        sites = _sites(spec, ci, planted_idx)
        rng = np.random.default_rng([spec.seed, 2, ci])
        for lo, hi, layout in _segments(sites, diploid, xhap):
            for b0 in range(lo, hi, _BLOCK):
                yield from _block(rng, sites, b0, min(b0 + _BLOCK, hi), layout, spec.missing_rate)


def _block(
    rng: np.random.Generator, sites: _Sites, b0: int, b1: int, lay: _Layout, missing: float
) -> Iterator[SiteRecord]:
    """Draw the calls of records ``b0:b1`` and yield them in order: rare records together (sparse draws,
    merged with the block's missing calls), common ones one by one (dense draws) as they are reached."""
    n, nb = len(lay.hap), b1 - b0
    probs = _code_probs(sites.af[b0:b1], sites.af_case[b0:b1], lay)
    carrier_p = _carrier_p(sites.af[b0:b1], sites.af_case[b0:b1], lay)
    p_max = carrier_p.max(axis=1)
    dense = p_max > _DENSE_P
    runs = [
        _missing(rng, nb, lay, missing),
        _sparse_carriers(rng, probs, carrier_p, np.where(dense, 0.0, p_max), lay),
    ]
    key, code = _force_alt(rng, *_merge(runs), ~dense, lay)
    var, col = np.divmod(key, n)
    col32 = col.astype(np.int32)
    bounds = np.searchsorted(var, np.arange(nb + 1)).tolist()
    thr, const, varies = _dense_tables(probs[dense], lay)
    slot = (np.cumsum(dense) - 1).tolist()
    for i in range(nb):
        j, a, z = b0 + i, bounds[i], bounds[i + 1]
        cols, codes = col32[a:z], code[a:z]
        if dense[i]:
            k = slot[i]
            cols, codes = _dense_calls(rng, (thr[k], const[k], varies[k]), lay, cols, codes)
        yield SiteRecord(sites.chrom, int(sites.pos[j]), sites.ref[j], sites.alts[j], cols, codes, lay)


def _stratum_af(af: F64, af_case: F64, lay: _Layout) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
    """ALT1 and ALT2 frequency per (record, stratum), and which strata are haploid."""
    s = np.arange(len(lay.sizes))
    anc, case, hap = s // 4, (s // 2) % 2 == 1, s % 2 == 1
    f = np.where(case[None, :, None], af_case[:, anc, :], af[:, anc, :])
    return f[..., 0], f[..., 1], hap


def _carrier_p(af: F64, af_case: F64, lay: _Layout) -> F64:
    """Probability that a sample's code differs from the baseline, per (record, stratum); 0 if empty."""
    p1, p2, hap = _stratum_af(af, af_case, lay)
    alt = p1 + p2
    p = np.where(hap[None, :], alt, alt * (2 - alt)) * (lay.sizes > 0)[None, :]
    return np.asarray(np.where(p < _MIN_P, 0.0, np.minimum(p, 1.0)), dtype=np.float64)


def _code_probs(af: F64, af_case: F64, lay: _Layout) -> F64:
    """Hardy-Weinberg probability of each GT code, per (record, stratum, code), missingness aside."""
    p1, p2, hap = _stratum_af(af, af_case, lay)
    q = np.clip(1 - p1 - p2, 0.0, 1.0)
    zero = np.zeros_like(q)
    dip = np.stack([q * q, 2 * q * p1, p1 * p1, 2 * q * p2, 2 * p1 * p2, p2 * p2] + [zero] * 5, axis=-1)
    hapl = np.stack([zero] * 7 + [q, p1, p2, zero], axis=-1)
    return np.asarray(np.where(hap[None, :, None], hapl, dip), dtype=np.float64)


def _cumulative(p: F64) -> F64:
    """Normalised cumulative probabilities over the last axis; 2.0 from the last possible code on, so a
    uniform ``u`` in [0, 1) maps to code ``sum(u >= cum)`` without rounding past the last code."""
    cum = np.cumsum(p, axis=-1)
    total = cum[..., -1:]
    cum = cum / np.where(total > 0, total, 1.0)
    last = (_N_GT - 1) - np.argmax(p[..., ::-1] > 0, axis=-1)
    return np.asarray(np.where(np.arange(_N_GT) >= last[..., None], 2.0, cum), dtype=np.float64)


def _levels(cum: F64, used: npt.NDArray[np.bool_]) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Split ``code = sum(u >= cum[row])`` (rows on axis -2) into a per-row constant, from the columns no
    used row must compare (cum <= 0 always counts, cum >= 1 never does), and the columns that vary."""
    always = cum <= 0
    varies = np.asarray(np.any(~(always | (cum >= 1)) & used[..., None], axis=-2), dtype=np.bool_)
    return (always & ~varies[..., None, :]).sum(axis=-1).astype(np.uint8), varies


def _pick_codes(u: F64, cum: F64, row: I64, used: npt.NDArray[np.bool_]) -> U8:
    """Code of each draw ``u`` under its row of ``cum``: one gather per column that varies between rows."""
    const, varies = _levels(cum, used)
    code = const[row]
    for j in np.flatnonzero(varies).tolist():
        code += u >= cum[:, j][row]
    return code


def _bernoulli(rng: np.random.Generator, p: F64, n: int) -> tuple[I64, I64]:
    """Positions in ``[0, n)`` of independent Bernoulli(``p[r]``) trials for every row ``r``, by geometric
    skips (cost follows the successes, not ``n``); returns (row, position) sorted by row then position."""
    last = np.full(len(p), -1, dtype=np.int64)
    active = np.flatnonzero(p > 0)
    # floor(E * scale) + 1 is Geometric(p) for E ~ Exp(1); cheaper than Generator.geometric
    scale = -1.0 / np.log1p(-np.clip(np.where(p > 0, p, 0.5), 0.0, 1 - 1e-16))
    rows: list[I64] = []
    pos: list[I64] = []
    while active.size:
        lam = (n - 1 - last[active]) * p[active]
        m = (lam + 6 * np.sqrt(lam) + 8).astype(np.int64)
        rid = np.repeat(active, m)
        gaps = (rng.standard_exponential(len(rid)) * scale[rid]).astype(np.int64) + 1  # Geometric(p)
        ends = np.cumsum(m)
        total = np.cumsum(gaps)
        at = np.repeat(total[ends - m] - gaps[ends - m] - last[active], m)
        where = total - at
        keep = where < n
        rows.append(rid[keep])
        pos.append(where[keep])
        last[active] = where[ends - 1]
        active = active[last[active] < n]
    if len(rows) <= 1:
        return (rows[0], pos[0]) if rows else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    r, q = np.concatenate(rows), np.concatenate(pos)
    order = np.lexsort((q, r))
    return r[order], q[order]


def _pack(var: I64, col: I64, prio: int, code: U8, n: int) -> I64:
    """One sortable int64 per call: (record, sample) first, then which draw wins, then the code."""
    return ((var * n + col) << 6) | (prio << 4) | code.astype(np.int64)


def _missing(rng: np.random.Generator, nb: int, lay: _Layout, rate: float) -> I64:
    """Missing calls: one Bernoulli process over the block's records x samples."""
    n = len(lay.hap)
    _, flat = _bernoulli(rng, np.array([rate]), nb * n)
    var, col = np.divmod(flat, n)
    return _pack(var, col, _PRIO_MISSING, lay.miss[col], n)


def _sparse_carriers(rng: np.random.Generator, probs: F64, carrier_p: F64, p_max: F64, lay: _Layout) -> I64:
    """Carriers of the records drawn sparsely: candidates at rate ``p_max``, each kept with probability
    ``carrier_p[stratum] / p_max`` (thinning); the same uniform, rescaled, then picks the GT code."""
    n, n_strata = len(lay.hap), len(lay.sizes)
    var, col = _bernoulli(rng, p_max, n)
    row = var * n_strata + lay.stratum[col]  # (record, stratum)
    ratio = (carrier_p / np.where(p_max > 0, p_max, 1.0)[:, None]).ravel()[row]
    u = rng.random(len(col))
    keep = u < ratio
    row, col, u = row[keep], col[keep], u[keep] / ratio[keep]
    cond = probs.copy()
    cond[..., [_DIP_REF, _HAP_REF]] = 0.0
    used = ((carrier_p > 0) & (p_max > 0)[:, None]).ravel()
    code = _pick_codes(u, _cumulative(cond).reshape(-1, _N_GT), row, used)
    return _pack(row // n_strata, col, _PRIO_CARRIER, code, n)


def _dense_tables(probs: F64, lay: _Layout) -> tuple[npt.NDArray[np.uint32], U8, npt.NDArray[np.bool_]]:
    """For common records (axis 0): 31-bit code thresholds per stratum, and their ``_levels`` split."""
    cum = _cumulative(probs)
    const, varies = _levels(cum, lay.sizes > 0)
    return np.minimum(np.ceil(cum * 2.0**31), 2.0**31).astype(np.uint32), const, varies


def _dense_calls(
    rng: np.random.Generator,
    tables: tuple[npt.NDArray[np.uint32], U8, npt.NDArray[np.bool_]],
    lay: _Layout,
    miss_cols: npt.NDArray[np.int32],
    miss_codes: U8,
) -> tuple[npt.NDArray[np.int32], U8]:
    """All non-baseline calls of one common record: one 31-bit uniform per sample, drawn in stratum order
    so each stratum compares against one threshold per code, then missing calls laid over."""
    thr, const, varies = tables
    n = len(lay.hap)
    u = rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n] >> 1
    code = np.repeat(const, lay.sizes) if const.any() else np.zeros(n, dtype=np.uint8)
    for j in np.flatnonzero(varies).tolist():
        code += u >= np.repeat(thr[:, j], lay.sizes)
    full = code[lay.inv]
    full[miss_cols] = miss_codes
    cols = np.flatnonzero(full != lay.base)
    if len(cols) == len(miss_cols):  # nothing but missing calls (tiny cohorts only): plant one carrier
        key, codes = _force_alt(rng, cols.astype(np.int64), full[cols], np.ones(1, dtype=np.bool_), lay)
        return key.astype(np.int32), codes
    return cols.astype(np.int32), full[cols]


def _force_alt(
    rng: np.random.Generator, key: I64, code: U8, eligible: npt.NDArray[np.bool_], lay: _Layout
) -> tuple[I64, U8]:
    """Give each eligible record without an ALT allele one random carrier (HET, or haploid ALT), so every
    record is a site seen in the cohort. ``key`` is ``record * samples + sample``, sorted."""
    n = len(lay.hap)
    is_call = (code != _DIP_MISS) & (code != _HAP_MISS)
    alive = np.bincount(key[is_call] // n, minlength=len(eligible))
    var = np.flatnonzero((alive == 0) & eligible)
    if var.size == 0:
        return key, code
    new_key = var * n + rng.integers(0, n, size=len(var))
    new_code = np.where(lay.hap[new_key % n], 8, 1).astype(np.uint8)
    at = np.searchsorted(key, new_key)
    taken = at < len(key)
    taken[taken] = key[at[taken]] == new_key[taken]  # a missing call there: the carrier replaces it
    code = code.copy()
    code[at[taken]] = new_code[taken]
    return np.insert(key, at[~taken], new_key[~taken]), np.insert(code, at[~taken], new_code[~taken])


def _merge(runs: list[I64]) -> tuple[I64, U8]:
    """Sorted ``record * samples + sample`` keys and codes; where two draws name one call the higher
    priority wins (the runs are each sorted, so the stable sort is a linear merge)."""
    vals = np.sort(np.concatenate(runs), kind="stable")
    key = vals >> 6
    first = np.ones(len(key), dtype=np.bool_)
    first[1:] = key[1:] != key[:-1]
    return key[first], (vals[first] & 15).astype(np.uint8)


# ------------------------------------------------------------------------------------ SiteCalls source


def _classes(rec: SiteRecord, k: int) -> tuple[npt.NDArray[np.int32], U8]:
    """Non-hom-ref calls of ALT ``k`` (0-based): haploid baselines are listed too, as HEMI_REF."""
    table = _class_table()[k]
    if rec.layout.haploid:
        full = rec.layout.base.copy()
        full[rec.cols] = rec.codes
        cls = table[full]
        sids = np.flatnonzero(cls != 0).astype(np.int32)
        return sids, cls[sids]
    cls = table[rec.codes]
    if len(rec.alts) == 1:  # biallelic diploid: every listed code is a non-hom-ref class
        return rec.cols, cls
    keep = cls != 0
    return rec.cols[keep], cls[keep]


Part = tuple[int, int]
"""``(i, n)``: the i-th (0-based) of n disjoint institutions of one cohort: participants ``i, i+n, i+2n, ...``
with the same variant sites, frequencies and planted association. ``(0, 1)`` is the whole cohort."""
WHOLE: Part = (0, 1)


def check_part(part: Part) -> Part:
    i, n = part
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"part {i + 1}/{n}: expected 1 <= I <= N")
    return part


def parse_part(text: str) -> Part:
    """``"I/N"`` (1-based, as the command line spells it) -> ``(I - 1, N)``."""
    left, sep, right = text.partition("/")
    if not sep or not left.strip().isdigit() or not right.strip().isdigit():
        raise ValueError(f"--part {text!r}: expected I/N, e.g. 2/3 for the second of three institutions")
    return check_part((int(left) - 1, int(right)))


class SynthSource:
    """A ``GenotypeSource`` over a synthetic cohort: the exact calls ``synth_files.write_vcf`` writes, split
    per ALT."""

    def __init__(self, spec: SynthSpec, part: Part = WHOLE) -> None:
        self._spec = spec
        self._cohort = cohort(spec)
        self._part = check_part(part)

    @property
    def samples(self) -> Sequence[str]:
        first, step = self._part
        return self._cohort.ids[first::step]

    @property
    def name(self) -> str:
        first, step = self._part
        return f"synthetic(seed={self._spec.seed})" + (f" part {first + 1}/{step}" if step > 1 else "")

    @property
    def spec(self) -> SynthSpec:
        return self._spec

    @property
    def header_build(self) -> str:
        """The build the cohort's positions are on (what a VCF header would state)."""
        return BUILD

    @property
    def cohort(self) -> Cohort:
        return self._cohort

    def records(self) -> Iterator[SiteCalls]:
        """One ``SiteCalls`` per ALT allele, sorted by chromosome (spec order) and position."""
        first, step = self._part
        for rec in site_records(self._spec, self._cohort):
            origin = f"synthetic:{rec.chrom}:{rec.pos}"
            for k, alt in enumerate(rec.alts):
                sids, cls = _classes(rec, k)
                if step > 1:  # this institution's participants, renumbered in its own column order
                    mine = sids % step == first
                    sids, cls = (sids[mine] // step).astype(np.int32), cls[mine]
                yield SiteCalls(rec.chrom, rec.pos, rec.ref, alt, sids, cls, origin)
