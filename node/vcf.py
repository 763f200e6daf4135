"""VCF/BCF genotype source (cyvcf2 over htslib): plain, gzip or BGZF; one ``SiteCalls`` per ALT allele.

Multi-allelic records are split (other ALT alleles count as reference, as ``bcftools norm -m-`` does);
haploid calls and half-calls (``0/.``) become HEMI_REF / HEMI_ALT; missing calls NO_CALL. Records with no
ALT allele, no GT field, or a ``*`` (spanning-deletion) allele are skipped and counted by reason.
When htslib cannot parse a record, the failing line is re-read here to say what is wrong with it.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cyvcf2
import numpy as np

from genogate.errors import IngestError
from node.records import HEMI_REF, NO_CALL, SiteCalls

_GT_RE = re.compile(rb"^(?:\.|\d+)(?:[/|](?:\.|\d+))*$")
_SKIP_NO_ALT = "no ALT allele (reference-only site)"
_SKIP_NO_GT = "no GT field"
_SKIP_STAR = "spanning-deletion '*' allele"


class VcfSource:
    """One VCF or BCF file. Opening validates the header; ``records()`` streams the calls."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise IngestError(self.name, "no such file")
        self.size = self.path.stat().st_size
        if self.size == 0:
            raise IngestError(self.name, "the file is empty")
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self._vcf = cyvcf2.VCF(self._fd, gts012=False, lazy=True)
        except (OSError, Exception) as exc:  # cyvcf2 raises bare Exception for some header errors
            os.close(self._fd)
            raise IngestError(self.name, _header_problem(self.path, exc)) from None
        self.samples: list[str] = list(self._vcf.samples)
        if not self.samples:
            self.close()
            raise IngestError(self.name, "the file has no sample columns (genotypes are needed)")
        dupes = sorted({s for s in self.samples if self.samples.count(s) > 1}) if len(set(self.samples)) != len(self.samples) else []
        if dupes:
            self.close()
            raise IngestError(self.name, f"sample id(s) appear twice in the header: {', '.join(dupes[:5])}")
        self._header_lines = len(self._vcf.raw_header.rstrip("\n").split("\n"))
        self.is_bcf = _is_bcf(self.path)
        self.records_read = 0
        self.skipped: Counter[str] = Counter()

    def close(self) -> None:
        try:
            self._vcf.close()
        except Exception:  # noqa: BLE001 - closing twice or after a failed open is harmless
            pass
        try:
            os.close(self._fd)
        except OSError:
            pass

    def position(self) -> int:
        """Bytes of the file consumed so far (for progress)."""
        try:
            return os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError:
            return self.size

    def where(self, record_no: int) -> str:
        if self.is_bcf:
            return f"{self.name}: record {record_no}"
        return f"{self.name}:{self._header_lines + record_no}"

    def records(self) -> Iterator[SiteCalls]:
        it = iter(self._vcf)
        n_samples = len(self.samples)
        while True:
            try:
                rec = next(it)
            except StopIteration:
                return
            except Exception:  # noqa: BLE001 - htslib failures surface as bare Exception
                raise IngestError(self.where(self.records_read + 1), self._diagnose(self.records_read + 1)) from None
            self.records_read += 1
            yield from self._split(rec, n_samples)

    def _split(self, rec: cyvcf2.Variant, n_samples: int) -> Iterator[SiteCalls]:
        alts = rec.ALT
        if not alts:
            self.skipped[_SKIP_NO_ALT] += 1
            return
        gt = rec.genotype
        if gt is None:
            self.skipped[_SKIP_NO_GT] += 1
            return
        g = gt.array()
        where = self.where(self.records_read)
        ploidy = g.shape[1] - 1
        if ploidy > 2:
            raise IngestError(where, f"ploidy {ploidy} is not supported (haploid and diploid calls only)")
        a0 = g[:, 0]
        a1 = g[:, 1] if ploidy == 2 else np.full(n_samples, -2, dtype=g.dtype)
        top = int(max(a0.max(), a1.max()))
        if top > len(alts):
            col = int(np.flatnonzero((a0 > len(alts)) | (a1 > len(alts)))[0])
            raise IngestError(
                where,
                f"allele index {top} in sample {self.samples[col]!r} is past the {len(alts)} ALT allele(s)",
            )
        # Only samples that are not diploid 0/0 can be anything but HOM_REF.
        idx = np.flatnonzero((a0 != 0) | (a1 != 0)).astype(np.int32)
        b0, b1 = a0[idx], a1[idx]
        haploid = b1 == -2
        miss0, miss1 = b0 == -1, b1 == -1
        no_call = miss0 & (miss1 | haploid)
        one_allele = ~no_call & (haploid | miss0 | miss1)  # haploid call or half-call
        for k, alt in enumerate(alts, start=1):
            if alt == "*":
                self.skipped[_SKIP_STAR] += 1
                continue
            copies = (b0 == k).astype(np.uint8) + (b1 == k).astype(np.uint8)
            cls = np.where(no_call, NO_CALL, np.where(one_allele, HEMI_REF + (copies > 0), copies)).astype(np.uint8)
            keep = cls != 0
            yield SiteCalls(rec.CHROM, int(rec.POS), rec.REF, alt, idx[keep], cls[keep], where)

    def first_key(self) -> tuple[str, int] | None:
        """(chrom, pos) of the first record, read through a second handle; None for a file with none."""
        try:
            for rec in cyvcf2.VCF(str(self.path), lazy=True):
                return (rec.CHROM, int(rec.POS))
        except Exception:  # noqa: BLE001 - the real pass reports the problem with its line
            return None
        return None

    def _diagnose(self, record_no: int) -> str:
        """Say why htslib refused record ``record_no`` by reading that line again."""
        if self.is_bcf:
            return "htslib could not decode this BCF record (corrupt or truncated file)"
        target = self._header_lines + record_no
        try:
            with _open_text(self.path) as fh:
                for lineno, line in enumerate(fh, start=1):
                    if lineno == target:
                        return _line_problem(line.rstrip(b"\r\n"), len(self.samples))
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile):
            return "the compressed file is truncated or corrupt"
        return "the file ends in the middle of a record (truncated)"


