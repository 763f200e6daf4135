"""One canonical spelling of every stored allele, applied to each split ALT allele as ingest reads it.

* CHROM becomes its canonical name (``genogate.genome.canonical_contig`` on the store's build; once per
  distinct name); a RefSeq accession of another build is refused.
* REF and ALT are upper-cased and trimmed to their minimal form (``genogate.genome.minimal``: POS moves
  right by the dropped prefix). With a reference FASTA (``ingest --reference``) REF is checked against it
  and indels are left-aligned as ``bcftools norm -m- -f`` does.
* ``<NON_REF>`` and ``<*>`` (a gVCF's "any other allele", not a variant) and breakend ALTs (``G]2:321681]``,
  ``.A``) are dropped and counted; other symbolic alleles (``<DEL>``, ``<CN0>``, ``<INS:ME:ALU>``) are real
  structural variants, kept as written. Records on a contig no query can name (GRCh38's
  ``HLA-A*01:01:01:01``) are dropped and counted too.
* Any other allele with a character outside A, C, G, T, N (either case), and an ALT equal to its REF, is
  refused with the record's file and line.

Two records that become the same variant are refused by ingest's duplicate check, naming both lines.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from genogate.errors import IngestError
from genogate.genome import BuildError, canonical_contig, minimal
from node.records import SiteCalls

SKIP_NON_REF = "symbolic <NON_REF> or <*> ALT (a gVCF's 'any other allele', not a variant)"
SKIP_BREAKEND = "breakend ALT (a structural rearrangement's adjacency; not served)"
SKIP_CONTIG = "contig name that no query can spell (only letters, digits, '_' and '.', at most 64)"
_BASES = "ACGTNacgtn"
_SYMBOLIC_RE = re.compile(r"^<[A-Za-z0-9_:.]+>$")


def show(value: str, limit: int = 20) -> str:
    """An allele for a message: short ones as they are, long ones cut (never echo a whole long value)."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


class Reference:
    """A reference FASTA read through ``pyfaidx`` (indexed: it writes a ``.fai`` beside the file if absent).

    A compressed FASTA is refused with a clear message: pyfaidx reads bgzip only through Biopython (not a
    genogate dependency), and plain gzip cannot be read at random; decompress it (``bgzip -d``). Contig names
    are matched canonically (``chr1`` in the FASTA answers for ``1``).
    """

    def __init__(self, path: Path, build: str):
        import pyfaidx  # type: ignore[import-untyped]

        self.path = Path(path)
        if not self.path.is_file():
            raise IngestError(str(self.path), "no such file")
        with open(self.path, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                raise IngestError(
                    str(self.path),
                    "the reference FASTA is compressed: decompress it (bgzip -d) and give the plain file",
                )
        try:
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True)
        except Exception as exc:  # noqa: BLE001 - pyfaidx raises many kinds (index, gzip, format)
            raise IngestError(str(self.path), f"cannot read the reference FASTA ({_first_line(exc)})") from None
        self._names: dict[str, str] = {}
        for name in self._fasta.keys():
            try:
                self._names.setdefault(canonical_contig(name, build), name)
            except BuildError as exc:
                raise IngestError(str(self.path), f"reference contig {exc}") from None

    def close(self) -> None:
        self._fasta.close()

    def fetch(self, chrom: str, start: int, end: int, where: str) -> str:
        """Bases ``start``..``end`` (1-based, inclusive) of a canonical contig, upper-cased."""
        name = self._names.get(chrom)
        if name is None:
            raise IngestError(where, f"contig {chrom} is not in the reference {self.path.name}")
        record = self._fasta[name]
        if end > len(record):
            raise IngestError(
                where, f"{chrom}:{end} is past the end of {chrom} in {self.path.name} ({len(record):,} bp)"
            )
        return str(record[start - 1 : end])

    def check_ref(self, chrom: str, pos: int, ref: str, where: str) -> None:
        seq = self.fetch(chrom, pos, pos + len(ref) - 1, where)
        if seq != ref.upper():
            raise IngestError(
                where, f"REF {show(ref)} does not match the reference {self.path.name} at {chrom}:{pos} ({show(seq)})"
            )

    def left_align(self, chrom: str, pos: int, ref: str, alt: str, where: str) -> tuple[int, str, str]:
        """Shift a (minimal) indel left through a repeat, as ``bcftools norm -f`` and vt normalize do:
        while both alleles end in the same base, drop it, extending both by the reference base to the left
        when one runs out; then drop the common leading bases while both keep one."""
        if len(ref) == len(alt):
            return pos, ref, alt  # minimal SNVs and MNPs end in different bases: nothing to shift
        while ref[-1] == alt[-1]:
            if (len(ref) == 1 or len(alt) == 1) and pos == 1:
                break  # nothing to the left to anchor on
            ref, alt = ref[:-1], alt[:-1]
            if not ref or not alt:
                pos -= 1
                base = self.fetch(chrom, pos, pos, where)
                ref, alt = base + ref, base + alt
        k = 0
        while k < min(len(ref), len(alt)) - 1 and ref[k] == alt[k]:
            k += 1
        return pos + k, ref[k:], alt[k:]


