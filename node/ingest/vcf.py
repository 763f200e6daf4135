"""VCF/BCF genotype source (cyvcf2 over htslib): plain, gzip or BGZF; one ``SiteCalls`` per ALT allele.

Multi-allelic records are split (other ALT alleles count as reference, as ``bcftools norm -m-`` does);
haploid calls and half-calls (``0/.``) become HEMI_REF / HEMI_ALT; missing calls NO_CALL. Records with no
ALT allele, no GT field, or a ``*`` (spanning-deletion) allele are skipped and counted by reason.
When htslib cannot parse a record, the failing line is re-read here to say what is wrong with it.
A BGZF file without its end-of-file marker is refused: htslib only warns and reads a file cut at a block
boundary as if it were complete.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cyvcf2
import numpy as np
import numpy.typing as npt

from genogate.errors import IngestError
from genogate.genome import BuildError, infer_build
from genogate.query import MAX_POS
from node.ingest.vcftext import GtTextReader, first_format, is_bgzf, open_binary, stream_damaged
from node.records import HEMI_REF, NO_CALL, SiteCalls

_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_CONTIG_RE = re.compile(r"^##contig=<ID=([^,>]+)", re.MULTILINE)
_CONTIG_LINE_RE = re.compile(r"^##contig=<(.*)>[ \t\r]*$", re.MULTILINE)
_BUILD_LINE_RE = re.compile(r"^##(?:reference|assembly)=(.*)$", re.MULTILINE)
_FIELD_RE = re.compile(r'(\w+)=("[^"]*"|[^,]*)')
_GT_RE = re.compile(rb"^[/|]?(?:\.|\d+)(?:[/|](?:\.|\d+))*$")
_SKIP_NO_ALT = "no ALT allele (reference-only site)"
_SKIP_NO_GT = "no GT field"
_SKIP_STAR = "spanning-deletion '*' allele"


class VcfSource:
    """One VCF or BCF file. Opening validates the header; ``records()`` streams the calls."""

    def __init__(self, path: Path, *, fast_text: bool = True):
        self.path = Path(path)
        self.name = str(self.path)
        self._text: BinaryIO | None = None
        self._text_line = 0
        if not self.path.is_file():
            raise IngestError(self.name, "no such file")
        self.size = self.path.stat().st_size
        if self.size == 0:
            raise IngestError(self.name, "the file is empty")
        if is_bgzf(self.path) and not _has_bgzf_eof(self.path):
            raise IngestError(self.name, "the BGZF file has no end-of-file marker: it is truncated")
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self._vcf = cyvcf2.VCF(self._fd, gts012=False, lazy=True)
        except (OSError, Exception) as exc:  # cyvcf2 raises bare Exception for some header errors
            os.close(self._fd)
            raise IngestError(self.name, _header_problem(self.path, exc)) from None
        try:
            self.samples: list[str] = list(self._vcf.samples)
        except UnicodeDecodeError:
            self.close()
            raise IngestError(self.name, "the sample names in the #CHROM line are not UTF-8 text") from None
        if not self.samples:
            self.close()
            raise IngestError(self.name, "the file has no sample columns (genotypes are needed)")
        dupes = (
            sorted({s for s in self.samples if self.samples.count(s) > 1})
            if len(set(self.samples)) != len(self.samples)
            else []
        )
        if dupes:
            self.close()
            raise IngestError(self.name, f"sample id(s) appear twice in the header: {', '.join(dupes[:5])}")
        raw_header = self._vcf.raw_header
        # htslib's header text is not the file's (it adds a FILTER=PASS line): count the file's own lines.
        self._header_lines = _count_header_lines(self.path) or len(raw_header.rstrip("\n").split("\n"))
        self._declared = set(_CONTIG_RE.findall(raw_header))
        try:
            self.header_build = header_build(raw_header)
        except IngestError as exc:
            self.close()
            raise IngestError(self.name, exc.why) from None
        self.is_bcf = _is_bcf(self.path)
        self.records_read = 0
        self.skipped: Counter[str] = Counter()
        # GT-only text files take the numpy parser (node.ingest.vcftext); BCF and richer FORMATs take htslib's.
        self._reader: GtTextReader | None = None
        if fast_text and not self.is_bcf and first_format(self.path) == b"GT":
            self._reader = GtTextReader(self.path, len(self.samples), self.name)

    def close(self) -> None:
        if getattr(self, "_reader", None) is not None:
            self._reader.close()  # type: ignore[union-attr]
            self._reader = None
        if self._text is not None:
            self._text.close()
            self._text = None
        with contextlib.suppress(Exception):  # closing twice or after a failed open is harmless
            self._vcf.close()
        try:
            os.close(self._fd)
        except OSError:
            pass

    def position(self) -> int:
        """Bytes of the file consumed so far (for progress)."""
        if self._reader is not None:
            return self._reader.position()
        try:
            return os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError:
            return self.size

    def where(self, record_no: int) -> str:
        if self.is_bcf:
            return f"{self.name}: record {record_no}"
        return f"{self.name}:{self._header_lines + record_no}"

    def records(self) -> Iterator[SiteCalls]:
        if self._reader is not None:
            yield from self._text_records(self._reader)
            return
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
            try:
                chrom = rec.CHROM
                if chrom not in self._declared:  # checked before any other field is read: see _check_line
                    self._check_line(self.records_read)
                    self._declared.add(chrom)
                pos, ref, alts = int(rec.POS), rec.REF, rec.ALT
            except UnicodeDecodeError:
                raise IngestError(self.where(self.records_read), "CHROM, REF or ALT is not UTF-8 text") from None
            if not 1 <= pos <= MAX_POS:
                raise IngestError(self.where(self.records_read), f"POS must be between 1 and {MAX_POS:,}")
            if not alts:
                self.skipped[_SKIP_NO_ALT] += 1
                continue
            try:
                gt = rec.genotype
            except Exception:  # noqa: BLE001 - cyvcf2 raises a bare Exception for a record without GT
                gt = None
            if gt is None:
                self.skipped[_SKIP_NO_GT] += 1
                continue
            g = gt.array()
            where = self.where(self.records_read)
            ploidy = g.shape[1] - 1
            if ploidy > 2:
                raise IngestError(where, f"ploidy {ploidy} is not supported (haploid and diploid calls only)")
            a1 = g[:, 1] if ploidy == 2 else np.full(n_samples, -2, dtype=g.dtype)
            yield from self._split(chrom, pos, ref, alts, g[:, 0], a1, where)

    def _text_records(self, reader: GtTextReader) -> Iterator[SiteCalls]:
        for rec in reader:
            self.records_read += 1
            if not rec.alts:
                self.skipped[_SKIP_NO_ALT] += 1
                continue
            if rec.a0 is None or rec.a1 is None:
                self.skipped[_SKIP_NO_GT] += 1
                continue
            yield from self._split(rec.chrom, rec.pos, rec.ref, rec.alts, rec.a0, rec.a1, f"{self.name}:{rec.line}")

    def _split(
        self,
        chrom: str,
        pos: int,
        ref: str,
        alts: list[str],
        a0: npt.NDArray[np.int16],
        a1: npt.NDArray[np.int16],
        where: str,
    ) -> Iterator[SiteCalls]:
        """One SiteCalls per ALT allele from the two allele slots (-1 missing, -2 haploid's unused slot)."""
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
            yield SiteCalls(chrom, pos, ref, alt, idx[keep], cls[keep], where)

    def _check_line(self, record_no: int) -> None:
        """Check the text of the first record on a contig the header does not declare.

        htslib masks a GT it cannot parse in such a record behind the undefined-contig warning, cyvcf2 hands
        the half-parsed record over, and reading its genotypes crashes the process; so does reading REF or
        ALT of one whose POS did not parse or whose columns do not match the samples (found by fuzzing). These
        records (one per undeclared contig) are read again here, before any field but CHROM is touched,
        advancing one reader through the file.
        """
        if self.is_bcf:
            return
        target = self._header_lines + record_no
        line = b""
        try:
            if self._text is None:
                self._text = open_binary(self.path)
            text = self._text
            while self._text_line < target:
                line = text.readline()
                if not line:
                    return
                self._text_line += 1
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile):
            return  # htslib reports the damage itself when it gets there
        fields = line.rstrip(b"\r\n").split(b"\t")
        problem = _shape_problem(fields, len(self.samples), sites_only=True) or _gt_problem(fields)
        if problem:
            raise IngestError(self.where(record_no), problem)

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
            with open_binary(self.path) as fh:
                for lineno, line in enumerate(fh, start=1):
                    if lineno == target:
                        if stream_damaged(fh, self.path):
                            return "the compressed file is truncated or corrupt"
                        problem = _line_problem(line.rstrip(b"\r\n"), len(self.samples))
                        return problem or "htslib could not parse this record"
        except (EOFError, OSError, zlib.error, gzip.BadGzipFile):
            return "the compressed file is truncated or corrupt"
        return "the file ends in the middle of a record (truncated)"


