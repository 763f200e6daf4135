"""Carrier count: participants carrying at least one ALT allele of a region's variants.

With an allele-frequency cut-off the query makes two releases, each with half the ε: a noisy allele
frequency of every site of the region over every consented participant, of which only post-processing
picks the qualifying variants; then the count of the cohort's carriers of those."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from genogate import results as res
from genogate.convert import (
    combined_value_from_pb,
    fill_combined,
    fill_noisy,
    filter_from_pb,
    filter_to_pb,
    noisy_from_pb,
    region_from_pb,
    region_to_pb,
)
from genogate.errors import InvalidArgument, Reason
from genogate.kinds.base import (
    CombinedRow,
    Maths,
    NodeData,
    QueryKind,
    Release,
    SiteRow,
    add_region,
    add_where,
    allele_pairs,
    alt_ref,
    as_filter,
    as_region,
    counts,
    one_value,
    plan,
)
from genogate.query import EVERYONE, Filter, Kind, Query, Region, Variant, canonical_region, normalise_filter
from genogate.wire.v1 import common_pb2 as pb

if TYPE_CHECKING:
    from genogate.kinds.base import Counts, NoisePlan, Sensitivity


@dataclass(frozen=True, slots=True)
class CarrierCount(Query):
    """Participants carrying at least one qualifying ALT allele in a region."""

    region: Region
    max_allele_frequency: float | None = None
    filter: Filter = EVERYONE
    kind = Kind.CARRIER_COUNT

    def __post_init__(self) -> None:
        maf = self.max_allele_frequency
        if maf is not None and not (0.0 <= maf <= 1.0):  # also refuses NaN
            raise InvalidArgument("max_allele_frequency must lie between 0 and 1")


# Its result, one site's and combined over the sites (``genogate.results``' bases) -----------------------------


@dataclass(frozen=True, slots=True)
class CarrierCountResult(res.QueryResult):
    kind: ClassVar[Kind] = Kind.CARRIER_COUNT
    carriers: res.NoisyValue


@dataclass(frozen=True, slots=True)
class CombinedCarrierCount(res.CombinedResult):
    kind: ClassVar[Kind] = Kind.CARRIER_COUNT
    carriers: res.CombinedValue


class CarrierCountKind(QueryKind):
    kind = Kind.CARRIER_COUNT
    query_type = CarrierCount
    result_type = CarrierCountResult
    combined_type = CombinedCarrierCount
    command = "carrier-count"
    help = "count the carriers of any ALT allele in a region"
    per_variant = False
    uses_variants = True
    takes_region = "only"

    def sensitivity(self, k: int) -> Sensitivity:
        return one_value()  # one participant carries or not: +-1

    def to_pb(self, q: Query) -> pb.Query:
        assert isinstance(q, CarrierCount)
        cc = pb.CarrierCountQuery(region=region_to_pb(q.region), filter=filter_to_pb(q.filter))
        if q.max_allele_frequency is not None:
            cc.max_allele_frequency = q.max_allele_frequency
        return pb.Query(carrier_count=cc)

    def from_pb(self, m: pb.Query) -> Query:
        cc = m.carrier_count
        if cc.WhichOneof("target") != "region":
            raise InvalidArgument(
                "carrier counts take a region (this node resolves no gene symbols)",
                reason=Reason.INVALID_REGION,
                message="the region is malformed",
            )
        maf = cc.max_allele_frequency if cc.HasField("max_allele_frequency") else None
        return CarrierCount(region_from_pb(cc.region), maf, filter_from_pb(cc.filter))

    def result_to_pb(self, r: res.QueryResult, m: pb.CarrierCountResult) -> None:
        fill_noisy(m.carriers, _result(r).carriers)

    def result_from_pb(self, m: pb.CarrierCountResult) -> CarrierCountResult:
        return CarrierCountResult(noisy_from_pb(m.carriers))

    def combined_to_pb(self, r: res.CombinedResult, m: pb.CombinedCarrierCount) -> None:
        assert isinstance(r, CombinedCarrierCount)
        fill_combined(m.carriers, r.carriers)

    def combined_from_pb(self, m: pb.CombinedCarrierCount) -> CombinedCarrierCount:
        return CombinedCarrierCount(combined_value_from_pb(m.carriers))

    def canonical(self, q: Query, build: str | None, this_year: int | None) -> Query:
        assert isinstance(q, CarrierCount)
        return CarrierCount(
            canonical_region(q.region, build), q.max_allele_frequency, normalise_filter(q.filter, this_year)
        )

    def variants(self, q: Query) -> tuple[Variant, ...]:
        return ()

    def region(self, q: Query) -> Region | None:
        assert isinstance(q, CarrierCount)
        return q.region

    def reads_rows(self, q: Query) -> bool:
        # Without a frequency cut the node counts carriers in its store (``NodeData.carriers``) instead.
        assert isinstance(q, CarrierCount)
        return q.max_allele_frequency is not None

    def plans(
        self, q: Query, k: int | None, epsilon: Decimal, delta: Decimal
    ) -> tuple[list[Sensitivity], list[NoisePlan]]:
        assert isinstance(q, CarrierCount)
        if q.max_allele_frequency is None:
            return super().plans(q, k, epsilon, delta)
        half = epsilon / 2
        s_af = allele_pairs(max(k or 0, 1))  # stage 1: an allele frequency's (alt, ref) pairs
        s_cc = self.sensitivity(1)
        return [s_af, s_cc], [plan(s_af, half, delta), plan(s_cc, half, Decimal(0))]

    def exact(self, q: Query, data: NodeData) -> Counts:
        assert isinstance(q, CarrierCount)
        if q.max_allele_frequency is None:
            return counts([data.carriers(data.masks[0])])
        return alt_ref(data.classes(data.consent))  # stage 1: the AF over every consented participant

    def release(
        self, q: Query, variants: Sequence[Variant] | None, exact: Counts, data: NodeData, out: Release
    ) -> CarrierCountResult:
        assert isinstance(q, CarrierCount)
        noisy = out.draw(exact)
        stage = 0
        if q.max_allele_frequency is not None:
            # Stage 2: only post-processing of the noisy AF picks the variants; their carriers get the rest.
            af_noisy = noisy.reshape(-1, 2)
            an = af_noisy.sum(axis=1).clip(min=1)
            chosen = af_noisy[:, 0] / an <= q.max_allele_frequency
            # Every variant's rows are read again, the unchosen and the stand-ins uncounted: the same work
            # whichever the noise chose and whichever the store holds.
            stage = 1
            noisy = out.draw(counts([data.carriers(data.masks[0], chosen)]), stage)
        return CarrierCountResult(out.value(noisy[0], stage))

    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> CombinedCarrierCount:
        return CombinedCarrierCount(maths.sum_of([_result(r).carriers for r in results]))

    def site_rows(self, result: res.QueryResult) -> list[SiteRow]:
        return [("", "carriers", _result(result).carriers)]

    def combined_rows(self, combined: res.CombinedResult) -> tuple[list[CombinedRow], dict[str, res.OddsRatio]]:
        assert isinstance(combined, CombinedCarrierCount)
        return [("", "carriers", combined.carriers)], {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_where(parser)
        add_region(parser, required=True)
        parser.add_argument("--max-af", type=float, metavar="F", help="count only variants with allele frequency <= F")

    def from_args(self, args: argparse.Namespace) -> Query:
        return CarrierCount(as_region(args.region), max_allele_frequency=args.max_af, filter=as_filter(args.where))


def _result(r: res.QueryResult) -> CarrierCountResult:
    assert isinstance(r, CarrierCountResult)
    return r


KIND = CarrierCountKind()