def _open_text(path: Path) -> gzip.GzipFile:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")  # type: ignore[return-value]


def _is_bcf(path: Path) -> bool:
    try:
        with _open_text(path) as fh:
            return fh.read(3) == b"BCF"
    except (OSError, EOFError, zlib.error):
        return False


def _header_problem(path: Path, exc: BaseException) -> str:
    try:
        with _open_text(path) as fh:
            head = fh.read(64)
    except (OSError, EOFError, zlib.error):
        return "the compressed file is truncated or corrupt"
    if not head:
        return "the file is empty"
    if not head.startswith(b"##fileformat=VCF") and not head.startswith(b"BCF"):
        return "not a VCF or BCF file: the first line must be '##fileformat=VCFv4.x'"
    return f"htslib could not read the header ({str(exc).strip() or type(exc).__name__})"


def _line_problem(line: bytes, n_samples: int) -> str:
    fields = line.split(b"\t")
    if len(fields) < 8:
        return f"a data line needs at least 8 tab-separated columns, found {len(fields)}"
    if not fields[1].isdigit():
        return f"POS {fields[1][:20].decode(errors='replace')!r} is not a whole number"
    if len(fields) != 9 + n_samples:
        return f"expected {9 + n_samples} columns (9 + {n_samples} samples), found {len(fields)}"
    fmt = fields[8].split(b":")
    if b"GT" not in fmt:
        return "FORMAT has no GT field"
    gi = fmt.index(b"GT")
    for col, value in enumerate(fields[9:]):
        parts = value.split(b":")
        if gi < len(parts) and not _GT_RE.match(parts[gi]):
            return f"GT of sample column {col + 1} is not a genotype (expected e.g. 0/1, 1|0, 1 or ./.)"
    return "htslib could not parse this record"
