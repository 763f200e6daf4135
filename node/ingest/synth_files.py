"""Synthetic cohorts as files: the sample sheet (``samples.tsv``), what the demo should find (``truth.json``) and
the BGZF-compressed VCF (``cohort.vcf.gz``), all from the records ``node.ingest.synth_sample`` draws from one
``SynthSpec``. Nothing here draws: the same spec writes the same files.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from genogate.genome import LENGTHS, canonical_contig
from genogate.progress import Progress
from node.ingest.synth_sample import GT_CODES, SiteRecord, site_records
from node.ingest.synth_sites import planted
from node.ingest.synth_spec import (
    BUILD,
    SEX_LABELS,
    SHEET_HEADER,
    U8,
    WHOLE,
    WITHDRAWN,
    Part,
    SynthSpec,
    check_part,
    cohort,
)

_BGZF_BLOCK = 0xFF00  # uncompressed bytes per BGZF block, as htslib (leaves room for incompressible data)
_BGZF_CHUNK = 64 * _BGZF_BLOCK  # bytes handed to one compression job
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def _gt_text() -> tuple[npt.NDArray[np.uint32], U8, U8]:
    """Text of each GT code: diploid ones as one 4-byte word with the tab (fields of an all-diploid record
    sit on 4-byte boundaries) and as 3 bytes, haploid ones as 1 byte (unused slots hold ``?``)."""
    four = np.frombuffer("".join(g + "\t" if len(g) == 3 else "????" for g in GT_CODES).encode(), np.uint32)
    three = np.frombuffer("".join(g if len(g) == 3 else "???" for g in GT_CODES).encode(), np.uint8)
    one = np.frombuffer("".join(g if len(g) == 1 else "?" for g in GT_CODES).encode(), np.uint8)
    return four, three.reshape(len(GT_CODES), 3), one


def write_sheet(spec: SynthSpec, path: Path, part: Part = WHOLE) -> Path:
    """The sample sheet as TSV (``SHEET_HEADER``; sex M/F/unknown; empty phenotypes are an empty field), of
    the participants of ``part``."""
    co = cohort(spec)
    names = [a for a, _ in spec.ancestries]
    lines = ["\t".join(SHEET_HEADER)]
    first, step = check_part(part)
    for i in range(first, len(co.ids), step):
        sid = co.ids[i]
        row = (
            sid,
            SEX_LABELS[co.sex[i]],
            str(co.birth_year[i]),
            names[co.ancestry[i]],
            co.phenotypes[i],
            co.consent[i],
        )
        lines.append("\t".join(row))
    _write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def write_truth(spec: SynthSpec, path: Path) -> Path:
    """What the demo should find: the planted variants, the case phenotype, and the spec that made them."""
    truth = {
        "generator": "genogate-synth",
        "case_phenotype": spec.case_phenotype,
        "planted_variants": planted(spec),
        "planted_odds_ratio": spec.planted_odds_ratio,
        "withdrawn_consent": WITHDRAWN,
        "spec": asdict(spec),
    }
    _write_atomic(path, (json.dumps(truth, indent=2) + "\n").encode())
    return path


def write_vcf(
    spec: SynthSpec,
    path: Path,
    *,
    level: int = 2,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """The cohort as BGZF-compressed VCF 4.2 with GT only (unphased; haploid males on non-PAR chrX).

    Compression runs on ``threads`` worker threads (zlib releases the GIL) while this thread formats
    records; ``level`` 1-3 is ~3x faster than bgzip's default 6 for ~1.7x the size.
    """
    co = cohort(spec)
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as fh, _BgzfWriter(fh, level, threads or os.cpu_count() or 1) as out:
            out.write(_vcf_header(spec, co.ids))
            text = _gt_text()
            for n, rec in enumerate(site_records(spec, co), 1):
                if progress is not None and n % 256 == 0:
                    progress.update(n, path.name)
                alts = ",".join(rec.alts)
                out.write(f"{rec.chrom}\t{rec.pos}\t.\t{rec.ref}\t{alts}\t.\tPASS\t.\tGT\t".encode())
                out.write(_vcf_columns(rec, text).data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    if progress is not None:
        progress.done(spec.variants)
    return path


def _vcf_header(spec: SynthSpec, ids: Sequence[str]) -> bytes:
    lines = ["##fileformat=VCFv4.2", '##FILTER=<ID=PASS,Description="All filters passed">',
             "##source=genogate-synth", f"##reference={BUILD}"]  # fmt: skip
    for name, length in spec.chromosomes:  # a length only where it is the build's (a spec may shorten one)
        canon = canonical_contig(name)
        same = LENGTHS[BUILD].get(canon) == length
        lines.append(f"##contig=<ID={canon},length={length}>" if same else f"##contig=<ID={canon}>")
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *ids]))
    return ("\n".join(lines) + "\n").encode()


def _vcf_columns(rec: SiteRecord, text: tuple[npt.NDArray[np.uint32], U8, U8]) -> U8:
    """The record's sample columns: the layout's baseline text with the listed GTs written over it."""
    four, three, one = text
    lay = rec.layout
    buf = lay.text.copy()
    if not lay.haploid:  # every field is 4 bytes: one word per listed sample
        buf.view(np.uint32)[rec.cols] = four[rec.codes]
        buf[-1] = ord("\n")
        return buf
    hap = lay.hap[rec.cols]
    buf[lay.offset[rec.cols[~hap]][:, None] + np.arange(3)] = three[rec.codes[~hap]]
    buf[lay.offset[rec.cols[hap]]] = one[rec.codes[hap]]
    return buf


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _BgzfWriter:
    """Writes BGZF (gzip members of <= 64 KiB input, each with the ``BC`` extra field, then the EOF block)
    from one producer thread; whole chunks are compressed on a thread pool, written back in order."""

    def __init__(self, fh: BinaryIO, level: int, threads: int) -> None:
        self._fh, self._level, self._threads = fh, level, max(threads, 1)
        self._pool = ThreadPoolExecutor(max_workers=self._threads)
        self._pending: list[bytes | memoryview] = []
        self._size = 0
        self._jobs: deque[Future[bytes]] = deque()

    def __enter__(self) -> _BgzfWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self._submit(final=True)
            self._drain(0)
            self._fh.write(_BGZF_EOF)
        self._pool.shutdown(wait=True, cancel_futures=kind is not None)

    def write(self, data: bytes | memoryview) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _BGZF_CHUNK:
            self._submit(final=False)

    def _submit(self, *, final: bool) -> None:
        data = b"".join(self._pending)
        cut = len(data) if final else len(data) - len(data) % _BGZF_BLOCK
        self._pending = [data[cut:]] if cut < len(data) else []
        self._size = len(data) - cut
        if cut:
            self._jobs.append(self._pool.submit(_bgzf_blocks, memoryview(data)[:cut], self._level))
        self._drain(2 * self._threads)

    def _drain(self, keep: int) -> None:
        while len(self._jobs) > keep:
            self._fh.write(self._jobs.popleft().result())


def _bgzf_blocks(data: memoryview, level: int) -> bytes:
    """``data`` as consecutive BGZF blocks (raw deflate, CRC32 and size trailer, BSIZE in the header)."""
    out: list[bytes] = []
    for at in range(0, len(data), _BGZF_BLOCK):
        block = data[at : at + _BGZF_BLOCK]
        deflated = zlib.compress(block, level, wbits=-15)
        out.append(struct.pack("<4BI2BH2BHH", 31, 139, 8, 4, 0, 0, 255, 6, 66, 67, 2, len(deflated) + 25))
        out.append(deflated)
        out.append(struct.pack("<II", zlib.crc32(block), len(block)))
    return b"".join(out)


def run(
    out_dir: Path, spec: SynthSpec, *, vcf: bool = True, part: Part = WHOLE, progress: Progress | None = None
) -> dict[str, Path]:
    """Write ``samples.tsv``, ``truth.json`` and (if ``vcf``) ``cohort.vcf.gz`` into ``out_dir``. A ``part``
    other than the whole cohort writes only that institution's sheet (its genotypes go straight into a
    store through ``SynthSource(spec, part)``; the VCF is always the whole cohort's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "samples": write_sheet(spec, out_dir / "samples.tsv", part),
        "truth": write_truth(spec, out_dir / "truth.json"),
    }
    if vcf and part != WHOLE:
        raise ValueError("a part of a cohort is written into a store, not a VCF")
    if vcf:
        paths["vcf"] = write_vcf(spec, out_dir / "cohort.vcf.gz", progress=progress)
    return paths
