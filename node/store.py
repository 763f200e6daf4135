"""The node's genotype store: one DuckDB file.

Layout (chosen by measurement, see BENCHMARKS.md): every ALT allele is a row of ``variants``; its calls
that are not diploid hom-ref are kept per genotype class either

* sparse, as ``calls(vid, sid, cls)`` rows, when the class holds few samples (rare variants: almost all), or
* dense, as one packed bitset per (variant, class) in ``dense(vid, cls, bits)`` when the class holds more
  than ``N / DENSE_DIVISOR`` samples (common variants, chrX males' haploid calls).

Counting a cohort is then: sparse rows whose sample is in the cohort (a numpy mask lookup), plus
``popcount(bits & cohort_bits)`` for the dense rows; HOM_REF is the cohort size minus the other classes.
Rows are written in variant order, so a region is a contiguous ``vid`` range that DuckDB's zone maps skip to.

Variants are spelled canonically (``genogate.genome``: contigs ``1``..``22``, ``X``, ``Y``, ``MT``; upper-case
minimal alleles), on the one genome build in meta ``genome_build``; ``covered`` holds where exome or array data
was called (empty: whole contigs). ``Store.build``, ``contigs()`` and ``covered_regions()`` expose them.

Samples are rows of ``samples`` keyed by ``sid`` (0..N-1, in pseudonym order): only keyed-hash pseudonyms
are stored, never the institution's sample ids.

Threading: a ``Store`` owns one DuckDB connection; every thread must use its own ``Store.cursor()``
(a connection shared across threads gave silently wrong results in DuckDB 2.0). ``node.duckdb_backend``, the
store as the query path's ``node.backend.GenotypeBackend``, keeps one cursor per thread and DuckDB's threads;
``node.variant_index`` is its in-memory variant lookup.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from genogate.errors import StoreError
from genogate.genome import contig_sort_key
from genogate.query import Region, Variant
from node.ontology import TermIndex
from node.participants import Participants
from node.records import HOM_REF, N_CLASSES

# 2: contigs stored by their canonical names (genogate.genome), alleles upper-cased and minimal, the genome
# build in meta ``genome_build``, and the ``covered`` table. Version 1 stores spelled variants as their VCFs did.
SCHEMA_VERSION = "2"
DENSE_DIVISOR = 24
# Requested variants closer than this (in vid) are fetched with one range scan.
_GAP = 4096
_CHUNK = 16384  # most vids one range scan reads

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    sid INTEGER PRIMARY KEY, pseudonym VARCHAR NOT NULL UNIQUE, sex VARCHAR NOT NULL,
    birth_year SMALLINT, ancestry VARCHAR, phenotypes VARCHAR[] NOT NULL, consent VARCHAR[] NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    source_id INTEGER PRIMARY KEY, sha256 VARCHAR NOT NULL UNIQUE, name VARCHAR NOT NULL,
    records BIGINT NOT NULL, alleles BIGINT NOT NULL, ingested_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS variants (
    vid INTEGER NOT NULL, chrom VARCHAR NOT NULL, contig_order INTEGER NOT NULL, pos INTEGER NOT NULL,
    ref VARCHAR NOT NULL, alt VARCHAR NOT NULL, source_id INTEGER NOT NULL, line BIGINT NOT NULL,
    n_het INTEGER NOT NULL, n_hom_alt INTEGER NOT NULL, n_hemi_ref INTEGER NOT NULL,
    n_hemi_alt INTEGER NOT NULL, n_no_call INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls (vid INTEGER NOT NULL, sid INTEGER NOT NULL, cls UTINYINT NOT NULL);
CREATE TABLE IF NOT EXISTS dense (vid INTEGER NOT NULL, cls UTINYINT NOT NULL, bits BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS covered (chrom VARCHAR NOT NULL, start_pos INTEGER NOT NULL, end_pos INTEGER NOT NULL);
"""


def cohort_sha256(con: duckdb.DuckDBPyConnection) -> str:
    """SHA-256 over the canonical participants table (``cohort_sha256_of`` its rows)."""
    rows = con.execute("SELECT pseudonym, sex, birth_year, ancestry, phenotypes, consent FROM samples").fetchall()
    return cohort_sha256_of(rows)