def header_build(raw_header: str) -> str | None:
    """The genome build a VCF header states (``##reference``, ``##assembly``, ``##contig`` lengths and
    ``assembly=``), or None when it states none. A header that contradicts itself, or names NCBI36, is an
    ``IngestError`` (its ``where`` is left for the caller to fill in)."""
    contigs: dict[str, int | None] = {}
    assemblies: set[str] = set()
    for m in _CONTIG_LINE_RE.finditer(raw_header):
        fields = {k: v.strip('"') for k, v in _FIELD_RE.findall(m.group(1))}
        length = fields.get("length", "")
        contigs[fields.get("ID", "")] = int(length) if length.isdigit() else None
        if fields.get("assembly"):
            assemblies.add(fields["assembly"])
    reference = " ".join(_BUILD_LINE_RE.findall(raw_header)).strip() or None
    try:
        found = {infer_build(contigs, reference)} | {infer_build({}, a) for a in sorted(assemblies)}
    except BuildError as exc:
        raise IngestError("", f"the header's genome build is unclear: {exc}") from None
    found.discard(None)
    if len(found) > 1:
        raise IngestError(
            "", f"the header names more than one genome build ({', '.join(sorted(b for b in found if b))})"
        )
    build = found.pop() if found else None
    if build == "NCBI36":
        raise IngestError(
            "",
            "the header says the positions are on NCBI36 (hg18); genogate serves GRCh37 and GRCh38 only: "
            "lift the file over to one of them first (liftover is not part of ingest)",
        )
    return build