class Normaliser:
    """Turns each ``SiteCalls`` a source yields into its canonical form (or None: dropped and counted)."""

    def __init__(self, build: str, reference: Reference | None = None):
        self.build = build
        self.reference = reference
        self.skipped: Counter[str] = Counter()
        self.changed = 0  # alleles whose POS, REF or ALT changed (trimmed, left-aligned or upper-cased)
        self._contigs: dict[str, str] = {}
        self._checked = ""  # origin of the last record whose REF was checked against the reference

    def contig(self, name: str, where: str) -> str:
        """The canonical name ("" for a name no query can spell, such as GRCh38's ``HLA-A*01:01:01:01``)."""
        canon = self._contigs.get(name)
        if canon is None:
            try:
                canon = canonical_contig(name, self.build)
            except BuildError as exc:
                raise IngestError(where, f"CHROM {exc}") from None
            if not canon or len(canon) > 64 or not all(c.isalnum() or c in "_." for c in canon):
                canon = ""
            self._contigs[name] = canon
        return canon

    def __call__(self, calls: SiteCalls) -> SiteCalls | None:
        where = calls.origin
        chrom = self.contig(calls.chrom, where)
        if not chrom:
            self.skipped[SKIP_CONTIG] += 1
            return None
        pos, ref, alt = calls.pos, calls.ref, calls.alt
        if len(ref) == 1 and len(alt) == 1:  # SNVs: most records, no trimming possible
            ref, alt = ref.upper(), alt.upper()
            if ref not in "ACGTN":
                raise IngestError(where, f"REF {show(calls.ref)} is not a base (A, C, G, T or N)")
            if alt not in "ACGTN":
                raise IngestError(where, f"ALT {show(calls.alt)} is not a base (A, C, G, T or N)")
        else:
            if not ref or ref.strip(_BASES):
                raise IngestError(where, f"REF {show(ref)} has a character outside A, C, G, T, N")
            ref = ref.upper()
            if alt.startswith("<") and alt.endswith(">"):
                if alt in ("<NON_REF>", "<*>"):
                    self.skipped[SKIP_NON_REF] += 1
                    return None
                if not _SYMBOLIC_RE.match(alt):
                    raise IngestError(
                        where, f"symbolic ALT {show(alt)} must be <ID> with letters, digits, '_', ':' or '.'"
                    )
            elif "[" in alt or "]" in alt or (len(alt) > 1 and (alt[0] == "." or alt[-1] == ".")):
                self.skipped[SKIP_BREAKEND] += 1
                return None
            elif not alt or alt.strip(_BASES):
                raise IngestError(where, f"ALT {show(alt)} has a character outside A, C, G, T, N")
            else:
                pos, ref, alt = minimal(pos, ref, alt)
        if alt == ref:
            raise IngestError(where, f"ALT {show(calls.alt)} is the same allele as REF {show(calls.ref)}")
        if self.reference is not None:
            if where != self._checked:  # once per record, not per ALT allele
                self.reference.check_ref(chrom, calls.pos, calls.ref, where)
                self._checked = where
            if not alt.startswith("<"):
                pos, ref, alt = self.reference.left_align(chrom, pos, ref, alt, where)
        if pos == calls.pos and ref == calls.ref and alt == calls.alt:
            if chrom == calls.chrom:
                return calls
        else:
            self.changed += 1
        return SiteCalls(chrom, pos, ref, alt, calls.sids, calls.cls, calls.origin)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
