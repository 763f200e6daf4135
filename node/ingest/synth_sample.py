"""The synthetic cohort's genotypes: per record, the samples whose GT code differs from the layout's baseline
(``SiteRecord``, drawn block by block by ``site_records``), from which both the VCF text
(``node.ingest.synth_files``) and the ``SiteCalls`` (``node.ingest.synth.SynthSource``) are derived.

Part of the synthetic data generator (``node.ingest.synth``, whose docstring describes how genotypes are
drawn). Each chromosome's genotypes come from their own seeded stream (``[seed, 2, chromosome]``); a seeded
PRNG makes *data* here, never privacy noise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from node.ingest.synth_sites import Sites, chromosome_sites, planted_local
from node.ingest.synth_spec import F64, GRCH38_PARS, I64, MALE, U8, Cohort, SynthSpec
from node.records import HEMI_ALT, HEMI_REF, HET, HOM_ALT, NO_CALL

_DENSE_P = 0.05  # a variant whose carrier probability exceeds this in some stratum is drawn densely
_MIN_P = 1e-12  # carrier probabilities below this are treated as zero (expected carriers < 1e-5 at 10M)
_BLOCK = 1024  # variants drawn together

# Per-sample genotype codes of one record; 0..6 diploid, 7..10 haploid.
GT_CODES = ("0/0", "0/1", "1/1", "0/2", "1/2", "2/2", "./.", "0", "1", "2", ".")
_DIP_REF, _DIP_MISS, _HAP_REF, _HAP_MISS = 0, 6, 7, 10
_N_GT = len(GT_CODES)
_PRIO_MISSING, _PRIO_CARRIER = 0, 1  # which draw wins when two name one call


@functools.cache
def class_table() -> U8:
    """``SiteCalls`` class of each GT code, for ALT1 (row 0) and ALT2 (row 1); other ALTs count as REF."""
    alt1 = (0, HET, HOM_ALT, 0, HET, 0, NO_CALL, HEMI_REF, HEMI_ALT, HEMI_REF, NO_CALL)
    alt2 = (0, 0, 0, HET, HET, HOM_ALT, NO_CALL, HEMI_REF, HEMI_REF, HEMI_ALT, NO_CALL)
    return np.array([alt1, alt2], dtype=np.uint8)


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


def _segments(sites: Sites, diploid: _Layout, xhap: _Layout) -> Iterator[tuple[int, int, _Layout]]:
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
    for ci, planted_idx in enumerate(planted_local(spec)):
        sites = chromosome_sites(spec, ci, planted_idx)
        rng = np.random.default_rng([spec.seed, 2, ci])
        for lo, hi, layout in _segments(sites, diploid, xhap):
            for b0 in range(lo, hi, _BLOCK):
                yield from _block(rng, sites, b0, min(b0 + _BLOCK, hi), layout, spec.missing_rate)


def _block(
    rng: np.random.Generator, sites: Sites, b0: int, b1: int, lay: _Layout, missing: float
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
