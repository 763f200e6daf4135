"""The synthetic cohort's variant sites: per chromosome, sorted positions, REF/ALT alleles and ALT frequencies
per ancestry group (a rare-dominated site-frequency spectrum, Balding-Nichols differentiation, ~1%
tri-allelic and some indel records), and the *planted* case-associated SNVs (``planted``).

Part of the synthetic data generator (``node.ingest.synth``, whose docstring describes the model). Each
chromosome's sites are drawn from their own seeded stream (``[seed, 1, chromosome]``), independent of the
genotypes (``node.ingest.synth_sample``); a seeded PRNG makes *data* here, never privacy noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from genogate.genome import canonical_contig
from node.ingest.synth_spec import F64, I64, SynthSpec, allocate

_AF_EDGES = (1e-5, 0.005, 0.05, 0.5)  # rare | low-frequency | common bins of the base ALT frequency
_PLANTED_AF = (0.15, 0.35)


@dataclass(frozen=True, eq=False)
class Sites:
    """One chromosome's records: sorted positions, alleles and ALT frequencies per ancestry group."""

    chrom: str
    pos: I64
    ref: list[str]
    alts: list[tuple[str, ...]]
    af: F64  # (records, groups, 2): ALT1/ALT2 frequency in controls (ALT2 = 0 when biallelic)
    af_case: F64  # same for cases; differs only at planted records


def planted_local(spec: SynthSpec) -> list[I64]:
    """Per chromosome, the indices of its planted records (chosen among all autosomal records)."""
    counts = allocate(spec)
    auto = [
        0 if canonical_contig(name) in ("X", "Y", "MT") else c
        for (name, _), c in zip(spec.chromosomes, counts, strict=True)
    ]
    k = min(spec.planted_count, sum(auto))
    chosen = np.random.default_rng([spec.seed, 3]).choice(sum(auto), size=k, replace=False)
    starts = np.cumsum(auto) - auto
    return [np.sort(chosen[(chosen >= s) & (chosen < s + a)] - s) for s, a in zip(starts, auto, strict=True)]


def chromosome_sites(spec: SynthSpec, ci: int, planted_idx: I64) -> Sites:
    """Draw chromosome ``ci``'s records (deterministic in spec and ci, independent of the genotypes)."""
    name, length = spec.chromosomes[ci]
    chrom = canonical_contig(name)  # records carry canonical names, as ingest stores them
    n = allocate(spec)[ci]
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
    return Sites(chrom, pos, ref, alts, af, _case_af(af, planted_idx, spec.planted_odds_ratio))


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
    for ci, idx in enumerate(planted_local(spec)):
        if idx.size:
            s = chromosome_sites(spec, ci, idx)
            out += [f"{s.chrom}-{s.pos[i]}-{s.ref[i]}-{s.alts[i][0]}" for i in idx.tolist()]
    return out
