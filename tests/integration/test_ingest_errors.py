"""Every kind of bad ingest input fails cleanly through the real ``genogate-node ingest`` command.

For each kind: the documented exit code (4 bad input, 5 store error, 2 usage), one last stderr line
``genogate-node: error: <file>[:<line>]: <reason>`` naming the file (and line) with a reason a person can act
on (htslib may log its own ``[E::...]`` lines before it; never a traceback), nothing on stdout, and the store
exactly as it was:

* no store before: still none afterwards, and the store's directory holds nothing new: no temporary build,
  no WAL, no pseudonymisation key (only the persistent lock file may appear, see ``lock_name``);
* an existing good store (a subset of the kinds, marked ``existing``): the whole directory (store, key,
  lock) byte-identical with the same mtimes, and ``genogate-node freq`` prints exactly what it printed before.

Bad inputs are derived from a second, chr2 file of the same four samples (see ``conftest.py``), so against
the existing store (chr1 + chrX) each would be a legitimate new input but for its defect.
"""

from __future__ import annotations

import array
import contextlib
import datetime as _dt
import fcntl
import gzip
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from tests.conftest import SUBSET, require_shared
from tests.integration.conftest import (
    BASE_RECORDS,
    FIXED,
    FORMAT_GT,
    NEW_RECORDS,
    SAMPLES,
    SHEET_HEADER,
    SHEET_ROWS,
    autosome_records,
    bgzf,
    dir_state,
    freq,
    header_lines,
    ingest,
    ingest_ok,
    kg_sheet,
    lock_name,
    many_records,
    run_node,
    sheet_text,
    vcf_text,
)

PREFIX = "genogate-node: error: "
ANY_LINE = -1  # the message names some line of the file (where htslib stopped), not one we can predict


@dataclass
class Workspace:
    """Where a case writes: ``inp`` (bad inputs) and ``node`` (the store's directory).

    ``base_vcf`` is the file an existing store was built from.
    """

    inp: Path
    node: Path
    store: Path
    sheet: Path
    base_vcf: Path

    def text(self, name: str, text: str) -> Path:
        p = self.inp / name
        p.write_text(text)
        return p

    def data(self, name: str, data: bytes) -> Path:
        p = self.inp / name
        p.write_bytes(data)
        return p

    def vcf(self, name: str, records: list[list[str]] | None = None, **kw: object) -> tuple[Path, str]:
        text = vcf_text(NEW_RECORDS if records is None else records, **kw)  # type: ignore[arg-type]
        return self.text(name, text), text


@dataclass(frozen=True)
class Bad:
    """One bad invocation and what its error must say: ``<where>[:<line>]: ...<words>...``."""

    vcfs: list[Path]
    where: Path | str
    words: tuple[str, ...]
    line: int = 0  # 0: no line number; ANY_LINE: some line
    sheet: Path | None = None  # default: the good sheet
    store: Path | None = None  # default: the workspace's store
    key: Path | None = None
    code: int = 4


def line_of(text: str, record_index: int) -> int:
    """The 1-based line number of record ``record_index`` (0-based) of a VCF text."""
    return header_lines(text) + 1 + record_index


def edited(records: list[list[str]], i: int, j: int, value: str) -> list[list[str]]:
    out = [list(r) for r in records]
    out[i][j] = value
    return out


def sheet_rows_edited(i: int, j: int, value: str) -> list[list[str]]:
    rows = [list(r) for r in SHEET_ROWS]
    rows[i][j] = value
    return rows


# The kinds -----------------------------------------------------------------------------------------------

CASES: dict[str, Callable[[Workspace], Bad]] = {}
EXISTING: list[str] = []  # kinds also run against an existing store
ONLY_EXISTING: list[str] = []  # kinds that need an existing store
XFAIL: dict[str, str] = {}  # kind -> the product bug (strict xfail)


def kind(
    *, existing: bool = False, only_existing: bool = False, xfail: str = ""
) -> Callable[[Callable[[Workspace], Bad]], Callable[[Workspace], Bad]]:
    def register(fn: Callable[[Workspace], Bad]) -> Callable[[Workspace], Bad]:
        name = fn.__name__
        CASES[name] = fn
        if existing or only_existing:
            EXISTING.append(name)
        if only_existing:
            ONLY_EXISTING.append(name)
        if xfail:
            XFAIL[name] = xfail
        return fn

    return register


