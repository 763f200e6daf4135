"""The synthetic cohort's specification and its participants: ``SynthSpec`` (what to generate, all from one
seed; validated), the genome it lives on (``GRCH38_CHROMOSOMES``, ``GRCH38_PARS``, ``BUILD``), ``Cohort`` (the
participants: sex, birth year, ancestry group, case status, phenotypes, consent, drawn by ``cohort``) and
``Part`` (one of n disjoint institutions of a cohort).

Part of the synthetic data generator (``node.ingest.synth``, whose docstring describes the model; the
variant sites are ``node.ingest.synth_sites``, the genotypes ``node.ingest.synth_sample``, the files
``node.ingest.synth_files``). This module, ``synth_sites`` and ``synth_sample`` alone may use a seeded PRNG
(numpy's ``Generator``): they make *data*, reproducibly from ``SynthSpec.seed``, and never draw privacy
noise, which comes from OpenDP only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from genogate.genome import canonical_contig

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
    if not problems and any(n > length - 4 for n, (_, length) in zip(allocate(spec), spec.chromosomes, strict=True)):
        problems.append("more variants than positions on a chromosome")
    return problems


def _weights_ok(pairs: tuple[tuple[str, float], ...]) -> bool:
    return len(pairs) > 0 and all(w > 0 for _, w in pairs)


def allocate(spec: SynthSpec) -> list[int]:
    """Records per chromosome, proportional to length (largest remainder, so they sum to ``variants``)."""
    lengths = np.array([n for _, n in spec.chromosomes], dtype=np.float64)
    quota = spec.variants * lengths / lengths.sum()
    counts = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - counts), kind="stable")[: spec.variants - int(counts.sum())]
    counts[extra] += 1
    return [int(c) for c in counts]


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


# ------------------------------------------------------------------------------------------------- parts


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
