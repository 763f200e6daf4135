"""Fuzzing ingest with damaged inputs, in process (``node.ingest.ingest``, the function the CLI runs):
VCFs (plain, gzip, BGZF) with bit flips, truncations, inserted or deleted bytes, damaged header lines, huge
fields, non-UTF-8 bytes, and damaged BGZF blocks; sample sheets damaged the same ways. Each case either
ingests or fails with an ``IngestError`` naming the damaged file, never another exception; and a failure
leaves no partial store: no store where there was none, the previous store byte-identical where there was
one (ingest then adds a second file, chr2, to a store of chr1 + chrX)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genogate.errors import IngestError
from node.ingest import ingest
from node.ingest.sheet import SheetColumns
from tests.fuzz.cases import fuzz, record
from tests.integration.conftest import BASE_RECORDS, FORMAT_GT, bgzf, many_records, sheet_text, vcf_text
from tests.integration.conftest import ingest as run_ingest

FORMAT_DP = '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">'


@dataclass
class Bench:
    dir: Path
    previous: Path  # a good store of the first file (chr1 + chrX)
    vcf: bytes  # the good second file (chr2), plain text
    sheet: bytes


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "first.vcf").write_text(vcf_text(BASE_RECORDS))
        (root / "sheet.tsv").write_text(sheet_text())
        ingest(root / "previous.duckdb", [root / "first.vcf"], root / "sheet.tsv")
        yield Bench(root, root / "previous.duckdb", vcf_text(many_records("2", 40)).encode(), sheet_text().encode())


_damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20), st.just(b"")),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
    st.tuples(
        st.just("non-utf8"), st.integers(0, 2**20), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])
    ),
    st.tuples(st.just("huge-field"), st.integers(0, 2**20), st.sampled_from([10_000, 200_000])),
    st.tuples(st.just("drop-line"), st.integers(0, 2**20), st.just(b"")),
    st.tuples(st.just("duplicate-line"), st.integers(0, 2**20), st.just(b"")),
)


def _apply(data: bytes, damage: tuple[str, int, object]) -> bytes:
    kind, at, arg = damage
    i = at % (len(data) + 1)
    if kind == "flip" and data:
        i %= len(data)
        return data[:i] + bytes([data[i] ^ (1 << int(arg))]) + data[i + 1 :]  # type: ignore[call-overload]
    if kind == "truncate":
        return data[:i]
    if kind in ("insert", "non-utf8"):
        return data[:i] + bytes(arg) + data[i:]  # type: ignore[call-overload]
    if kind == "delete":
        return data[:i] + data[i + int(arg) :]  # type: ignore[call-overload]
    lines = data.split(b"\n")
    j = at % len(lines)
    if kind == "huge-field":
        fields = lines[j].split(b"\t")
        fields[at % len(fields)] = b"A" * int(arg)  # type: ignore[call-overload]
        lines[j] = b"\t".join(fields)
    elif kind == "drop-line":
        del lines[j]
    elif kind == "duplicate-line":
        lines.insert(j, lines[j])
    return b"\n".join(lines)


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _case(
    bench: Bench,
    vcf: bytes,
    sheet: bytes,
    compression: str,
    existing: bool,
    damaged: str,
    columns: SheetColumns | None = None,
    sheet_name: str = "sheet.tsv",
) -> None:
    work = Path(tempfile.mkdtemp(dir=bench.dir))
    try:
        vcf_path = work / ("in.vcf" + {"plain": "", "gzip": ".gz", "bgzf": ".gz"}[compression])
        vcf_path.write_bytes(vcf)
        sheet_path = work / sheet_name
        sheet_path.write_bytes(sheet)
        store = work / "store.duckdb"
        key = work / "pseudonym.key"
        if existing:
            shutil.copy(bench.previous, store)
            shutil.copy(bench.previous.parent / "pseudonym.key", key)
        before = (_digest(store), _digest(key))
        try:
            ingest(store, [vcf_path], sheet_path, sheet_columns=columns)
        except IngestError as exc:
            named = vcf_path if damaged == "vcf" else sheet_path
            assert named.name in str(exc) or str(named) in exc.where or str(vcf_path) in exc.where, str(exc)
            assert (_digest(store), _digest(key)) == before, "a failed ingest changed the store or its key"
            leftovers = {p.name for p in work.iterdir()} - {vcf_path.name, sheet_path.name, store.name, key.name}
            assert leftovers <= {f".{store.name}.lock"}, leftovers  # no temporary build, WAL or new key
            return
        assert store.exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compress(text: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(text, mtime=0)
    if compression == "bgzf":
        return bgzf(text, lines_per_block=7)[0]
    return text


@fuzz(60, deadline_s=60)
@given(
    st.sampled_from(["plain", "gzip", "bgzf"]), st.booleans(), st.booleans(), st.lists(_damage, min_size=1, max_size=3)
)
def test_a_damaged_vcf_ingests_or_fails_naming_it_with_no_partial_store(
    bench: Bench, compression: str, existing: bool, after_compression: bool, damages: list[tuple[str, int, object]]
) -> None:
    record("ingest-vcf")
    data = bench.vcf
    if not after_compression:
        for d in damages:
            data = _apply(data, d)
    data = _compress(data, compression)
    if after_compression:  # damage the gzip/BGZF stream itself
        for d in damages:
            data = _apply(data, d)
    _case(bench, data, bench.sheet, compression, existing, "vcf")


@fuzz(60, deadline_s=60)
@given(st.booleans(), st.lists(_damage, min_size=1, max_size=3))
def test_a_damaged_sample_sheet_ingests_or_fails_naming_it_with_no_partial_store(
    bench: Bench, existing: bool, damages: list[tuple[str, int, object]]
) -> None:
    record("ingest-sheet")
    sheet = bench.sheet
    for d in damages:
        sheet = _apply(sheet, d)
    _case(bench, bench.vcf, sheet, "plain", existing, "sheet")


# An institution's export of the same four participants: quoted CSV, its own names and spellings, an extra
# column and two participants the VCF does not hold.
_EXPORT = (
    b'"sample.id","Sex","DOB","Pop","HPO","Consent","Notes"\n'
    b'"S9","2","1966-07-01","afr","NA","DUO:0000042","x"\n'
    b'"S1","1","1980","EUR","hp:0001250","gru",""\n'
    b'"S2","Male","1975.0","AFR","NA","duo:0000006","y"\n'
    b'"S3","F","1990-05-17","eur","HP:0001250, ICD10:C50","ds-c50",""\n'
    b'"S4","female","NA","EAS","","GRU|npu",""\n'
    b'"S8","0","","","","",""\n'
)
_EXPORT_COLUMNS = "sample_id=sample.id,sex=Sex,birth_year=DOB,ancestry=Pop,phenotypes=HPO,consent=Consent"


@fuzz(40, deadline_s=60)
@given(st.booleans(), st.lists(_damage, min_size=1, max_size=3))
def test_a_damaged_institution_export_ingests_or_fails_naming_it_with_no_partial_store(
    bench: Bench, existing: bool, damages: list[tuple[str, int, object]]
) -> None:
    record("ingest-sheet")
    sheet = _EXPORT
    for d in damages:
        sheet = _apply(sheet, d)
    _case(bench, bench.vcf, sheet, "plain", existing, "sheet", SheetColumns.parse(_EXPORT_COLUMNS), "export.csv")


def test_the_undamaged_institution_export_ingests(bench: Bench) -> None:
    """The fuzz case above starts from a good input (else every case would be a refusal)."""
    work = Path(tempfile.mkdtemp(dir=bench.dir))
    (work / "in.vcf").write_bytes(bench.vcf)
    (work / "export.csv").write_bytes(_EXPORT)
    summary = ingest(
        work / "s.duckdb", [work / "in.vcf"], work / "export.csv", sheet_columns=SheetColumns.parse(_EXPORT_COLUMNS)
    )
    assert (summary.samples, summary.sheet_rows, summary.sheet_extra, summary.sheet_ignored) == (4, 6, 2, ["Notes"])


def test_a_record_on_an_undeclared_contig_with_a_bad_pos_is_refused_not_a_crash(tmp_path: Path) -> None:
    """Found by the fuzzer above: the first record on a contig the header does not declare, with an
    unparsable POS and too few columns, made htslib hand cyvcf2 a half-parsed record whose REF crashed the
    process (SIGSEGV). Run as the real command in its own process, so that a regression fails this test
    instead of killing the test run."""
    records = [[*r[:8], "GT:DP", *(f"{gt}:7" for gt in r[9:])] for r in many_records("2", 3)]  # htslib's path
    lines = vcf_text(records).replace(FORMAT_GT, FORMAT_GT + "\n" + FORMAT_DP).splitlines()
    lines.insert(-1, "2\x081320\t.\tA\tG\t.\tPASS\t.\tGT\t1|0\t./.\t0/1\t0/0")  # a tab became a backspace
    for name, data in (("in.vcf", "\n".join(lines).encode() + b"\n"), ("in.vcf.gz", b"")):
        vcf = tmp_path / name
        vcf.write_bytes(data or gzip.compress((tmp_path / "in.vcf").read_bytes()))
        (tmp_path / "sheet.tsv").write_text(sheet_text())
        res = run_ingest(tmp_path / f"{name}.duckdb", [vcf], tmp_path / "sheet.tsv", cwd=tmp_path)
        assert res.returncode == 4, res.stderr
        assert (
            res.stderr.splitlines()[-1]
            == f"genogate-node: error: {vcf}:{len(lines) - 1}: POS '.' is not a whole number"
        )
        assert not (tmp_path / f"{name}.duckdb").exists()
