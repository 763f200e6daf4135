"""What a node publishes about its data, and checks every query against before reading anything: the genome
build, the contigs that hold variants and, for exome or array data, the regions the data covers.

All of it is public (``GetNodeInfo``); none of it says who carries what, so a refusal decided here (a contig
the node lacks, a position it does not cover or past a chromosome's end, another build) never depends on the
data. The query service's gate (``node.policy``) calls ``Catalogue.assembly_of`` and ``Catalogue.check`` right
after canonicalising a query, before the ledger or the store is touched.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genogate.errors import ConfigError, FailedPrecondition, InvalidArgument, Reason, StoreError
from genogate.genome import BUILDS, LENGTHS, contig_list
from genogate.kinds import KINDS
from genogate.query import MAX_POS, Query, Region
from node.backend import GenotypeBackend
from node.bed import merge, read_bed


@dataclass(frozen=True)
class Catalogue:
    """What a node publishes about its data and checks every query against before reading anything: the
    genome build, the contigs that hold variants (canonical names) and, for exome or array data, the regions
    the data covers. All of it is public (``GetNodeInfo``); none of it says who carries what."""

    build: str
    contigs: tuple[str, ...]
    covered: tuple[Coverage, ...]  # every set must cover a position asked; () = all covered

    @functools.cached_property
    def _contig_set(self) -> frozenset[str]:
        return frozenset(self.contigs)

    @classmethod
    def of(
        cls, backend: GenotypeBackend, build: str, covered: Sequence[Region] | None, bed: Path | None = None
    ) -> Catalogue:
        """The catalogue of a store: its recorded build, which the configured ``build`` must match; its
        contigs; the regions it covers (recorded at ingest), ``covered`` and the ``bed`` file's."""
        path = backend.path
        recorded = backend.build
        if build and recorded and build != recorded:
            raise ConfigError(
                f"{path}: the store's data is on {recorded} but the node's config says genome_build = {build!r}; "
                "fix [node] genome_build (liftover is not supported)"
            )
        chosen = recorded or build
        if not chosen:
            raise StoreError(f"{path}: the store records no genome build; set [node] genome_build or re-ingest")
        from_bed = read_bed(bed, chosen) if bed is not None else None
        sets = tuple(Coverage(r) for r in (backend.covered_regions(), covered, from_bed) if r is not None)
        return cls(chosen, tuple(backend.contigs()), sets)  # the store spells contigs canonically

    def covered_regions(self) -> list[Region]:
        """The covered regions as published: the only set, or empty when the data covers all its contigs
        (with a store set and a config set both given, a position must be in both; both are published)."""
        return [r for c in self.covered for r in c.regions]

    def assembly_of(self, asked: str, study: str) -> str:
        """The build a query's coordinates are on (its own, else its study's, else this node's), refused
        unless it is this node's."""
        if asked and asked not in BUILDS:
            raise InvalidArgument(
                f"assembly {asked!r}",
                reason=Reason.WRONG_ASSEMBLY,
                message=f"unknown assembly {asked[:20]!r}; assemblies are {', '.join(BUILDS)}",
            )
        if asked and study and asked != study:
            raise FailedPrecondition(
                f"query {asked}, study {study}",
                reason=Reason.WRONG_ASSEMBLY,
                message=f"the query is on {asked} but its study is on {study}",
            )
        wanted = asked or study or self.build
        if wanted != self.build:
            raise FailedPrecondition(
                f"asked {wanted}, node {self.build}",
                reason=Reason.WRONG_ASSEMBLY,
                message=f"this site's data is on {self.build}, not {wanted} (liftover is not supported)",
            )
        return wanted

    def check(self, q: Query) -> None:
        """Refuse a canonical query naming a contig this node does not have, or a position its data does
        not cover (``UNKNOWN_CONTIG``, ``NOT_COVERED``): never answered as an absent variant."""
        kind = KINDS[q.kind]
        spans = [(v.chrom, v.pos, v.pos) for v in kind.variants(q)]
        region = kind.region(q)
        if region is not None:
            spans.append((region.chrom, region.start, region.end))
        lengths = LENGTHS[self.build]
        for chrom, start, end in spans:
            if start > lengths.get(chrom, MAX_POS):  # a primary chromosome ends where the build says
                raise InvalidArgument(
                    f"{chrom}:{start}",
                    reason=Reason.INVALID_VARIANT if start == end else Reason.INVALID_REGION,
                    message=f"position {start:,} is past the end of chromosome {chrom} on {self.build} "
                    f"({lengths[chrom]:,} bp)",
                )
            if chrom not in self._contig_set:
                raise InvalidArgument(
                    chrom,
                    reason=Reason.UNKNOWN_CONTIG,
                    message=f"this site has no contig {chrom[:64]!r}; its contigs are {contig_list(self.contigs)}",
                )
            for coverage in self.covered:
                if not coverage.holds(chrom, start, end):
                    raise InvalidArgument(
                        f"{chrom}:{start}-{end}",
                        reason=Reason.NOT_COVERED,
                        message=f"{chrom}:{start}-{end} is outside the regions this site's data covers "
                        "(exome or array data: an uncovered position is unknown, not reference)",
                    )


class Coverage:
    """Merged regions, looked up by binary search (an exome's ~200k intervals cost ~1 µs per position)."""

    def __init__(self, regions: Sequence[Region]):
        self.regions = tuple(regions)
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[int]] = {}
        for r in merge([(r.chrom, r.start, r.end) for r in regions]):  # sorted by contig, then start
            self._starts.setdefault(r.chrom, []).append(r.start)
            self._ends.setdefault(r.chrom, []).append(r.end)

    def holds(self, chrom: str, start: int, end: int) -> bool:
        """Whether ``chrom:start-end`` lies wholly within one merged region."""
        starts = self._starts.get(chrom)
        if not starts:
            return False
        i = bisect.bisect_right(starts, start) - 1
        return i >= 0 and end <= self._ends[chrom][i]
