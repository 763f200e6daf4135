"""The query model both sides share: variants, regions, cohort filters, the ``Kind`` of a query and ``Query``,
the base of every kind's query, all frozen, self-validating values. Each kind's query dataclass lives in its
kind's module (``genogate.kinds``), with everything else that differs between kinds (wire form, canonical
form, sensitivity, computation, combination); ``genogate.convert`` maps variants, regions and filters to and
from wire messages. The planner, DP and ledger code see these types only.

The cohort filter types are ``genogate.filter``'s (re-exported here, as part of the query model); their
canonical form is ``genogate.normalform``'s. Filters are structured values, never SQL text: they compile to
parameterised SQL at the node.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar

from genogate.errors import FailedPrecondition, InvalidArgument, Reason
from genogate.filter import MAX_FILTER_DEPTH as MAX_FILTER_DEPTH
from genogate.filter import MAX_FILTER_NODES as MAX_FILTER_NODES
from genogate.filter import AgeRange as AgeRange
from genogate.filter import AncestryIn as AncestryIn
from genogate.filter import And as And
from genogate.filter import Everyone as Everyone
from genogate.filter import Filter as Filter
from genogate.filter import Not as Not
from genogate.filter import Or as Or
from genogate.filter import PhenotypeHas as PhenotypeHas
from genogate.filter import Sex as Sex
from genogate.filter import SexIs as SexIs
from genogate.filter import check_filter_size as check_filter_size
from genogate.genome import BuildError, canonical_contig, minimal

MAX_POS = 2**31 - 1
_CHROM_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_ALLELE_RE = re.compile(r"^(?:[ACGTNacgtn]+|\*|<[A-Za-z0-9_:.]+>)$")


def _bad_variant(detail: str) -> InvalidArgument:
    return InvalidArgument(detail, reason=Reason.INVALID_VARIANT, message=f"a variant is malformed: {detail[:200]}")


@dataclass(frozen=True, slots=True, order=True)
class Variant:
    """One ALT allele at one site, ``chrom-pos-ref-alt`` (1-based POS as in VCF)."""

    chrom: str
    pos: int
    ref: str
    alt: str

    def __post_init__(self) -> None:
        if not _CHROM_RE.match(self.chrom):
            raise _bad_variant("chromosome name must be 1-64 letters, digits, '_' or '.'")
        if not 1 <= self.pos <= MAX_POS:
            raise _bad_variant(f"position must be between 1 and {MAX_POS}")
        if not _ALLELE_RE.match(self.ref) or self.ref in ("*",) or self.ref.startswith("<"):
            raise _bad_variant("REF must be a non-empty run of A, C, G, T, N")
        if not _ALLELE_RE.match(self.alt):
            raise _bad_variant("ALT must be bases, '*' or a symbolic allele like <DEL>")
        if self.alt.upper() == self.ref.upper():
            raise _bad_variant("ALT must differ from REF")

    @classmethod
    def parse(cls, text: str) -> Variant:
        """Parse ``CHROM-POS-REF-ALT`` (also accepts ``:`` as separator)."""
        parts = re.split(r"[-:]", text.strip())
        if len(parts) != 4:
            raise _bad_variant(f"{text!r} is not CHROM-POS-REF-ALT")
        chrom, pos, ref, alt = parts
        if not (pos.isascii() and pos.isdigit()):
            raise _bad_variant(f"{text!r}: position is not a whole number")
        if len(pos.lstrip("0")) > len(str(MAX_POS)):  # int() of thousands of digits is refused, or slow
            raise _bad_variant(f"position must be between 1 and {MAX_POS}")
        return cls(chrom, int(pos), ref.upper(), alt if alt.startswith("<") else alt.upper())

    def __str__(self) -> str:
        return f"{self.chrom}-{self.pos}-{self.ref}-{self.alt}"


@dataclass(frozen=True, slots=True)
class Region:
    """``chrom:start-end``, 1-based and inclusive."""

    chrom: str
    start: int
    end: int

    def __post_init__(self) -> None:
        bad = None
        if not _CHROM_RE.match(self.chrom):
            bad = "chromosome name must be 1-64 letters, digits, '_' or '.'"
        elif not 1 <= self.start <= self.end <= MAX_POS:
            bad = "region must satisfy 1 <= start <= end"
        if bad:
            raise InvalidArgument(bad, reason=Reason.INVALID_REGION, message=f"the region is malformed: {bad}")

    @classmethod
    def parse(cls, text: str) -> Region:
        """Parse ``CHROM:START-END`` (or ``CHROM`` alone for the whole chromosome)."""
        m = re.fullmatch(r"([^:\s]+)(?::([\d,]+)-([\d,]+))?", text.strip())
        if not m:
            raise InvalidArgument(
                f"{text!r} is not CHROM:START-END",
                reason=Reason.INVALID_REGION,
                message=f"the region is malformed: {text[:100]!r} is not CHROM:START-END",
            )
        chrom, start, end = m.groups()
        if start is None:
            return cls(chrom, 1, MAX_POS)
        start, end = start.replace(",", "").lstrip("0") or "0", end.replace(",", "").lstrip("0") or "0"
        if max(len(start), len(end)) > len(str(MAX_POS)):  # int() of thousands of digits is refused, or slow
            raise InvalidArgument(
                f"region bound past {MAX_POS}",
                reason=Reason.INVALID_REGION,
                message=f"the region is malformed: positions go up to {MAX_POS}",
            )
        return cls(chrom, int(start), int(end))

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start}-{self.end}"


def normalise_filter(f: Filter, this_year: int | None = None) -> Filter:
    """The canonical form of a filter (``genogate.normalform``): equivalent phrasings for every possible
    participant row (never for the rows a store happens to hold) become one filter. ``Everyone`` for a filter
    true of every row; INVALID_FILTER for one true of none. ``this_year`` (the node's) folds age bounds past
    any age a stored birth year can reach."""
    from genogate.normalform import normal_form  # the nodes' canonical form; a client never needs it

    return normal_form(f, this_year)


class Kind(enum.Enum):
    """Query kinds; values are the ``genogate.v1.QueryKind`` numbers, member for member (``QUERY_KIND_<NAME>``;
    tests/unit/test_kinds.py). Written out rather than derived from the wire enum so that type checkers see
    the members: a new kind adds its member here beside its proto messages."""

    COHORT_COUNT = 1
    ALLELE_FREQUENCY = 2
    GENOTYPE_COUNTS = 3
    CASE_CONTROL = 4
    CARRIER_COUNT = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Kind:
        try:
            return cls[text.strip().upper().replace("-", "_")]
        except KeyError:
            allowed = ", ".join(k.label for k in cls)
            raise InvalidArgument(f"unknown query kind {text!r}; kinds are {allowed}") from None


EVERYONE = Everyone()


class Query:
    """The query of one kind: a frozen, self-validating dataclass defined in its kind's module
    (``genogate.kinds.<kind label>``, e.g. ``genogate.kinds.cohort_count.CohortCount``), naming its ``Kind``.
    Code outside ``genogate.kinds`` handles queries through this type and the kinds registry only."""

    __slots__ = ()
    kind: ClassVar[Kind]


def _build_error(exc: BuildError) -> FailedPrecondition:
    return FailedPrecondition(str(exc), reason=Reason.WRONG_ASSEMBLY, message=f"wrong genome build: {exc}")


def canonical_variant(v: Variant, build: str | None = None) -> Variant:
    """The one spelling of ``v`` (``genogate.genome``): canonical contig name, upper-case minimal alleles.

    With ``build``, a RefSeq accession of another build is refused (``WRONG_ASSEMBLY``)."""
    try:
        chrom = canonical_contig(v.chrom, build)
    except BuildError as exc:
        raise _build_error(exc) from None
    pos, ref, alt = minimal(v.pos, v.ref, v.alt)
    if chrom == v.chrom and (pos, ref, alt) == (v.pos, v.ref, v.alt):
        return v
    return Variant(chrom, pos, ref, alt)


def canonical_region(r: Region, build: str | None = None) -> Region:
    """``r`` on its canonical contig name."""
    try:
        chrom = canonical_contig(r.chrom, build)
    except BuildError as exc:
        raise _build_error(exc) from None
    return r if chrom == r.chrom else Region(chrom, r.start, r.end)
