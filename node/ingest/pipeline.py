"""Ingest: VCF/BCF files (or any ``GenotypeSource``) plus a sample sheet into a node's store.

Guarantees:

* **Atomic.** A new store is built in a temporary file beside the target and renamed over it only when
  complete; an existing store is changed in one DuckDB transaction. A failure (or a SIGKILL) at any point
  leaves the store exactly as it was.
* **Idempotent.** Each input is identified by its SHA-256; an input already in the store is skipped, and
  ingesting the same files and sheet again changes nothing (the file is not even opened for writing).
* **Canonical.** Every allele is stored in one spelling (``node.ingest.normalise``): canonical contig names, upper-case
  minimal alleles (left-aligned with ``--reference``); gVCF ``<NON_REF>``/``<*>`` and breakend ALTs dropped and
  counted; any other non-base allele refused with its line. Two records that become one variant are refused.
* **One build.** The store records its genome build (``meta genome_build``): stated by the files' headers or
  ``--build``, refused when they disagree with each other or with the store, and for NCBI36.
* **The VCF's participants.** The sample sheet (``node.ingest.sheet``, columns mapped by ``SheetColumns``) must
  list every sample of every file, and the files of one store hold the same samples; sheet rows for other
  samples are allowed, counted in the report and not stored.
* **Pseudonymous.** Sample ids are stored only as keyed-hash (HMAC-SHA256) pseudonyms; the key lives in
  the node's directory, never in the store. The store records the key's fingerprint so a wrong key is
  refused instead of silently producing different pseudonyms.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import hmac
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import duckdb
import numpy as np

from genogate.errors import IngestError, StoreError
from genogate.genome import BuildError, canonical_contig, check_build, contig_rank
from genogate.progress import DEFAULT_INTERVAL_S, Progress
from genogate.query import Region
from genogate.words import plural
from node import consent, ontology
from node.bed import merge, read_bed
from node.ingest.normalise import Normaliser, Reference
from node.ingest.sheet import Participant, Sheet, SheetColumns, load_sheet
from node.ingest.vcf import VcfSource
from node.ingest.writer import StoreWriter
from node.records import CLASS_NAMES, GenotypeSource
from node.store import SCHEMA_VERSION, Store, cohort_sha256, scalar

KEY_BYTES = 32
INGEST_MEMORY_LIMIT = "1GB"
INGEST_CHECKPOINT_EVERY = "2GB"


@dataclass
class IngestSummary:
    store: Path
    samples: int = 0
    withdrawn: int = 0
    consent_overrides: int = 0  # participants whose sheet codes a recorded consent change overrode
    sheet_rows: int = 0  # participants the sheet lists (those of the VCF's samples and any others)
    sheet_extra: int = 0  # sheet rows for samples in none of the files: allowed, not stored
    sheet_columns: dict[str, str] = field(default_factory=dict)  # our column -> the sheet's
    sheet_ignored: list[str] = field(default_factory=list)  # the sheet's columns read as none of ours
    sheet_normalised: dict[str, int] = field(default_factory=dict)  # our column -> cells respelled
    sources_loaded: list[str] = field(default_factory=list)
    sources_skipped: list[str] = field(default_factory=list)
    build: str = ""
    build_from: str = ""
    covered: str = ""
    sites: int = 0
    alleles: int = 0
    normalised: int = 0
    class_totals: dict[str, int] = field(default_factory=dict)
    skipped_records: dict[str, int] = field(default_factory=dict)
    sheet_updated: bool = False
    changed: bool = False
    seconds: float = 0.0

    def sheet_lines(self) -> list[str]:
        return Sheet(Path(), (), self.sheet_columns, tuple(self.sheet_ignored), self.sheet_normalised).report()

    def lines(self) -> list[str]:
        if not self.changed:
            return [f"{self.store}: already up to date; nothing changed"]
        out = [
            f"store        {self.store}",
            f"samples      {self.samples:,} ({self.withdrawn:,} withdrawn)",
            f"sheet        {plural(self.sheet_rows, 'row')}"
            + (f"; {self.sheet_extra} for samples in none of the files (not stored)" if self.sheet_extra else ""),
            *self.sheet_lines(),
            f"inputs       {len(self.sources_loaded)} loaded, {len(self.sources_skipped)} already in the store",
            f"build        {self.build} ({self.build_from})",
            f"sites        {self.sites} loaded",
            f"alleles      {self.alleles} (one row per ALT allele; {self.normalised} trimmed, left-aligned "
            "or upper-cased to their canonical form)",
        ]
        if self.covered:
            out.append(f"covered      {self.covered}")
        if self.class_totals:
            out.append("calls        " + ", ".join(f"{k.lower()} {v}" for k, v in self.class_totals.items()))
            out.append(f"no-calls     {self.class_totals.get('NO_CALL', 0)}")
        if self.skipped_records:
            for why, n in sorted(self.skipped_records.items()):
                out.append(f"skipped      {plural(n, 'record')}: {why}")
        else:
            out.append("skipped      none")
        if self.sheet_updated:
            out.append("sheet        participant details updated")
        if self.consent_overrides:
            n, keep = self.consent_overrides, "keeps" if self.consent_overrides == 1 else "keep"
            out.append(
                f"consent      {plural(n, 'participant')} {keep} the consent recorded by 'genogate-node consent' "
                "instead of the sheet's"
            )
        out.append(f"time         {self.seconds:.1f} s")
        return out

    def to_json(self) -> dict[str, object]:
        """Every field (``--json``), with ``status`` "ingested" or "unchanged" (an idempotent re-run)."""
        doc = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        return {"status": "ingested" if self.changed else "unchanged", **doc}


def _silent(files: int) -> str:
    return f"; {plural(files, 'file')} {'states' if files == 1 else 'state'} none"


def _are(items: Sized) -> str:
    return "is" if len(items) == 1 else "are"


def pseudonym(key: bytes, sample_id: str) -> str:
    """Keyed-hash pseudonym of a sample id (HMAC-SHA256, 128 bits as hex)."""
    return hmac.new(key, b"genogate-sample-v1\x00" + sample_id.encode(), hashlib.sha256).hexdigest()[:32]


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, b"genogate-key-fingerprint-v1", hashlib.sha256).hexdigest()[:16]


def default_key_path(store: Path) -> Path:
    return Path(store).resolve().parent / "pseudonym.key"


def load_key(path: Path, *, create: bool) -> tuple[bytes, bool]:
    """Read the pseudonymisation key (hex), or create one (mode 0600). Returns (key, created)."""
    if path.exists():
        try:
            key = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            raise IngestError(str(path), "the pseudonymisation key is unreadable (expected 64 hex digits)") from None
        if len(key) != KEY_BYTES:
            raise IngestError(str(path), "the pseudonymisation key must be 32 bytes (64 hex digits)")
        return key, False
    if not create:
        raise IngestError(str(path), "the store exists but its pseudonymisation key is missing")
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise IngestError(str(path), f"cannot create the pseudonymisation key ({exc.strerror})") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key, True


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def ingest(
    store: Path,
    vcfs: Sequence[Path],
    sheet: Path,
    *,
    key_path: Path | None = None,
    progress_stream: IO[str] | None = None,
    progress_interval: float = DEFAULT_INTERVAL_S,
    build: str | None = None,
    reference: Path | None = None,
    covered_regions: Path | None = None,
    sheet_columns: SheetColumns | None = None,
) -> IngestSummary:
    """Ingest VCF/BCF files and a sample sheet into ``store`` (created if absent).

    ``build`` (GRCh37 or GRCh38) is needed only when neither the files' headers nor the store name one;
    ``reference`` (a FASTA) checks REF and left-aligns indels; ``covered_regions`` (a BED file) records where
    exome or array data was called; ``sheet_columns`` maps the sheet's column names to ours
    (``node.ingest.sheet_columns``).
    """
    if not vcfs:
        raise IngestError("--vcf", "at least one VCF or BCF file is needed")
    paths = [Path(p) for p in vcfs]
    dup = [str(p) for p in paths if paths.count(p) > 1]
    if dup:
        raise IngestError(dup[0], "the same file is given twice")
    sources: list[VcfSource] = []
    try:
        for p in paths:
            sources.append(VcfSource(p))
        fingerprints = [sha256_file(p) for p in paths]
        first: dict[str, Path] = {}
        for p, fp in zip(paths, fingerprints, strict=True):
            if fp in first:
                raise IngestError(str(p), f"the same file is given twice (same content as {first[fp]})")
            first[fp] = p
        return ingest_sources(
            store,
            sources,
            sheet,
            fingerprints=fingerprints,
            key_path=key_path,
            progress=Progress(
                sum(s.size for s in sources),
                what="ingest",
                stream=progress_stream,
                interval=progress_interval,
            ),
            build=build,
            reference=reference,
            covered_regions=covered_regions,
            sheet_columns=sheet_columns,
        )
    finally:
        for s in sources:
            s.close()


def ingest_sources(
    store: Path,
    sources: Sequence[GenotypeSource],
    sheet: Path,
    *,
    fingerprints: Sequence[str],
    key_path: Path | None = None,
    progress: Progress | None = None,
    build: str | None = None,
    reference: Path | None = None,
    covered_regions: Path | None = None,
    sheet_columns: SheetColumns | None = None,
) -> IngestSummary:
    """Ingest any genotype sources (VCF files, the synthetic generator) into ``store`` atomically."""
    t0 = time.monotonic()
    if build is not None:
        try:
            check_build(build)
        except BuildError as exc:
            raise IngestError("--build", str(exc)) from None
    store = Path(store)
    _check_writable(store)
    read = load_sheet(Path(sheet), sheet_columns)
    sheet_sha = sha256_file(Path(sheet))
    if sheet_columns is not None and sheet_columns.mapped:  # the same file read another way is another sheet
        sheet_sha = hashlib.sha256(f"{sheet_sha} {sheet_columns.digest()}".encode()).hexdigest()
    key_path = Path(key_path) if key_path else default_key_path(store)
    exists = store.exists()
    with _lock(store):
        # A killed earlier run may have left its half-built store behind; the lock says nobody is using it.
        for stale in store.parent.glob(f".{glob.escape(store.name)}.ingest-*.tmp"):
            _remove_db(stale)
        key, created_key = load_key(key_path, create=not exists)
        try:
            options = _Options(build, reference, covered_regions)
            return _ingest_locked(
                store, exists, sources, Path(sheet), read, sheet_sha, fingerprints, key, progress, t0, options
            )
        except BaseException:
            if created_key:
                key_path.unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class _Options:
    build: str | None
    reference: Path | None
    covered_regions: Path | None


def _ingest_locked(
    store: Path,
    exists: bool,
    sources: Sequence[GenotypeSource],
    sheet: Path,
    read: Sheet,
    sheet_sha: str,
    fingerprints: Sequence[str],
    key: bytes,
    progress: Progress | None,
    t0: float,
    options: _Options,
) -> IngestSummary:
    participants = _select(sources, read.participants)
    by_pseudonym = {pseudonym(key, p.sample_id): p for p in participants}
    # Consent changes recorded while the node served (``node.consent``) override the sheet's codes: an older
    # sheet never brings back a withdrawn participant. A new override makes the same sheet a change.
    by_pseudonym, overridden = consent.apply_overrides(store, by_pseudonym)
    if overridden:
        sheet_sha = hashlib.sha256(
            f"{sheet_sha}\n{consent.overrides_sha256(consent.read_overrides(store))}".encode()
        ).hexdigest()
    summary = IngestSummary(
        store=store,
        samples=len(participants),
        withdrawn=sum(p.withdrawn for p in by_pseudonym.values()),
        consent_overrides=overridden,
    )
    summary.sheet_rows, summary.sheet_extra = len(read.participants), len(read.participants) - len(participants)
    summary.sheet_columns, summary.sheet_ignored = dict(read.used), list(read.ignored)
    summary.sheet_normalised = dict(read.normalised)

    store_build: str | None = None
    stored_cover: list[Region] | None = None
    if exists:
        s = Store.open(store, read_only=True)
        try:
            known = {row[0] for row in s.con.execute("SELECT sha256 FROM sources").fetchall()}
            # A store without the current ontology releases gets its vocabulary and closure (re)written.
            same_sheet = s.meta("sheet_sha256") == sheet_sha and ontology.stored_releases(s.con) == (
                ontology.load().releases
            )
            same_key = s.meta("key_fingerprint") == key_fingerprint(key)
            store_build, stored_cover = s.build, s.covered_regions()
        finally:
            s.close()
        if not same_key:
            raise IngestError(str(store), "the pseudonymisation key does not match the one this store was built with")
        todo = [i for i, fp in enumerate(fingerprints) if fp not in known]
        summary.sources_skipped = [sources[i].name for i in range(len(sources)) if i not in todo]
    else:
        todo = list(range(len(sources)))
    build, summary.build_from = _resolve_build(store, store_build, options.build, [sources[i] for i in todo])
    summary.build = build
    cover = _covered(store, exists, stored_cover, options.covered_regions, build, bool(todo))
    if exists:
        if not todo and same_sheet and cover == stored_cover:
            summary.seconds = time.monotonic() - t0
            return summary  # idempotent: nothing to do, the file is not touched
        target, tmp = store, None
    else:
        tmp = store.with_name(f".{store.name}.ingest-{os.getpid()}.tmp")
        _remove_db(tmp)
        target = tmp

    try:
        con = duckdb.connect(str(target))
    except duckdb.Error as exc:
        hint = ""
        if "lock" in str(exc).lower():  # a serving node holds it (DuckDB: one writer or many readers)
            hint = (
                "; a running node holds it: stop the node to load genotypes, or record a consent change without "
                "stopping it: genogate-node consent withdraw|update --config NODE_TOML"
            )
        raise StoreError(f"{store}: cannot open the store for writing ({str(exc).splitlines()[0]}){hint}") from None
    try:
        # DuckDB keeps what it cannot spill in memory; bound it so a biobank-sized build stays small.
        con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")
        spill = str(store.parent / f".{store.name}.spill").replace("'", "''")  # SET takes no parameters
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute("SET preserve_insertion_order = true")
        if exists:
            con.execute("BEGIN TRANSACTION")
        else:
            # A new store is built in its own temporary file (renaming it is the atomic step), in autocommit:
            # one transaction holding a biobank-sized build grows far past the memory limit. Checkpointing
            # only every few GB of WAL instead of every 16 MB took a 100k x 100k build from 184 s to 122 s.
            con.execute(f"SET checkpoint_threshold = '{INGEST_CHECKPOINT_EVERY}'")
        st = Store(con, store)
        if not exists:
            st.create_schema()
            st.set_meta("schema_version", SCHEMA_VERSION)
            st.set_meta("key_fingerprint", key_fingerprint(key))
            st.set_meta("genome_build", build)
        if cover != stored_cover:
            st.set_covered_regions(cover or [])
        if cover is not None:
            bp = sum(r.end - r.start + 1 for r in cover)
            summary.covered = (
                f"{plural(len(cover), 'region')}, {bp:,} bp (from {options.covered_regions or 'the store'})"
            )
        summary.sheet_updated = _write_samples(con, by_pseudonym, exists, sheet)
        # The cohort fingerprint: a node starting on a store whose participants or consent changed starts
        # a new consent epoch, so no answer stored before the change is served after it.
        st.set_meta("cohort_sha256", cohort_sha256(con))
        ontology.write(con, {t for p in participants for t in p.phenotypes}, ontology.load())
        st.set_meta("sheet_sha256", sheet_sha)
        sid_of = {row[0]: row[1] for row in con.execute("SELECT pseudonym, sid FROM samples").fetchall()}
        n_samples = len(sid_of)
        ordered = _order_sources([sources[i] for i in todo])
        first_vid = int(scalar(con, "SELECT coalesce(max(vid) + 1, 0) FROM variants"))
        writer = StoreWriter(con, n_samples, first_vid)
        ref_fasta = Reference(options.reference, build) if options.reference is not None else None
        normalise = Normaliser(build, ref_fasta)
        skipped: Counter[str] = Counter()
        done_bytes = 0
        for src in ordered:
            i = sources.index(src)
            source_id = int(scalar(con, "SELECT coalesce(max(source_id) + 1, 0) FROM sources"))
            col2sid = np.array([sid_of[pseudonym(key, s)] for s in src.samples], dtype=np.int32)
            records_before = writer.stats.alleles
            for n, raw in enumerate(src.records()):
                calls = normalise(raw)
                if calls is None:
                    continue
                writer.add(calls, col2sid[calls.sids], source_id, _line_of(calls.origin))
                if progress is not None and n % 256 == 0:
                    progress.update(done_bytes + _position(src, n), src.name)
            writer.flush()
            done_bytes += getattr(src, "size", 0)
            skipped.update(getattr(src, "skipped", {}))
            con.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, now())",
                [
                    source_id,
                    fingerprints[i],
                    src.name,
                    int(getattr(src, "records_read", 0)),
                    writer.stats.alleles - records_before,
                ],
            )
            summary.sources_loaded.append(src.name)
        if progress is not None:
            progress.done(done_bytes)
        if ref_fasta is not None:
            ref_fasta.close()
        skipped.update(normalise.skipped)
        _check_duplicates(con, first_vid)
        if not writer.in_order:
            _renumber(con, first_vid)
        if exists:
            con.execute("COMMIT")
        else:
            con.execute("CHECKPOINT")
        summary.sites = writer.stats.sites
        summary.alleles = writer.stats.alleles
        summary.class_totals = {
            name: int(v) for name, v in zip(CLASS_NAMES[1:], writer.stats.class_totals[1:], strict=True)
        }
        summary.skipped_records = dict(skipped)
        summary.normalised = normalise.changed
    except BaseException:
        if exists:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
        con.close()
        if tmp is not None:
            _remove_db(tmp)
        raise
    con.close()
    if tmp is not None:
        os.chmod(tmp, 0o600)  # the store is the operator's alone, whatever the umask
        os.replace(tmp, store)
        _fsync_dir(store.parent)
    summary.changed = True
    summary.seconds = time.monotonic() - t0
    return summary


def _check_writable(store: Path) -> None:
    parent = store.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise IngestError(str(store), f"{parent} is not a directory")
    if not parent.is_dir():
        raise IngestError(str(store), f"the directory {parent} does not exist")
    if store.exists() and not store.is_file():
        raise IngestError(str(store), "the store path exists and is not a file")
    if not os.access(parent, os.W_OK) or (store.exists() and not os.access(store, os.W_OK)):
        raise IngestError(str(store), "permission denied: the store (or its directory) is not writable")


@contextlib.contextmanager
def _lock(store: Path) -> Iterator[None]:
    lock_path = store.with_name(f".{store.name}.lock")
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise IngestError(str(store), f"cannot create the lock file {lock_path} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(str(store), "another ingest is writing this store") from None
        yield
    finally:
        os.close(fd)


def _select(sources: Sequence[GenotypeSource], participants: Sequence[Participant]) -> list[Participant]:
    """The sheet's participants the files hold. Every sample of every file must be in the sheet, and the files
    of one store hold the same samples; sheet rows for other samples are allowed (counted, not stored)."""
    if not sources:
        return list(participants)
    sheet_ids = {p.sample_id for p in participants}
    for src in sources:
        missing = sorted(set(src.samples) - sheet_ids)
        if missing:
            raise IngestError(
                src.name, f"{plural(len(missing), 'sample')} {_are(missing)} not in the sample sheet: {_few(missing)}"
            )
    first = set(sources[0].samples)
    for src in sources[1:]:
        absent = sorted(first - set(src.samples))
        if absent:
            raise IngestError(
                src.name,
                f"{plural(len(absent), 'sample')} of {sources[0].name} {_are(absent)} not in this file: {_few(absent)}",
            )
        extra = sorted(set(src.samples) - first)
        if extra:
            raise IngestError(
                src.name,
                f"{plural(len(extra), 'sample')} of this file {_are(extra)} not in {sources[0].name}: {_few(extra)}",
            )
    return [p for p in participants if p.sample_id in first]


def _few(items: list[str]) -> str:
    return ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def _write_samples(
    con: duckdb.DuckDBPyConnection, by_pseudonym: dict[str, Participant], exists: bool, sheet: Path
) -> bool:
    """Insert the participants (new store) or update their details (existing store). True if changed."""
    order = sorted(by_pseudonym)
    rows = {
        "sid": np.arange(len(order), dtype=np.int32),
        "pseudonym": np.array(order, dtype=object),
        "sex": np.array([by_pseudonym[k].sex for k in order], dtype=object),
        "birth_year": np.array([by_pseudonym[k].birth_year or -1 for k in order], dtype=np.int32),
        "ancestry": np.array([by_pseudonym[k].ancestry for k in order], dtype=object),
        "phenotypes": np.array([list(by_pseudonym[k].phenotypes) for k in order] + [None], dtype=object)[:-1],
        "consent": np.array([list(by_pseudonym[k].consent) for k in order] + [None], dtype=object)[:-1],
    }
    con.register("_sheet", rows)
    select = (
        "SELECT sid, pseudonym, sex, CASE WHEN birth_year < 0 THEN NULL ELSE birth_year END, ancestry, "
        "CAST(phenotypes AS VARCHAR[]), CAST(consent AS VARCHAR[]) FROM _sheet"
    )
    try:
        if not exists:
            con.execute(f"INSERT INTO samples {select}")
            return False
        stored = {r[0] for r in con.execute("SELECT pseudonym FROM samples").fetchall()}
        if stored != set(order):
            raise IngestError(
                str(sheet),
                f"the store holds {len(stored)} samples and the sheet {len(order)} of the files' samples; "
                f"{len(set(order) - stored)} are new and {len(stored - set(order))} are missing "
                "(a store's sample set is fixed when it is created)",
            )
        changed = scalar(
            con,
            f"SELECT count(*) FROM ({select} EXCEPT SELECT s2.sid, s2.pseudonym, s2.sex, s2.birth_year, "
            "s2.ancestry, s2.phenotypes, s2.consent FROM samples s2) d",
        )
        if changed:
            con.execute("DELETE FROM samples")
            con.execute(f"INSERT INTO samples {select}")
            return True
        return False
    finally:
        con.unregister("_sheet")


def _order_sources(sources: list[GenotypeSource]) -> list[GenotypeSource]:
    """Load files in genomic order of their first record, so per-chromosome files need no renumbering."""

    def key(src: GenotypeSource) -> tuple[int, str, int]:
        first = src.first_key() if hasattr(src, "first_key") else None
        if not first:
            return (0, "", 0)
        name = canonical_contig(first[0])  # without a build: never refuses (the records' pass does)
        return (contig_rank(name), name, first[1])

    return sorted(sources, key=key)


def _resolve_build(
    store: Path, store_build: str | None, given: str | None, sources: Sequence[GenotypeSource]
) -> tuple[str, str]:
    """The build of this ingest and where it came from; every piece of evidence must agree."""
    stated = [(src.name, b) for src in sources if (b := getattr(src, "header_build", None))]
    for name, b in stated:
        if b != stated[0][1]:
            raise IngestError(
                name, f"its header says {b} but {stated[0][0]}'s says {stated[0][1]}: a store holds one genome build"
            )
    header = stated[0][1] if stated else None
    if given is not None and header is not None and given != header:
        raise IngestError(stated[0][0], f"its header says {header}, not --build {given}")
    claimed = given or header
    if store_build is not None and claimed is not None and claimed != store_build:
        where = stated[0][0] if header else "--build"
        raise IngestError(
            where,
            f"the store {store.name} holds {store_build} data and this is {claimed}: a store holds one genome "
            "build (liftover is out of scope)",
        )
    if claimed is None and store_build is None:
        where = sources[0].name if sources else str(store)
        raise IngestError(
            where,
            "the header names no genome build (no ##reference naming one, no ##contig length of a primary "
            "chromosome): give --build GRCh37 or --build GRCh38",
        )
    build = claimed or store_build
    assert build is not None
    silent = len(sources) - len(stated)
    if given is not None:
        how = "--build" + (", as the file headers say" if stated else "")
    elif header is not None:
        how = "from the file header" + ("s" if len(stated) > 1 else "")
        if silent:
            how += f"; {plural(silent, 'file')} {'states' if silent == 1 else 'state'} none"
    else:
        how = "the store's" + (
            f"; {plural(silent, 'file')} {'states' if silent == 1 else 'state'} none" if silent else ""
        )
    return build, how


def _covered(
    store: Path, exists: bool, stored: list[Region] | None, bed: Path | None, build: str, loading: bool
) -> list[Region] | None:
    """The store's covered regions after this ingest (None: its data covers whole contigs).

    A new store takes the BED file's regions; a later ingest adds its file's regions to them (files of one
    store hold the same samples, so they split the genome between them). A store created without
    ``--covered-regions`` holds whole-contig data, and cannot be narrowed later.
    """
    if bed is None:
        if stored is not None and loading:
            raise IngestError(
                str(store),
                "the store records covered regions (exome or array data): give --covered-regions for the new file(s)",
            )
        return stored
    regions = read_bed(bed, build)
    if stored is None:
        if exists:
            raise IngestError(
                str(bed),
                "the store was built without --covered-regions (its data covers whole contigs); coverage "
                "cannot be narrowed later: build a new store",
            )
        return regions
    return merge([(r.chrom, r.start, r.end) for r in (*stored, *regions)])


def _check_duplicates(con: duckdb.DuckDBPyConnection, first_vid: int) -> None:
    rows = con.execute(
        "SELECT a.chrom, a.pos, a.ref, a.alt, sa.name, a.line, sb.name, b.line FROM variants a "
        "JOIN variants b ON a.chrom = b.chrom AND a.pos = b.pos AND a.ref = b.ref AND a.alt = b.alt "
        "AND a.vid < b.vid JOIN sources sa ON sa.source_id = a.source_id "
        "JOIN sources sb ON sb.source_id = b.source_id WHERE b.vid >= ? LIMIT 1",
        [first_vid],
    ).fetchall()
    if rows:
        row = rows[0]
        chrom, pos, ref, alt, a_name, a_line, b_name, b_line = row
        raise IngestError(
            f"{b_name}:{b_line}",
            f"variant {chrom}-{pos}-{ref}-{alt} appears twice (also at {a_name}:{a_line})",
        )


def _renumber(con: duckdb.DuckDBPyConnection, first_vid: int) -> None:
    """Give this ingest's variants ids in genomic order and rewrite their calls in that order."""
    con.execute(
        "CREATE TEMP TABLE _vmap AS SELECT vid AS old, "
        "(? + row_number() OVER (ORDER BY contig_order, chrom, pos, ref, alt) - 1)::INTEGER AS new "
        "FROM variants WHERE vid >= ?",
        [first_vid, first_vid],
    )
    for table, cols in (("calls", "m.new, t.sid, t.cls"), ("dense", "m.new, t.cls, t.bits")):
        order = "m.new, t.sid" if table == "calls" else "m.new, t.cls"
        con.execute(
            f"CREATE TEMP TABLE _{table}_new AS SELECT {cols} FROM {table} t "
            f"JOIN _vmap m ON t.vid = m.old ORDER BY {order}"
        )
        con.execute(f"DELETE FROM {table} WHERE vid >= ?", [first_vid])
        con.execute(f"INSERT INTO {table} SELECT * FROM _{table}_new")
        con.execute(f"DROP TABLE _{table}_new")
    con.execute(
        "CREATE TEMP TABLE _variants_new AS SELECT m.new AS vid, v.* EXCLUDE (vid) FROM variants v "
        "JOIN _vmap m ON v.vid = m.old ORDER BY m.new"
    )
    con.execute("DELETE FROM variants WHERE vid >= ?", [first_vid])
    con.execute("INSERT INTO variants SELECT * FROM _variants_new")
    con.execute("DROP TABLE _variants_new")
    con.execute("DROP TABLE _vmap")


def _line_of(origin: str) -> int:
    tail = origin.rsplit(":", 1)[-1].rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _position(src: GenotypeSource, records_done: int) -> int:
    """Progress units: bytes consumed for a file source, records for a generated one."""
    pos = getattr(src, "position", None)
    return int(pos()) if callable(pos) else records_done


def _remove_db(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
