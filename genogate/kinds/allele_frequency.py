"""Allele frequency: AC and AN of each variant (named, or every site of a region) in a cohort.

A node releases (ALT, REF) allele counts per variant, noised independently; AN = ALT + REF. The coordinator
sums AC and AN over the sites and derives the frequency (``coordinator.combine``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from genogate import results as res
from genogate.convert import (
    combined_value_from_pb,
    fill_combined,
    fill_noisy,
    fill_variant,
    filter_from_pb,
    filter_to_pb,
    noisy_from_pb,
    region_from_pb,
    region_to_pb,
    released_variant,
    variant_from_pb,
    variant_to_pb,
)
from genogate.errors import InvalidArgument, UsageError
from genogate.kinds.base import (
    CombinedRow,
    Maths,
    NodeData,
    QueryKind,
    Release,
    SiteRow,
    add_region,
    add_variants,
    add_where,
    allele_pairs,
    alt_ref,
    as_filter,
    as_region,
    as_variants,
    same_variants,
    variant_text,
)
from genogate.query import EVERYONE, Filter, Kind, Query, Region, Variant, canonical_region, canonical_variant
from genogate.query import normalise_filter as _normalise
from genogate.wire.v1 import common_pb2 as pb

if TYPE_CHECKING:
    from genogate.kinds.base import Counts, Sensitivity


@dataclass(frozen=True, slots=True)
class AlleleFrequency(Query):
    """AC and AN per variant; exactly one of ``variants`` or ``region``."""

    variants: tuple[Variant, ...] = ()
    region: Region | None = None
    filter: Filter = EVERYONE
    kind = Kind.ALLELE_FREQUENCY

    def __post_init__(self) -> None:
        if bool(self.variants) == (self.region is not None):
            raise InvalidArgument("an allele-frequency query names either variants or a region, not both or neither")


# Its result, one site's and combined over the sites (``genogate.results``' bases) -----------------------------


@dataclass(frozen=True, slots=True)
class AlleleCounts:
    """AC and AN (ALT + REF, two independent draws) of one variant."""

    variant: Variant
    allele_count: res.NoisyValue
    allele_number: res.NoisyValue


@dataclass(frozen=True, slots=True)
class AlleleFrequencyResult(res.QueryResult):
    kind: ClassVar[Kind] = Kind.ALLELE_FREQUENCY
    variants: tuple[AlleleCounts, ...]


@dataclass(frozen=True, slots=True)
class CombinedAlleleCounts:
    variant: Variant
    allele_count: res.CombinedValue
    allele_number: res.CombinedValue
    allele_frequency: res.CombinedValue


@dataclass(frozen=True, slots=True)
class CombinedAlleleFrequency(res.CombinedResult):
    kind: ClassVar[Kind] = Kind.ALLELE_FREQUENCY
    variants: tuple[CombinedAlleleCounts, ...]


_AF = ("allele_count", "allele_number", "allele_frequency")


class AlleleFrequencyKind(QueryKind):
    kind = Kind.ALLELE_FREQUENCY
    query_type = AlleleFrequency
    result_type = AlleleFrequencyResult
    combined_type = CombinedAlleleFrequency
    command = "allele-frequency"
    help = "allele counts and frequency of variants in a cohort"
    per_variant = True
    uses_variants = True
    takes_region = "optional"
    ratios = frozenset({"allele_frequency"})

    def sensitivity(self, k: int) -> Sensitivity:
        return allele_pairs(k)  # (alt, ref) per variant

    def to_pb(self, q: Query) -> pb.Query:
        assert isinstance(q, AlleleFrequency)
        af = pb.AlleleFrequencyQuery(variants=[variant_to_pb(v) for v in q.variants], filter=filter_to_pb(q.filter))
        if q.region is not None:
            af.region.CopyFrom(region_to_pb(q.region))
        return pb.Query(allele_frequency=af)

    def from_pb(self, m: pb.Query) -> Query:
        a = m.allele_frequency
        region = region_from_pb(a.region) if a.HasField("region") else None
        return AlleleFrequency(tuple(variant_from_pb(v) for v in a.variants), region, filter_from_pb(a.filter))

    def result_to_pb(self, r: res.QueryResult, m: pb.AlleleFrequencyResult) -> None:
        add = m.variants.add
        for a in _result(r).variants:
            x = add()
            fill_variant(x.variant, a.variant)
            fill_noisy(x.allele_count, a.allele_count)
            fill_noisy(x.allele_number, a.allele_number)

    def result_from_pb(self, m: pb.AlleleFrequencyResult) -> AlleleFrequencyResult:
        counts, noisy = AlleleCounts, noisy_from_pb
        return AlleleFrequencyResult(
            tuple(
                counts(released_variant(a.variant), noisy(a.allele_count), noisy(a.allele_number)) for a in m.variants
            )
        )

    def combined_to_pb(self, r: res.CombinedResult, m: pb.CombinedAlleleFrequency) -> None:
        assert isinstance(r, CombinedAlleleFrequency)
        add = m.variants.add
        for a in r.variants:
            x = add()
            fill_variant(x.variant, a.variant)
            fill_combined(x.allele_count, a.allele_count)
            fill_combined(x.allele_number, a.allele_number)
            fill_combined(x.allele_frequency, a.allele_frequency)

    def combined_from_pb(self, m: pb.CombinedAlleleFrequency) -> CombinedAlleleFrequency:
        return CombinedAlleleFrequency(
            tuple(
                CombinedAlleleCounts(released_variant(a.variant), *(combined_value_from_pb(getattr(a, f)) for f in _AF))
                for a in m.variants
            )
        )

    def canonical(self, q: Query, build: str | None, this_year: int | None) -> Query:
        assert isinstance(q, AlleleFrequency)
        return AlleleFrequency(
            tuple(sorted({canonical_variant(v, build) for v in q.variants})),
            canonical_region(q.region, build) if q.region is not None else None,
            _normalise(q.filter, this_year),
        )

    def variants(self, q: Query) -> tuple[Variant, ...]:
        assert isinstance(q, AlleleFrequency)
        return q.variants

    def region(self, q: Query) -> Region | None:
        assert isinstance(q, AlleleFrequency)
        return q.region

    def exact(self, q: Query, data: NodeData) -> Counts:
        return alt_ref(data.classes(data.masks[0]))

    def release(
        self, q: Query, variants: Sequence[Variant] | None, exact: Counts, data: NodeData, out: Release
    ) -> AlleleFrequencyResult:
        assert variants is not None
        noisy = out.draw(exact)
        return AlleleFrequencyResult(
            tuple(
                AlleleCounts(variant=v, allele_count=out.value(alt), allele_number=out.sum_value(alt, ref))
                for v, (alt, ref) in zip(variants, noisy.reshape(-1, 2), strict=True)
            )
        )

    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> CombinedAlleleFrequency:
        per_site = [_result(r).variants for r in results]
        same_variants([[x.variant for x in site] for site in per_site])
        out = []
        for i, first in enumerate(per_site[0]):
            ac = [site[i].allele_count for site in per_site]
            an = [site[i].allele_number for site in per_site]
            sum_ac, sum_an = maths.sum_of(ac), maths.sum_of(an, draws=2)
            out.append(
                CombinedAlleleCounts(
                    variant=first.variant,
                    allele_count=sum_ac,
                    allele_number=sum_an,
                    allele_frequency=maths.frequency(ac, an, sum_ac, sum_an),
                )
            )
        return CombinedAlleleFrequency(tuple(out))

    def site_rows(self, result: res.QueryResult) -> list[SiteRow]:
        out: list[SiteRow] = []
        for a in _result(result).variants:
            out += [(variant_text(a.variant), "allele_count", a.allele_count)]
            out += [(variant_text(a.variant), "allele_number", a.allele_number)]
        return out

    def combined_rows(self, combined: res.CombinedResult) -> tuple[list[CombinedRow], dict[str, res.OddsRatio]]:
        assert isinstance(combined, CombinedAlleleFrequency)
        rows: list[CombinedRow] = []
        for a in combined.variants:
            v = variant_text(a.variant)
            rows += [
                (v, "allele_count", a.allele_count),
                (v, "allele_number", a.allele_number),
                (v, "allele_frequency", a.allele_frequency),
            ]
        return rows, {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_where(parser)
        add_variants(parser)
        add_region(parser, required=False)

    def from_args(self, args: argparse.Namespace) -> Query:
        if not args.variant and not args.region:
            raise UsageError(f"{self.command}: give --variant (one or more) or --region")
        if args.variant and args.region:
            raise UsageError(f"{self.command}: give --variant or --region, not both")
        region = as_region(args.region) if args.region is not None else None
        return AlleleFrequency(as_variants(args.variant), region=region, filter=as_filter(args.where))


def _result(r: res.QueryResult) -> AlleleFrequencyResult:
    assert isinstance(r, AlleleFrequencyResult)
    return r


KIND = AlleleFrequencyKind()