# Compression -------------------------------------------------------------------------------------------


@kind(existing=True)
def truncated_gzip(w: Workspace) -> Bad:
    data = gzip.compress(vcf_text(many_records("2", 3000)).encode(), mtime=0)
    p = w.data("cut.vcf.gz", data[: len(data) * 6 // 10])
    return Bad([p], p, ("the compressed file is truncated or corrupt",), line=ANY_LINE)


@kind()
def truncated_gzip_in_header(w: Workspace) -> Bad:
    data = gzip.compress(vcf_text(NEW_RECORDS).encode(), mtime=0)
    p = w.data("cut.vcf.gz", data[:-12])
    return Bad([p], p, ("the compressed file is truncated or corrupt",))


@kind()
def truncated_bgzf_real_data(w: Workspace) -> Bad:
    require_shared()
    src = SUBSET / "1KG_phase3_subset_allchr.vcf.gz"
    p = w.data("1kg_cut.vcf.gz", src.read_bytes()[: src.stat().st_size // 2])
    sheet = kg_sheet(SUBSET / "1KG_phase3_subset_annot.tsv", w.inp / "1kg.tsv")
    return Bad([p], p, ("the BGZF file has no end-of-file marker: it is truncated",), sheet=sheet)


@kind(existing=True)
def bgzf_cut_at_a_block_boundary(w: Workspace) -> Bad:
    # Cut between two records at a block boundary: htslib only warns and would load the first records.
    data, offsets = bgzf(vcf_text(NEW_RECORDS).encode(), lines_per_block=1)
    p = w.data("cut.vcf.gz", data[: offsets[-2]])
    return Bad([p], p, ("the BGZF file has no end-of-file marker: it is truncated",))


@kind(existing=True)
def corrupt_gzip_bytes_in_the_middle(w: Workspace) -> Bad:
    data = bytearray(gzip.compress(vcf_text(many_records("2", 3000)).encode(), mtime=0))
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0x5A for b in data[mid : mid + 16])
    p = w.data("corrupt.vcf.gz", bytes(data))
    return Bad([p], p, ("the compressed file is truncated or corrupt",), line=ANY_LINE)


@kind(existing=True)
def corrupt_bgzf_block(w: Workspace) -> Bad:
    data, offsets = bgzf(vcf_text(many_records("2", 400)).encode(), lines_per_block=20)
    buf = bytearray(data)
    buf[offsets[10] + 40] ^= 0xFF  # inside the deflate data of a block in the middle: fails its CRC
    p = w.data("corrupt.vcf.gz", bytes(buf))
    return Bad([p], p, ("the compressed file is truncated or corrupt",), line=ANY_LINE)


@kind()
def corrupt_bgzf_block_real_data(w: Workspace) -> Bad:
    require_shared()
    data = bytearray((SUBSET / "1KG_phase3_subset_allchr.vcf.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    p = w.data("1kg_corrupt.vcf.gz", bytes(data))
    sheet = kg_sheet(SUBSET / "1KG_phase3_subset_annot.tsv", w.inp / "1kg.tsv")
    return Bad([p], p, ("the compressed file is truncated or corrupt",), line=ANY_LINE, sheet=sheet)


# Header --------------------------------------------------------------------------------------------------


@kind(existing=True)
def header_without_fileformat(w: Workspace) -> Bad:
    p, _ = w.vcf("nofmt.vcf", fileformat=False)
    return Bad([p], p, ("not a VCF or BCF file", "##fileformat=VCFv4.x"))


@kind(existing=True)
def header_without_chrom_line(w: Workspace) -> Bad:
    p, _ = w.vcf("nochrom.vcf", chrom_line=False)
    return Bad([p], p, ("the header has no #CHROM line",))


@kind()
def not_a_vcf_at_all(w: Workspace) -> Bad:
    p = w.data("photo.vcf", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return Bad([p], p, ("not a VCF or BCF file",))


@kind()
def duplicate_sample_ids_in_header(w: Workspace) -> Bad:
    p, _ = w.vcf("dupsamples.vcf", samples=("S1", "S2", "S3", "S3"))
    return Bad([p], p, ("sample id(s) appear twice in the header: S3",))


@kind()
def no_sample_columns(w: Workspace) -> Bad:
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=2>", "\t".join(FIXED[:8])]
    lines += ["\t".join(r[:8]) for r in NEW_RECORDS]
    p = w.text("sites.vcf", "\n".join(lines) + "\n")
    return Bad([p], p, ("the file has no sample columns",))


@kind()
def empty_vcf(w: Workspace) -> Bad:
    p = w.text("empty.vcf", "")
    return Bad([p], p, ("the file is empty",))


@kind()
def nonexistent_vcf(w: Workspace) -> Bad:
    p = w.inp / "nowhere.vcf"
    return Bad([p], p, ("no such file",))


# Records -------------------------------------------------------------------------------------------------


@kind(existing=True)
def gt_that_is_not_a_genotype(w: Workspace) -> Bad:
    p, text = w.vcf("badgt.vcf", edited(NEW_RECORDS, 2, 11, "AB"))
    return Bad([p], p, ("GT of sample column 3 is not a genotype",), line=line_of(text, 2))


@kind(existing=True)
def gt_not_a_genotype_on_undeclared_contig(w: Workspace) -> Bad:
    # No ##contig lines: htslib hides this GT error behind its undefined-contig warning (this used to crash).
    p, text = w.vcf("badgt_nocontig.vcf", edited(NEW_RECORDS, 0, 10, "foo"), contigs=None)
    return Bad([p], p, ("GT of sample column 2 is not a genotype",), line=line_of(text, 0))


@kind(existing=True)
def allele_index_past_the_alts(w: Workspace) -> Bad:
    p, text = w.vcf("allele.vcf", edited(NEW_RECORDS, 0, 10, "0/2"))
    return Bad([p], p, ("allele index 2 in sample 'S2' is past the 1 ALT allele(s)",), line=line_of(text, 0))


@kind(existing=True)
def too_few_sample_columns(w: Workspace) -> Bad:
    records = [list(r) for r in NEW_RECORDS]
    records[3] = records[3][:-1]
    p, text = w.vcf("short.vcf", records)
    return Bad([p], p, ("expected 13 columns (9 + 4 samples), found 12",), line=line_of(text, 3))


@kind(existing=True)
def non_numeric_pos(w: Workspace) -> Bad:
    p, text = w.vcf("pos.vcf", edited(NEW_RECORDS, 2, 1, "3x0"))
    return Bad([p], p, ("POS '3x0' is not a whole number",), line=line_of(text, 2))


@kind()
def pos_past_the_largest_position(w: Workspace) -> Bad:
    p, text = w.vcf("pos.vcf", edited(NEW_RECORDS, 2, 1, str(2**31)))
    return Bad([p], p, ("POS must be between 1 and 2,147,483,647",), line=line_of(text, 2))


@kind()
def pos_past_the_largest_position_in_a_rich_format(w: Workspace) -> Bad:
    # FORMAT GT:DP: read by htslib (cyvcf2), not the GT-only text parser
    records = [[*r[:8], "GT:DP", *(f"{gt}:7" for gt in r[9:])] for r in edited(NEW_RECORDS, 2, 1, str(2**31))]
    p, text = w.vcf("pos.vcf", records)
    return Bad([p], p, ("POS must be between 1 and 2,147,483,647",), line=line_of(text, 2))


@kind()
def chrom_not_utf8(w: Workspace) -> Bad:
    text = vcf_text(edited(NEW_RECORDS, 1, 0, "chr\u00e92"))
    p = w.data("chrom.vcf", text.encode("latin-1"))
    return Bad([p], p, ("CHROM is not UTF-8 text",), line=line_of(text, 1))


@kind()
def sample_name_not_utf8(w: Workspace) -> Bad:
    text = vcf_text(NEW_RECORDS).replace("\t" + SAMPLES[0] + "\t", "\t" + SAMPLES[0] + "\u00e9\t", 1)
    p = w.data("samples.vcf", text.encode("latin-1"))
    return Bad([p], p, ("the sample names in the #CHROM line are not UTF-8 text",))


@kind(existing=True)
def ploidy_3(w: Workspace) -> Bad:
    p, text = w.vcf("triploid.vcf", edited(NEW_RECORDS, 1, 11, "0/1/1"))
    return Bad([p], p, ("ploidy 3 is not supported",), line=line_of(text, 1))


@kind(existing=True)
def same_variant_twice_in_one_file(w: Workspace) -> Bad:
    p, text = w.vcf("dup.vcf", [*NEW_RECORDS, NEW_RECORDS[2]])
    return Bad(
        [p],
        p,
        ("variant 2-300-G-A appears twice", f"(also at {p}:{line_of(text, 2)})"),
        line=line_of(text, 4),
    )


@kind(only_existing=True)
def variant_already_in_the_store(w: Workspace) -> Bad:
    p, text = w.vcf("again.vcf", [*NEW_RECORDS, BASE_RECORDS[0]])
    base_line = line_of(vcf_text(BASE_RECORDS), 0)
    return Bad(
        [p],
        p,
        ("variant 1-100-A-G appears twice", f"(also at {w.base_vcf}:{base_line})"),
        line=line_of(text, 4),
    )


# Several files -------------------------------------------------------------------------------------------


@kind()
def same_vcf_given_twice(w: Workspace) -> Bad:
    p, _ = w.vcf("twice.vcf")
    return Bad([p, p], p, ("the same file is given twice",))


@kind()
def same_vcf_under_two_spellings(w: Workspace) -> Bad:
    p, _ = w.vcf("twice.vcf")
    (w.inp / "sub").mkdir()
    return Bad([p, w.inp / "sub" / ".." / p.name], w.inp / "sub" / ".." / p.name, ("twice",))


@kind()
def same_content_under_two_names(w: Workspace) -> Bad:
    p, text = w.vcf("one.vcf")
    q = w.text("copy.vcf", text)
    return Bad([p, q], q, ("twice",))


@kind()
def files_with_different_samples(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    q, _ = w.vcf("chr3.vcf", [r[:-1] for r in autosome_records("3")], samples=SAMPLES[:3], contigs=("2", "3"))
    return Bad([p, q], q, (f"1 sample of {p} is not in this file: S4",))


# VCF against sheet ---------------------------------------------------------------------------------------


@kind(existing=True)
def vcf_samples_missing_from_the_sheet(w: Workspace) -> Bad:
    p, _ = w.vcf("extra.vcf", [[*r, "0/1"] for r in NEW_RECORDS], samples=(*SAMPLES, "S5"))
    return Bad([p], p, ("1 sample is not in the sample sheet: S5",))


# Sample sheet --------------------------------------------------------------------------------------------


def _sheet_case(w: Workspace, text: str, line: int, *words: str) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    sheet = w.text("sheet_bad.tsv", text)
    return Bad([p], sheet, words, line=line, sheet=sheet)


@kind(existing=True)
def sheet_unknown_column(w: Workspace) -> Bad:
    header = [*SHEET_HEADER[:-1], "consents"]
    return _sheet_case(
        w,
        sheet_text(header=header),
        1,
        "column 'consents' looks like our consent column but is not read as one",
        "map it (consent=consents)",
    )


@kind()
def sheet_without_sample_id(w: Workspace) -> Bad:
    header = ["id", *SHEET_HEADER[1:]]
    return _sheet_case(w, sheet_text(header=header), 1, "the header has no sample_id column")


@kind()
def sheet_column_twice(w: Workspace) -> Bad:
    rows = [[*r, r[1]] for r in SHEET_ROWS]
    return _sheet_case(w, sheet_text(rows, [*SHEET_HEADER, "sex"]), 1, "column(s) given twice: sex")


@kind(existing=True)
def sheet_bad_sex(w: Workspace) -> Bad:
    return _sheet_case(
        w, sheet_text(sheet_rows_edited(1, 1, "X")), 3, "column sex: 'X' is not a sex this store records"
    )


@kind()
def sheet_unparseable_birth_year(w: Workspace) -> Bad:
    return _sheet_case(
        w, sheet_text(sheet_rows_edited(2, 2, "19x0")), 4, "column birth_year: '19x0' is not a four-digit year"
    )


@kind()
def sheet_birth_year_in_the_future(w: Workspace) -> Bad:
    next_year = _dt.date.today().year + 1
    return _sheet_case(
        w,
        sheet_text(sheet_rows_edited(0, 2, str(next_year))),
        2,
        f"column birth_year: birth year {next_year} is outside 1850-{next_year - 1}",
    )


@kind(existing=True)
def sheet_unknown_consent_code(w: Workspace) -> Bad:
    return _sheet_case(w, sheet_text(sheet_rows_edited(3, 5, "GRU;FOO")), 5, "unknown consent code 'FOO'")


@kind()
def sheet_withdrawn_with_another_code(w: Workspace) -> Bad:
    return _sheet_case(
        w, sheet_text(sheet_rows_edited(1, 5, "WITHDRAWN;HMB")), 3, "WITHDRAWN must be the only consent code"
    )


@kind()
def sheet_bad_phenotype_term(w: Workspace) -> Bad:
    return _sheet_case(
        w,
        sheet_text(sheet_rows_edited(2, 4, "HP:0001250;seizures")),
        4,
        "phenotype term 'seizures' is not PREFIX:CODE",
    )


@kind()
def sheet_bad_ancestry(w: Workspace) -> Bad:
    return _sheet_case(
        w, sheet_text(sheet_rows_edited(0, 3, "EUR/AFR")), 2, "column ancestry: 'EUR/AFR': an ancestry label is 1-64"
    )


@kind()
def sheet_empty_sample_id(w: Workspace) -> Bad:
    return _sheet_case(w, sheet_text(sheet_rows_edited(0, 0, "")), 2, "column sample_id: the sample id is empty")


@kind()
def sheet_duplicate_sample_ids(w: Workspace) -> Bad:
    rows = [*SHEET_ROWS, ["S2", "M", "1975", "AFR", "", "HMB"]]
    return _sheet_case(w, sheet_text(rows), 6, "sample id 'S2' appears twice (first on line 3)")


@kind(existing=True)
def sheet_row_with_wrong_number_of_fields(w: Workspace) -> Bad:
    rows = [list(r) for r in SHEET_ROWS]
    rows[1].append("x")  # (empty trailing fields are a spreadsheet's stray tabs, accepted)
    return _sheet_case(w, sheet_text(rows), 3, "expected 6 tab-separated fields, found 7")


@kind()
def sheet_empty(w: Workspace) -> Bad:
    return _sheet_case(w, "", 0, "the sample sheet is empty")


@kind()
def sheet_header_only(w: Workspace) -> Bad:
    return _sheet_case(w, sheet_text([]), 0, "the sample sheet has a header but no participants")


@kind()
def sheet_not_utf8(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    sheet = w.data("latin1.tsv", sheet_text(sheet_rows_edited(0, 4, "local:caf\u00e9")).encode("latin-1"))
    return Bad([p], sheet, ("the sample sheet is not UTF-8 text",), sheet=sheet)


@kind()
def sheet_missing(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    sheet = w.inp / "nowhere.tsv"
    return Bad([p], sheet, ("cannot read the sample sheet",), sheet=sheet)


# Store and key -------------------------------------------------------------------------------------------


@kind()
def store_directory_does_not_exist(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    store = w.node / "missing" / "store.duckdb"
    return Bad([p], store, ("directory", "does not exist"), store=store)


@kind()
def store_directory_is_a_file(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    store = w.inp / "afile" / "store.duckdb"
    (w.inp / "afile").write_text("not a directory\n")
    return Bad([p], store, ("directory",), store=store)


@kind()
def store_path_is_a_directory(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    w.store.mkdir()
    return Bad([p], w.store, ("the store path exists and is not a file",))


@kind()
def store_is_not_a_duckdb_file(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    w.store.write_bytes(b"this is not a database\n" * 200)
    key = w.text("node.key", "ab" * 32 + "\n")
    return Bad([p], w.store, ("cannot open the store",), key=key, code=5)


@kind()
def store_is_not_a_genogate_store(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    con = duckdb.connect(str(w.store))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    key = w.text("node.key", "ab" * 32 + "\n")
    return Bad([p], w.store, ("not a genogate store",), key=key, code=5)


@kind(only_existing=True)
def wrong_key_for_an_existing_store(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    key = w.text("other.key", "cd" * 32 + "\n")
    return Bad([p], w.store, ("the pseudonymisation key does not match",), key=key)


@kind(only_existing=True)
def missing_key_for_an_existing_store(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    key = w.inp / "lost.key"
    return Bad([p], key, ("the store exists but its pseudonymisation key is missing",), key=key)


@kind()
def key_file_not_hex(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    key = w.text("bad.key", "not a key\n")
    return Bad([p], key, ("the pseudonymisation key is unreadable",), key=key)


@kind()
def key_file_wrong_length(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    key = w.text("short.key", "abcd\n")
    return Bad([p], key, ("must be 32 bytes",), key=key)


@kind()
def key_cannot_be_created(w: Workspace) -> Bad:
    p, _ = w.vcf("chr2.vcf")
    key = w.inp / "no" / "such" / "dir.key"
    return Bad([p], key, ("cannot create the pseudonymisation key",), key=key)


# Running them --------------------------------------------------------------------------------------------


def assert_error(res: subprocess.CompletedProcess[str], bad: Bad) -> None:
    assert res.returncode == bad.code, f"exit {res.returncode}, stderr:\n{res.stderr}"
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines and lines[-1].startswith(PREFIX), res.stderr
    # htslib may log first ([E::...], [W::...]), and a slow run its progress lines; the command itself prints
    # exactly one line.
    assert all(line.startswith(("[", "ingest: ")) for line in lines[:-1]), res.stderr
    msg = lines[-1][len(PREFIX) :]
    where = re.escape(str(bad.where))
    line = {0: "", ANY_LINE: r":\d+"}.get(bad.line, f":{bad.line}")
    assert re.match(f"{where}{line}: ", msg), f"expected {bad.where}{line}: ..., got {msg!r}"
    for word in bad.words:
        assert word in msg, f"{word!r} not in {msg!r}"


def _params(names: list[str]) -> list[object]:
    return [
        pytest.param(n, id=n, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[n])] if n in XFAIL else [])
        for n in names
    ]


@pytest.mark.parametrize("name", _params([n for n in CASES if n not in ONLY_EXISTING]))
def test_bad_input_leaves_no_store(name: str, tmp_path: Path) -> None:
    inp, node = tmp_path / "in", tmp_path / "node"
    inp.mkdir()
    node.mkdir()
    (node / "notes.txt").write_text("the operator's own file\n")
    sheet = inp / "sheet.tsv"
    sheet.write_text(sheet_text())
    w = Workspace(inp, node, node / "store.duckdb", sheet, inp / "base.vcf")
    bad = CASES[name](w)
    store = bad.store or w.store
    store_existed = store.exists()
    before = dir_state(node)
    res = ingest(store, bad.vcfs, bad.sheet or sheet, key=bad.key, cwd=tmp_path)
    assert_error(res, bad)
    after = dir_state(node)
    extra = set(after) - set(before)
    assert extra <= {lock_name(store)}, f"left behind: {sorted(extra)}"
    assert {k: after[k] for k in before} == before
    assert store.exists() == store_existed
    if store.is_dir():
        assert not any(store.iterdir())


@dataclass
class GoodStore:
    """A store built from the chr1 + chrX file: its directory, the file it came from, its freq output."""

    node: Path
    base_vcf: Path
    freq: str
    state: dict[str, object] = field(default_factory=dict)


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> GoodStore:
    d = tmp_path_factory.mktemp("good")
    node = d / "node"
    node.mkdir()
    base = d / "base.vcf"
    base.write_text(vcf_text(BASE_RECORDS))
    sheet = d / "sheet.tsv"
    sheet.write_text(sheet_text())
    ingest_ok(node / "store.duckdb", [base], sheet, cwd=d)
    return GoodStore(node, base, freq(node / "store.duckdb", cwd=d), dict(dir_state(node)))


@pytest.mark.parametrize("name", _params(EXISTING))
def test_bad_input_leaves_existing_store_untouched(name: str, tmp_path: Path, good_store: GoodStore) -> None:
    inp, node = tmp_path / "in", tmp_path / "node"
    inp.mkdir()
    shutil.copytree(good_store.node, node)  # copy2: same bytes and mtimes
    store = node / "store.duckdb"
    sheet = inp / "sheet.tsv"
    sheet.write_text(sheet_text())
    before = dir_state(node)
    assert before == good_store.state
    bad = CASES[name](Workspace(inp, node, store, sheet, good_store.base_vcf))
    res = ingest(bad.store or store, bad.vcfs, bad.sheet or sheet, key=bad.key, cwd=tmp_path)
    assert_error(res, bad)
    assert dir_state(node) == before  # store, key and lock file: same bytes, same mtimes, nothing new
    assert freq(store, cwd=tmp_path) == good_store.freq


def test_enough_kinds_are_covered() -> None:
    assert len(CASES) >= 22
    assert len(EXISTING) >= 8


# Kinds that need more than a builder -------------------------------------------------------------------


@contextlib.contextmanager
def unwritable(d: Path) -> Iterator[None]:
    """Make a directory refuse new entries, also for root (where mode bits do not count): chattr +i."""
    if os.geteuid() != 0:
        d.chmod(0o500)
        try:
            yield
        finally:
            d.chmod(0o700)
        return
    fs_ioc_getflags, fs_ioc_setflags, fs_immutable_fl = 0x80086601, 0x40086602, 0x10
    fd = os.open(d, os.O_RDONLY)
    try:
        flags = array.array("l", [0])
        try:
            fcntl.ioctl(fd, fs_ioc_getflags, flags, True)
            flags[0] |= fs_immutable_fl
            fcntl.ioctl(fd, fs_ioc_setflags, flags, True)
        except OSError as exc:
            pytest.skip(f"running as root and {d} cannot be made immutable here ({exc.strerror})")
        try:
            yield
        finally:
            flags[0] &= ~fs_immutable_fl
            fcntl.ioctl(fd, fs_ioc_setflags, flags, True)
    finally:
        os.close(fd)


def test_store_directory_not_writable(tmp_path: Path) -> None:
    inp, node = tmp_path / "in", tmp_path / "node"
    inp.mkdir()
    node.mkdir()
    vcf = inp / "chr2.vcf"
    vcf.write_text(vcf_text(NEW_RECORDS))
    sheet = inp / "sheet.tsv"
    sheet.write_text(sheet_text())
    store = node / "store.duckdb"
    with unwritable(node):
        res = ingest(store, [vcf], sheet, cwd=tmp_path)
    assert_error(res, Bad([vcf], store, ("permission denied", "not writable")))
    assert not any(node.iterdir())


def test_store_being_written_by_another_ingest(tmp_path: Path, good_store: GoodStore) -> None:
    node = tmp_path / "node"
    shutil.copytree(good_store.node, node)
    store = node / "store.duckdb"
    vcf = tmp_path / "chr2.vcf"
    vcf.write_text(vcf_text(NEW_RECORDS))
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(sheet_text())
    before = dir_state(node)
    fd = os.open(node / lock_name(store), os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running ingest holds it
        res = ingest(store, [vcf], sheet, cwd=tmp_path)
    finally:
        os.close(fd)
    assert_error(res, Bad([vcf], store, ("another ingest is writing this store",)))
    assert dir_state(node) == before
    assert freq(store, cwd=tmp_path) == good_store.freq


def test_missing_argument_is_a_usage_error(tmp_path: Path) -> None:
    vcf = tmp_path / "chr2.vcf"
    vcf.write_text(vcf_text(NEW_RECORDS))
    res = run_node("ingest", "--store", tmp_path / "store.duckdb", "--vcf", vcf, cwd=tmp_path)
    assert res.returncode == 2
    assert "the following arguments are required: --samples" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chr2.vcf"]


def test_records_without_gt_are_skipped_not_fatal(tmp_path: Path) -> None:
    # A record whose FORMAT lacks GT used to end the ingest with a traceback from cyvcf2.
    records = [list(r) for r in NEW_RECORDS]
    records[1][8:] = ["DP", "3", "4", "5", "6"]
    dp = '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">'
    text = vcf_text(records).replace(FORMAT_GT, f"{FORMAT_GT}\n{dp}")
    vcf = tmp_path / "nogt.vcf"
    vcf.write_text(text)
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(sheet_text())
    out = ingest_ok(tmp_path / "store.duckdb", [vcf], sheet, cwd=tmp_path)
    assert "skipped      1 record: no GT field" in out
    rows = freq(tmp_path / "store.duckdb", cwd=tmp_path).splitlines()[1:]
    assert [r.split("\t")[1] for r in rows] == ["100", "300", "400"]
