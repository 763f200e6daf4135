"""Genotype counts: the six genotype classes of one variant in a cohort (one release of six values)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from genogate import results as res
from genogate.convert import filter_from_pb, filter_to_pb, variant_from_pb, variant_to_pb
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


class GenotypeCountsKind(QueryKind):
    kind = Kind.GENOTYPE_COUNTS
    query_type = GenotypeCounts
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
    ) -> res.GenotypeCountsResult:
        assert isinstance(q, GenotypeCounts)
        v = [out.value(x) for x in out.draw(exact)]
        return res.GenotypeCountsResult(
            variant=q.variant,
            hom_ref=v[HOM_REF],
            het=v[HET],
            hom_alt=v[HOM_ALT],
            hemi_ref=v[HEMI_REF],
            hemi_alt=v[HEMI_ALT],
            no_call=v[NO_CALL],
        )

    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> res.CombinedGenotypeCounts:
        g = [_result(r) for r in results]

        def field(name: str) -> res.CombinedValue:
            return maths.sum_of([getattr(x, name) for x in g])

        return res.CombinedGenotypeCounts(
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
        assert isinstance(combined, res.CombinedGenotypeCounts)
        return [(variant_text(combined.variant), name, getattr(combined, name)) for name in GENOTYPE_CLASSES], {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_where(parser)
        parser.add_argument("--variant", required=True, metavar="CHROM-POS-REF-ALT", help="the variant")

    def from_args(self, args: argparse.Namespace) -> Query:
        return GenotypeCounts(Variant.parse(args.variant), as_filter(args.where))


def _result(r: res.QueryResult) -> res.GenotypeCountsResult:
    assert isinstance(r, res.GenotypeCountsResult)
    return r


KIND = GenotypeCountsKind()
