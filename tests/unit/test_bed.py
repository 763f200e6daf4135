"""``node.bed.read_bed``: BED (0-based, half-open) to merged 1-based inclusive regions on canonical contigs."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from genogate.errors import IngestError
from genogate.query import Region
from node.bed import read_bed


def _bed(tmp_path: Path, text: str, name: str = "t.bed") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_intervals_are_converted_canonicalised_sorted_and_merged(tmp_path: Path) -> None:
    text = (
        "browser position chr1:1-1000\n"
        'track name="exome targets"\n'
        "# comment\n"
        "\n"
        "chrX\t0\t5\tname\t0\t+\n"
        "chr1\t199\t300\n"
        "1\t99\t150\n"
        "chr1\t150\t180\n"  # adjacent to 100-150 (151..180): merged
        "chr1\t120\t130\n"  # inside: merged
        "NC_000002.11\t9\t10\n"  # GRCh37's chromosome 2
        "chr10 5 6\n"  # space-separated
    )
    assert read_bed(_bed(tmp_path, text), "GRCh37") == [
        Region("1", 100, 180),
        Region("1", 200, 300),
        Region("2", 10, 10),
        Region("10", 6, 6),
        Region("X", 1, 5),
    ]


def test_gzip_bed_is_read(tmp_path: Path) -> None:
    p = tmp_path / "t.bed.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("chr22\t0\t100\n")
    assert read_bed(p, "GRCh38") == [Region("22", 1, 100)]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("chr1\t0\t10\nchr1\t5\n", 2, "at least 3 columns"),
        ("chr1\tx\t10\n", 1, "start and end must be whole numbers"),
        ("chr1\t-1\t10\n", 1, "start and end must be whole numbers"),
        ("# header\nchr1\t10\t10\n", 2, "end (10) must be greater than start (10)"),
        ("NC_000001.11\t0\t10\n", 1, "NC_000001.11 is a GRCh38 accession, not GRCh37"),
        ("chr1\t0\t9999999999\n", 1, "past the largest position"),
        ("HLA-A*01:01\t0\t10\n", 1, "must be 1-64 letters, digits"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    p = _bed(tmp_path, text)
    with pytest.raises(IngestError) as err:
        read_bed(p, "GRCh37")
    assert err.value.where == f"{p}:{line}"
    assert words in err.value.why


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="holds no intervals"):
        read_bed(_bed(tmp_path, "track name=x\n# nothing\n"), "GRCh37")
    with pytest.raises(IngestError, match="no such file"):
        read_bed(tmp_path / "absent.bed", "GRCh37")