def _is_bcf(path: Path) -> bool:
    try:
        with open_binary(path) as fh:
            return fh.read(3) == b"BCF"
    except (OSError, EOFError, zlib.error):
        return False


def _has_bgzf_eof(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - len(_BGZF_EOF)))
        return fh.read() == _BGZF_EOF


def _count_header_lines(path: Path) -> int:
    """Lines before the first record (0 if the file cannot be read as text)."""
    n = 0
    try:
        with open_binary(path) as fh:
            for line in fh:
                if not line.startswith(b"#"):
                    break
                n += 1
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return 0
    return n


def _header_problem(path: Path, exc: BaseException) -> str:
    try:
        with open_binary(path) as fh:
            line = fh.readline()
            if not line:
                return "the file is empty"
            if line.startswith(b"BCF"):
                return f"htslib could not read the header ({str(exc).strip() or type(exc).__name__})"
            if not line.startswith(b"##fileformat=VCF"):
                return "not a VCF or BCF file: the first line must be '##fileformat=VCFv4.x'"
            while line.startswith(b"##"):
                line = fh.readline()
            fh.read(1 << 20)  # htslib reads ahead: damage just past the header fails the header too
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return "the compressed file is truncated or corrupt"
    if not line.startswith(b"#CHROM"):
        return "the header has no #CHROM line (the last header line, naming the columns and samples)"
    names = Counter(line.rstrip(b"\r\n").split(b"\t")[9:])
    dupes = sorted(n.decode(errors="replace") for n, k in names.items() if k > 1)
    if dupes:
        return f"sample id(s) appear twice in the header: {', '.join(dupes[:5])}"
    return f"htslib could not read the header ({str(exc).strip() or type(exc).__name__})"


def _shape_problem(fields: list[bytes], n_samples: int, *, sites_only: bool = False) -> str | None:
    """Too few columns, a POS that is not a number, or columns that do not match the samples (8 columns, no
    FORMAT, pass when ``sites_only``)."""
    if len(fields) < 8:
        return f"a data line needs at least 8 tab-separated columns, found {len(fields)}"
    if not fields[1].isdigit():
        return f"POS {fields[1][:20].decode(errors='replace')!r} is not a whole number"
    if len(fields) != 9 + n_samples and not (sites_only and len(fields) == 8):
        return f"expected {9 + n_samples} columns (9 + {n_samples} samples), found {len(fields)}"
    return None


def _line_problem(line: bytes, n_samples: int) -> str | None:
    """What is wrong with a data line, or None if nothing is found."""
    fields = line.split(b"\t")
    shape = _shape_problem(fields, n_samples)
    if shape:
        return shape
    if b"GT" not in fields[8].split(b":"):
        return "FORMAT has no GT field"
    return _gt_problem(fields)


def _gt_problem(fields: list[bytes]) -> str | None:
    """The first GT value of a split data line that is not a genotype, or None."""
    fmt = fields[8].split(b":") if len(fields) > 9 else []
    if b"GT" not in fmt:
        return None
    gi = fmt.index(b"GT")
    for col, value in enumerate(fields[9:]):
        parts = value.split(b":")
        if gi < len(parts) and not _GT_RE.match(parts[gi]):
            return f"GT of sample column {col + 1} is not a genotype (expected e.g. 0/1, 1|0, 1 or ./.)"
    return None
