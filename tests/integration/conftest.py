"""Helpers for the ingest integration tests.

The real ``genogate-node`` command runs as a subprocess (``python -m node.cli``, with ``PYTHONPATH`` set to
this checkout, from a working directory that is not the checkout). Inputs are built in ``tmp_path``: a small
VCF with four samples (a multi-allelic site, an indel, a half-call, phased calls, male haploid chrX calls)
and its sample sheet, written as plain text, gzip or BGZF.

The test modules import the plain helpers from here (``from tests.integration.conftest import ...``), as
``tests/realdata`` does with ``tests/conftest.py``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SAMPLES = ("S1", "S2", "S3", "S4")
FORMAT_GT = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">'
FIXED = ("#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT")


def autosome_records(chrom: str) -> list[list[str]]:
    """Four records on ``chrom``: biallelic SNP, multi-allelic, phased with a half-call, indel."""
    return [
        [chrom, "100", ".", "A", "G", ".", "PASS", ".", "GT", "0/0", "0/1", "1/1", "./."],
        [chrom, "200", ".", "C", "T,G", ".", "PASS", ".", "GT", "0/1", "1/2", "2/2", "0/0"],
        [chrom, "300", ".", "G", "A", ".", "PASS", ".", "GT", "0|1", "0|0", "1|1", "0/."],
        [chrom, "400", ".", "T", "TA", ".", "PASS", ".", "GT", "1/1", "0/0", "0/1", "0/1"],
    ]


# S1 and S2 are male: haploid calls on chrX.
CHRX_RECORDS = [
    ["X", "1000", ".", "T", "C", ".", "PASS", ".", "GT", "0", "1", "0/1", "1/1"],
    ["X", "2000", ".", "G", "A", ".", "PASS", ".", "GT", "1", "0", "0/0", "./."],
]

# The store's first file (chr1 + chrX) and the second file every "bad input" is derived from (chr2).
BASE_RECORDS = autosome_records("1") + CHRX_RECORDS
NEW_RECORDS = autosome_records("2")

SHEET_HEADER = ["sample_id", "sex", "birth_year", "ancestry", "phenotypes", "consent"]
SHEET_ROWS = [
    ["S1", "M", "1980", "EUR", "HP:0001250", "GRU"],
    ["S2", "male", "1975", "AFR", "", "HMB"],
    ["S3", "F", "1990", "EUR", "HP:0001250;ICD10:C50", "DS-C50"],
    ["S4", "female", "", "EAS", "", "GRU;NPU"],
]


def vcf_text(
    records: Sequence[Sequence[str]],
    samples: Sequence[str] = SAMPLES,
    *,
    contigs: Sequence[str] | None = ("1", "2", "X"),
    fileformat: bool = True,
    chrom_line: bool = True,
    reference: str | None = "GRCh37",
) -> str:
    """A VCF: ``##fileformat``, ``##reference`` (naming the build), one ``##contig`` line per contig,
    ``##FORMAT=GT``, ``#CHROM``, records."""
    lines = ["##fileformat=VCFv4.2"] if fileformat else []
    lines += [f"##reference={reference}"] if reference else []
    lines += [f"##contig=<ID={c}>" for c in contigs or ()]
    lines.append(FORMAT_GT)
    if chrom_line:
        lines.append("\t".join([*FIXED, *samples]))
    lines += ["\t".join(r) for r in records]
    return "\n".join(lines) + "\n"


def many_records(chrom: str, n: int, start: int = 1000) -> list[list[str]]:
    """``n`` biallelic records with a repeating mix of genotypes (enough data to truncate or corrupt)."""
    gts = ("0/0", "0/1", "1/1", "./.", "0|1", "1|0", "0/0")
    return [
        [
            chrom,
            str(start + 10 * i),
            ".",
            "A",
            "G",
            ".",
            "PASS",
            ".",
            "GT",
            *(gts[(i * (j + 3) + j) % len(gts)] for j in range(len(SAMPLES))),
        ]
        for i in range(n)
    ]


def header_lines(text: str) -> int:
    """Number of header lines of a VCF text (the first record is on the next line)."""
    return sum(1 for line in text.splitlines() if line.startswith("#"))


def sheet_text(rows: Sequence[Sequence[str]] = SHEET_ROWS, header: Sequence[str] = SHEET_HEADER) -> str:
    return "\n".join("\t".join(r) for r in [header, *rows]) + "\n"


def bgzf(data: bytes, lines_per_block: int = 1) -> tuple[bytes, list[int]]:
    """BGZF-compress ``data``, a block per ``lines_per_block`` lines, then the end-of-file marker block.

    Returns the bytes and the offset of every block (the last one is the EOF marker).
    """
    lines = data.splitlines(keepends=True)
    chunks = [b"".join(lines[i : i + lines_per_block]) for i in range(0, len(lines), lines_per_block)]
    out = bytearray()
    offsets = []
    for chunk in [*chunks, b""]:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        cdata = comp.compress(chunk) + comp.flush()
        offsets.append(len(out))
        # gzip header with the BGZF extra field: "BC", 2 bytes, total block size - 1
        out += struct.pack("<4BIBBHBBHH", 0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, 66, 67, 2, len(cdata) + 25)
        out += cdata + struct.pack("<II", zlib.crc32(chunk), len(chunk))
    return bytes(out), offsets


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_node(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``genogate-node ARGS`` to completion (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=node_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def ingest_args(store: Path, vcfs: Sequence[Path], sheet: Path, key: Path | None = None) -> list[object]:
    args: list[object] = ["ingest", "--store", store]
    for v in vcfs:
        args += ["--vcf", v]
    args += ["--samples", sheet]
    if key is not None:
        args += ["--key", key]
    return args


def ingest(
    store: Path,
    vcfs: Sequence[Path],
    sheet: Path,
    *,
    cwd: Path,
    key: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return run_node(*ingest_args(store, vcfs, sheet, key), cwd=cwd)


def ingest_ok(store: Path, vcfs: Sequence[Path], sheet: Path, *, cwd: Path, key: Path | None = None) -> str:
    res = ingest(store, vcfs, sheet, cwd=cwd, key=key)
    assert res.returncode == 0, res.stderr
    return res.stdout


def freq(store: Path, *, cwd: Path, by: str | None = None) -> str:
    """``genogate-node freq`` TSV output (the exact counts of every allele)."""
    res = run_node("freq", "--store", store, *(["--by", by] if by else []), cwd=cwd)
    assert res.returncode == 0, res.stderr
    return res.stdout


def kg_sheet(annot: Path, out: Path) -> Path:
    """A sample sheet for the 1000 Genomes subset: sample.id, sex and super_pop (as ancestry)."""
    with open(annot) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out.write_text(
        "sample_id\tsex\tancestry\n" + "".join(f"{r['sample.id']}\t{r['sex']}\t{r['super_pop']}\n" for r in rows)
    )
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class FileState:
    sha256: str
    size: int
    mtime_ns: int


def dir_state(d: Path) -> dict[str, FileState | None]:
    """Every entry of a directory: files with their content hash and mtime, anything else as None."""
    out: dict[str, FileState | None] = {}
    for p in d.iterdir():
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[p.name] = FileState(sha256(p), st.st_size, st.st_mtime_ns)
        else:
            out[p.name] = None
    return out


def lock_name(store: Path) -> str:
    """The ingest lock file beside a store: the persistent target of ``flock``; it may outlive a run."""
    return f".{store.name}.lock"
