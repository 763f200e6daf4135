"""Genotype counts: the six genotype classes of one variant in a cohort (one release of six values)."""

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
    released_variant,
    variant_from_pb,
    variant_to_pb,
)
from genogate.errors import InvalidArgument, Reason
from genogate.kinds.base import (
    GENOTYPE_CLASSES,
    HEMI_ALT,
    HEMI_REF,
    HET,
    HOM_ALT,
    HOM_REF,
    NO_CALL,
    CombinedRow,
    Maths,
    NodeData,
    QueryKind,
    Release,
    SiteRow,
    add_where,
    as_filter,
    class_counts,
    variant_text,
)
from genogate.query import EVERYONE, Filter, Kind, Query, Variant, canonical_variant, normalise_filter
from genogate.wire.v1 import common_pb2 as pb

if TYPE_CHECKING:
    from genogate.kinds.base import Counts, Sensitivity


@dataclass(frozen=True, slots=True)
class GenotypeCounts(Query):
    variant: Variant
    filter: Filter = EVERYONE
    kind = Kind.GENOTYPE_COUNTS


# Its result, one site's and combined over the sites (``genogate.results``' bases) -----------------------------


@dataclass(frozen=True, slots=True)
class GenotypeCountsResult(res.QueryResult):
    kind: ClassVar[Kind] = Kind.GENOTYPE_COUNTS
    variant: Variant
    hom_ref: res.NoisyValue
    het: res.NoisyValue
    hom_alt: res.NoisyValue
    hemi_ref: res.NoisyValue
    hemi_alt: res.NoisyValue
    no_call: res.NoisyValue


@dataclass(frozen=True, slots=True)
class CombinedGenotypeCounts(res.CombinedResult):
    kind: ClassVar[Kind] = Kind.GENOTYPE_COUNTS
    variant: Variant
    hom_ref: res.CombinedValue
    het: res.CombinedValue
    hom_alt: res.CombinedValue
    hemi_ref: res.CombinedValue
    hemi_alt: res.CombinedValue
    no_call: res.CombinedValue


class GenotypeCountsKind(QueryKind):
    kind = Kind.GENOTYPE_COUNTS
    query_type = GenotypeCounts
    result_type = GenotypeCountsResult
    combined_type = CombinedGenotypeCounts
    command = "genotype-counts"
    help = "genotype-class counts of one variant in a cohort"
    per_variant = False
    uses_variants = True

    def sensitivity(self, k: int) -> Sensitivity:
        return class_counts(len(GENOTYPE_CLASSES))  # exactly one of 6 classes: +-1

    def to_pb(self, q: Query) -> pb.Query:
        assert isinstance(q, GenotypeCounts)
        return pb.Query(
            genotype_counts=pb.GenotypeCountsQuery(variant=variant_to_pb(q.variant), filter=filter_to_pb(q.filter))
        )

    def from_pb(self, m: pb.Query) -> Query:
        g = m.genotype_counts
        if not g.HasField("variant"):
            raise InvalidArgument(
                "a genotype-counts query needs a variant",
                reason=Reason.INVALID_VARIANT,
                message="a variant is malformed",
            )
        return GenotypeCounts(variant_from_pb(g.variant), filter_from_pb(g.filter))

    def result_to_pb(self, r: res.QueryResult, m: pb.GenotypeCountsResult) -> None:
        r = _result(r)
        fill_variant(m.variant, r.variant)
        for c in GENOTYPE_CLASSES:
            fill_noisy(getattr(m, c), getattr(r, c))

    def result_from_pb(self, m: pb.GenotypeCountsResult) -> GenotypeCountsResult:
        return GenotypeCountsResult(
            released_variant(m.variant), *(noisy_from_pb(getattr(m, c)) for c in GENOTYPE_CLASSES)
        )

    def combined_to_pb(self, r: res.CombinedResult, m: pb.CombinedGenotypeCounts) -> None:
        assert isinstance(r, CombinedGenotypeCounts)
        fill_variant(m.variant, r.variant)
        for c in GENOTYPE_CLASSES:
            fill_combined(getattr(m, c), getattr(r, c))

    def combined_from_pb(self, m: pb.CombinedGenotypeCounts) -> CombinedGenotypeCounts:
        return CombinedGenotypeCounts(
            released_variant(m.variant), *(combined_value_from_pb(getattr(m, c)) for c in GENOTYPE_CLASSES)
        )

    def canonical(self, q: Query, build: str | None, this_year: int | None) -> Query:
        assert isinstance(q, GenotypeCounts)
        return GenotypeCounts(canonical_variant(q.variant, build), normalise_filter(q.filter, this_year))

    def variants(self, q: Query) -> tuple[Variant, ...]:
        assert isinstance(q, GenotypeCounts)
        return (q.variant,)

    def exact(self, q: Query, data: NodeData) -> Counts:
        counts: Counts = data.classes(data.masks[0])[0].astype("int64")
        return counts

    def release(
        self, q: Query, variants: Sequence[Variant] | None, exact: Counts, data: NodeData, out: Release
    ) -> GenotypeCountsResult:
        assert isinstance(q, GenotypeCounts)
        v = [out.value(x) for x in out.draw(exact)]
        return GenotypeCountsResult(
            variant=q.variant,
            hom_ref=v[HOM_REF],
            het=v[HET],
            hom_alt=v[HOM_ALT],
            hemi_ref=v[HEMI_REF],
            hemi_alt=v[HEMI_ALT],
            no_call=v[NO_CALL],
        )

    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> CombinedGenotypeCounts:
        g = [_result(r) for r in results]

        def field(name: str) -> res.CombinedValue:
            return maths.sum_of([getattr(x, name) for x in g])

        return CombinedGenotypeCounts(
            variant=g[0].variant,
            hom_ref=field("hom_ref"),
            het=field("het"),
            hom_alt=field("hom_alt"),
            hemi_ref=field("hemi_ref"),
            hemi_alt=field("hemi_alt"),
            no_call=field("no_call"),
        )

    def site_rows(self, result: res.QueryResult) -> list[SiteRow]:
        g = _result(result)
        return [(variant_text(g.variant), name, getattr(g, name)) for name in GENOTYPE_CLASSES]

    def combined_rows(self, combined: res.CombinedResult) -> tuple[list[CombinedRow], dict[str, res.OddsRatio]]:
        assert isinstance(combined, CombinedGenotypeCounts)
        return [(variant_text(combined.variant), name, getattr(combined, name)) for name in GENOTYPE_CLASSES], {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_where(parser)
        parser.add_argument("--variant", required=True, metavar="CHROM-POS-REF-ALT", help="the variant")

    def from_args(self, args: argparse.Namespace) -> Query:
        return GenotypeCounts(Variant.parse(args.variant), as_filter(args.where))


def _result(r: res.QueryResult) -> GenotypeCountsResult:
    assert isinstance(r, GenotypeCountsResult)
    return r


KIND = GenotypeCountsKind()