def cohort_sha256_of(rows: Iterable[Sequence[Any]]) -> str:
    """SHA-256 over participants' rows (pseudonym, sex, birth year, ancestry, phenotype terms, consent codes):
    one JSON line per participant in pseudonym order, terms and codes sorted. A node with live consent changes
    (``node.consent_view``) computes its fingerprint with it over the participants' codes in force."""
    digest = hashlib.sha256(b"genogate cohort v1\n")
    for pseudonym, sex, year, ancestry, phenotypes, consent in sorted(rows, key=lambda r: str(r[0])):
        line = [pseudonym, sex, year, ancestry, sorted(phenotypes), sorted(consent)]
        digest.update(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class VariantRows:
    """Variants in store order, as parallel arrays."""

    vid: npt.NDArray[np.int32]
    chrom: npt.NDArray[Any]
    pos: npt.NDArray[np.int32]
    ref: npt.NDArray[Any]
    alt: npt.NDArray[Any]

    def __len__(self) -> int:
        return len(self.vid)

    def variant(self, i: int) -> Variant:
        return Variant(str(self.chrom[i]), int(self.pos[i]), str(self.ref[i]), str(self.alt[i]))


class Store:
    """Read access to a store (and the connection ingest writes through)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path):
        self.con = con
        self.path = path
        self._n_samples: int | None = None
        self._has_dense: npt.NDArray[np.bool_] | None = None
        self._parsed: dict[str, duckdb.Statement] = {}
        self._build: tuple[str | None] | None = None
        self._contigs: list[str] | None = None
        self._covered: tuple[list[Region] | None] | None = None

    @classmethod
    def open(cls, path: Path, *, read_only: bool = True) -> Store:
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(f"{path}: no such store (create it with 'genogate-node ingest')")
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, duckdb.Error) as exc:
            raise StoreError(f"{path}: cannot open the store ({_first_line(exc)})") from None
        store = cls(con, path)
        if read_only:
            version = store.meta("schema_version")
            if version == "1":
                con.close()
                raise StoreError(
                    f"{path}: this store was built by an older genogate (schema version 1, which kept contig names "
                    "and alleles as each VCF spelled them, and no genome build); re-ingest its VCFs into a new store: "
                    "genogate-node ingest --store NEW_STORE --vcf FILE ... --samples SHEET [--build GRCh37|GRCh38]"
                )
            if version != SCHEMA_VERSION:
                con.close()
                raise StoreError(f"{path}: not a genogate store (schema version {version!r})")
        return store

    def close(self) -> None:
        self.con.close()

    def cursor(self) -> Store:
        """A Store on a new cursor of the same database, for use by one other thread."""
        other = Store(self.con.cursor(), self.path)
        other._n_samples, other._has_dense = self._n_samples, self._has_dense
        other._build, other._contigs, other._covered = self._build, self._contigs, self._covered
        return other

    def load_caches(self) -> None:
        """Read everything ``cursor`` copies (sample count, build, contigs, covered regions, which variants have
        bitsets) once, so that cursors made later share it instead of each reading it again."""
        _ = self.n_samples, self.build, self.contigs(), self.covered_regions(), self._dense_vids()

    def _run(self, sql: str, params: Sequence[object]) -> duckdb.DuckDBPyConnection:
        """Execute one of the query path's fixed statements, parsed once per ``Store`` (DuckDB's parser is a
        third of a point query's cost); ``sql`` must be a constant, never built from input."""
        parsed = self._parsed.get(sql)
        if parsed is None:
            parsed = self._parsed[sql] = self.con.extract_statements(sql)[0]
        return self.con.execute(parsed, params)

    def create_schema(self) -> None:
        self.con.execute(SCHEMA)

    def meta(self, key: str) -> str | None:
        try:
            rows = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        except duckdb.CatalogException:
            return None
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def cohort_sha256(self) -> str:
        """The cohort fingerprint (meta ``cohort_sha256``, recorded by ingest; computed here for a store
        written before ingest recorded it). Any change of a participant's attributes or consent changes it,
        and with it the node's consent epoch (``node.ledger``)."""
        return self.meta("cohort_sha256") or cohort_sha256(self.con)

    @property
    def build(self) -> str | None:
        """The genome build the store's positions are on (meta ``genome_build``: GRCh37 or GRCh38; cached)."""
        if self._build is None:
            self._build = (self.meta("genome_build"),)
        return self._build[0]

    def contigs(self) -> list[str]:
        """Canonical names of the contigs holding at least one variant, in natural order (cached)."""
        if self._contigs is None:
            names = [str(r[0]) for r in self.con.execute("SELECT DISTINCT chrom FROM variants").fetchall()]
            self._contigs = sorted(names, key=contig_sort_key)
        return list(self._contigs)

    def covered_regions(self) -> list[Region] | None:
        """Where the data was called (``ingest --covered-regions``): merged, sorted 1-based inclusive regions;
        None when it covers every position of its contigs (whole-genome data). Cached."""
        if self._covered is None:
            try:
                rows = self.con.execute("SELECT chrom, start_pos, end_pos FROM covered").fetchall()
            except duckdb.CatalogException:
                rows = []
            regions = sorted(
                (Region(str(c), int(a), int(b)) for c, a, b in rows),
                key=lambda r: (contig_sort_key(r.chrom), r.start),
            )
            self._covered = (regions or None,)
        return None if self._covered[0] is None else list(self._covered[0])

    def set_covered_regions(self, regions: Sequence[Region]) -> None:
        """Replace the covered regions (ingest, inside its transaction)."""
        self.con.execute("DELETE FROM covered")
        if regions:
            self.con.executemany("INSERT INTO covered VALUES (?, ?, ?)", [[r.chrom, r.start, r.end] for r in regions])
        self._covered = None

    @property
    def n_samples(self) -> int:
        if self._n_samples is None:
            self._n_samples = int(scalar(self.con, "SELECT count(*) FROM samples"))
        return self._n_samples

    # Participants -----------------------------------------------------------------------------------------

    def participants(self) -> Participants:
        """Every participant's attributes in sid order, and the participants under each phenotype term (from
        the store's is-a closure ``term_closure``, ``node.ontology``)."""
        rows = self.con.execute(
            "SELECT sid, sex, birth_year, ancestry, phenotypes, consent, pseudonym FROM samples ORDER BY sid"
        ).fetchall()
        # Closure ancestors numbered in SQL, so the (ancestor, participant) pairs come back as two int arrays.
        numbered = (
            "WITH a AS (SELECT ancestor, (row_number() OVER (ORDER BY ancestor) - 1)::INTEGER AS k "
            "FROM (SELECT DISTINCT ancestor FROM term_closure)) "
        )
        names = [r[0] for r in self.con.execute(numbered + "SELECT ancestor FROM a ORDER BY k").fetchall()]
        pairs = self.con.execute(
            numbered + "SELECT DISTINCT a.k, s.sid FROM (SELECT sid, unnest(phenotypes) AS term FROM samples) s "
            "JOIN term_closure c ON c.term = s.term JOIN a ON a.ancestor = c.ancestor ORDER BY a.k, s.sid"
        ).fetchnumpy()
        bounds = np.searchsorted(pairs["k"], np.arange(len(names) + 1))
        sids = np.asarray(pairs["sid"], dtype=np.int32)
        sids.flags.writeable = False  # shared by every Cohorts built from them
        under = {name: sids[bounds[i] : bounds[i + 1]] for i, name in enumerate(names) if bounds[i + 1] > bounds[i]}
        return Participants(
            sex=tuple(str(r[1]) for r in rows),
            birth_year=tuple(None if r[2] is None else int(r[2]) for r in rows),
            ancestry=tuple(None if r[3] is None else str(r[3]) for r in rows),
            phenotypes=tuple(tuple(r[4]) for r in rows),
            consent=tuple(tuple(r[5]) for r in rows),
            under=under,
            pseudonym=tuple(str(r[6]) for r in rows),
        )

    def terms(self) -> TermIndex:
        """The phenotype vocabulary recorded at ingest (``node.ontology.TermIndex``)."""
        return TermIndex.read(self.con)

    # Cohorts ----------------------------------------------------------------------------------------------

    def cohort_mask(self, where_sql: str = "TRUE", params: Sequence[object] = ()) -> npt.NDArray[np.bool_]:
        """Boolean mask over sids of the samples satisfying a (planner-built, parameterised) condition."""
        rows = self.con.execute(f"SELECT sid FROM samples WHERE {where_sql}", list(params)).fetchnumpy()
        mask = np.zeros(self.n_samples, dtype=bool)
        mask[rows["sid"]] = True
        return mask

    # Variants ---------------------------------------------------------------------------------------------

    def variants(self, region: Region | None = None) -> VariantRows:
        """All variants (or those in a region), in genomic order."""
        sql = "SELECT vid, chrom, pos, ref, alt FROM variants"
        params: list[object] = []
        if region is not None:
            sql += " WHERE chrom = ? AND pos BETWEEN ? AND ?"
            params = [region.chrom, region.start, region.end]
        sql += " ORDER BY contig_order, chrom, pos, ref, alt"
        return _rows(self.con.execute(sql, params).fetchnumpy())

    def lookup(self, variants: Sequence[Variant]) -> npt.NDArray[np.int32]:
        """The vid of each variant, -1 where the store does not hold it (callers zero-fill)."""
        if not variants:
            return np.zeros(0, dtype=np.int32)
        keys = {
            "i": np.arange(len(variants), dtype=np.int32),
            "chrom": np.array([v.chrom for v in variants], dtype=object),
            "pos": np.array([v.pos for v in variants], dtype=np.int32),
            "ref": np.array([v.ref for v in variants], dtype=object),
            "alt": np.array([v.alt for v in variants], dtype=object),
        }
        cur = self.con.cursor()
        try:
            cur.register("wanted", keys)
            found = cur.execute(
                "SELECT w.i, v.vid FROM wanted w JOIN variants v "
                "ON v.chrom = w.chrom AND v.pos = w.pos AND v.ref = w.ref AND v.alt = w.alt"
            ).fetchnumpy()
        finally:
            cur.close()
        out = np.full(len(variants), -1, dtype=np.int32)
        out[found["i"]] = found["vid"]
        return out

    # Counting ---------------------------------------------------------------------------------------------

    def class_counts(self, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Genotype-class counts (``len(vids)`` x 6, columns as ``records.CLASS_NAMES``) within a cohort.

        ``vids`` may be in any order, repeat, and hold -1 (a variant the store lacks: every cohort member
        counts as HOM_REF there, as a complete callset would report it). The work does not depend on who is
        in the cohort: it reads the same rows whatever the mask holds.
        """
        return self.count(self.fetch(vids), mask)

    def fetch(self, vids: npt.NDArray[np.int32]) -> Calls:
        """The stored calls of ``vids`` (as ``class_counts`` takes them), read once: ``count`` then counts
        them for any number of cohorts, and a caller may build its cohort masks while this reads."""

        def span(first: int, last: int, part: npt.NDArray[np.int32]) -> tuple[dict[str, Any], dict[str, Any] | None]:
            sparse = self._run("SELECT vid, sid, cls FROM calls WHERE vid BETWEEN ? AND ?", [first, last]).fetchnumpy()
            dense = None
            if self._dense_vids()[part].any():
                dense = self._run(
                    "SELECT vid, cls, bits FROM dense WHERE vid BETWEEN ? AND ?", [first, last]
                ).fetchnumpy()
            return sparse, dense

        return calls_of(vids, span)

    @staticmethod
    def count(calls: Calls, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Class counts of fetched calls within a cohort (``class_counts``, without reading the store)."""
        out = np.zeros((calls.n, N_CLASSES), dtype=np.int64)
        if len(calls.uniq):
            counts = np.zeros((len(calls.uniq), N_CLASSES), dtype=np.int64)
            packed = np.packbits(mask) if any(span.dense is not None for span in calls.spans) else None
            for span in calls.spans:
                _count_span(calls.uniq[span.lo : span.hi], span, mask, packed, counts[span.lo : span.hi])
            out[calls.valid] = counts[calls.inverse]
        out[:, HOM_REF] = np.count_nonzero(mask) - out[:, 1:].sum(axis=1)
        return out

    def _dense_vids(self) -> npt.NDArray[np.bool_]:
        """Which variants have any class stored as a bitset (most rare variants have none)."""
        if self._has_dense is None:
            top = scalar(self.con, "SELECT coalesce(max(vid) + 1, 0) FROM variants")
            flags = np.zeros(int(top), dtype=bool)
            flags[self.con.execute("SELECT DISTINCT vid FROM dense").fetchnumpy()["vid"]] = True
            self._has_dense = flags
        return self._has_dense

    def carriers(
        self, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_], counted: npt.NDArray[np.bool_] | None = None
    ) -> int:
        """Cohort members carrying at least one ALT allele (HET, HOM_ALT or HEMI_ALT) of any of ``vids``.
        With ``counted``, the rows of every vid are read but only those of ``vids[counted]`` count (stand-ins
        for variants the store lacks: ``VariantIndex.lookup_with_stand_ins``)."""
        carrying = np.zeros(self.n_samples, dtype=bool)
        valid = np.unique(vids[vids >= 0])
        keep = np.unique(vids[(vids >= 0) & counted]) if counted is not None else valid
        for lo, hi in _ranges(valid):
            part = valid[lo:hi]
            rows = self._run(
                "SELECT vid, sid FROM calls WHERE vid BETWEEN ? AND ? AND cls IN (1, 2, 4)",
                [int(part[0]), int(part[-1])],
            ).fetchnumpy()
            wanted = np.isin(rows["vid"], part) & np.isin(rows["vid"], keep)
            carrying[rows["sid"][wanted]] = True
            dense = self._run(
                "SELECT vid, bits FROM dense WHERE vid BETWEEN ? AND ? AND cls IN (1, 2, 4)",
                [int(part[0]), int(part[-1])],
            ).fetchnumpy()
            for bits in dense["bits"][np.isin(dense["vid"], part) & np.isin(dense["vid"], keep)]:
                carrying |= np.unpackbits(np.frombuffer(bytes(bits), dtype=np.uint8), count=self.n_samples).astype(bool)
        return int((carrying & mask).sum())


@dataclass(frozen=True)
class _Span:
    """The rows of one range scan: ``uniq[lo:hi]`` of a ``Calls``."""

    lo: int
    hi: int
    sparse: dict[str, Any]
    dense: dict[str, Any] | None


@dataclass(frozen=True)
class Calls:
    """Stored calls of requested variants (``Store.fetch``): what ``Store.count`` counts for a cohort."""

    n: int  # requested vids, repeats and -1 included
    valid: npt.NDArray[np.bool_]  # which requested vids the store holds
    uniq: npt.NDArray[np.int32]  # the distinct held vids, sorted
    inverse: npt.NDArray[np.intp]  # each held requested vid's row in uniq
    spans: list[_Span]


def calls_of(
    vids: npt.NDArray[np.int32],
    span: Callable[[int, int, npt.NDArray[np.int32]], tuple[dict[str, Any], dict[str, Any] | None]],
) -> Calls:
    """``Calls`` of ``vids``, reading each run of nearby requested vids with ``span(first, last, run)``: the
    sparse rows and dense bitsets (None if none) of every stored vid from ``first`` to ``last``."""
    valid = vids >= 0
    uniq, inverse = np.unique(vids[valid], return_inverse=True)
    spans = []
    for lo, hi in _ranges(uniq):
        part = uniq[lo:hi]
        sparse, dense = span(int(part[0]), int(part[-1]), part)
        spans.append(_Span(lo, hi, sparse, dense))
    return Calls(len(vids), valid, uniq, inverse, spans)


def _count_span(
    vids: npt.NDArray[np.int32],
    span: _Span,
    mask: npt.NDArray[np.bool_],
    packed: npt.NDArray[np.uint8] | None,
    counts: npt.NDArray[np.int64],
) -> None:
    """Add the class counts of sorted, distinct ``vids`` (one span of the store) into ``counts``."""
    lo, hi = int(vids[0]), int(vids[-1])
    slot = np.full(hi - lo + 1, -1, dtype=np.int64)  # vid - lo -> row of counts, -1 if not asked
    slot[vids - lo] = np.arange(len(vids))
    sparse = span.sparse
    row = slot[sparse["vid"] - lo]
    keep = (row >= 0) & mask[sparse["sid"]]
    flat = row[keep] * N_CLASSES + sparse["cls"][keep].astype(np.int64)
    counts += np.bincount(flat, minlength=len(vids) * N_CLASSES).reshape(len(vids), N_CLASSES)
    dense = span.dense
    if dense is None or packed is None:
        return
    drow = slot[dense["vid"] - lo]
    hit = drow >= 0
    if hit.any():
        bits = np.frombuffer(b"".join(dense["bits"][hit]), dtype=np.uint8).reshape(-1, len(packed))
        pop = np.bitwise_count(bits & packed).sum(axis=1, dtype=np.int64)
        np.add.at(counts, (drow[hit], dense["cls"][hit].astype(np.intp)), pop)


def _ranges(sorted_vids: npt.NDArray[np.int32]) -> Iterator[tuple[int, int]]:
    """Split sorted vids into runs to fetch with one range scan each (bounded span and size)."""
    if not len(sorted_vids):
        return
    breaks = np.flatnonzero(np.diff(sorted_vids) > _GAP) + 1
    bounds = [0, *breaks.tolist(), len(sorted_vids)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        for s in range(a, b, _CHUNK):
            yield s, min(b, s + _CHUNK)


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> Any:
    """The single value of a one-row query, fetched completely (DuckDB 2.0 refuses new work on a connection
    whose last result was only partly fetched)."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0][0] if rows else None


def _rows(d: dict[str, Any]) -> VariantRows:
    return VariantRows(d["vid"], d["chrom"], d["pos"], d["ref"], d["alt"])


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
