"""Cohort count: how many consented participants match a filter (one release of one value)."""

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
    filter_from_pb,
    filter_to_pb,
    noisy_from_pb,
)
from genogate.kinds.base import (
    CombinedRow,
    Maths,
    NodeData,
    QueryKind,
    Release,
    SiteRow,
    add_where,
    as_filter,
    counts,
    one_value,
)
from genogate.query import EVERYONE, Filter, Kind, Query, Variant, normalise_filter
from genogate.wire.v1 import common_pb2 as pb

if TYPE_CHECKING:
    from genogate.kinds.base import Counts, Sensitivity


@dataclass(frozen=True, slots=True)
class CohortCount(Query):
    filter: Filter = EVERYONE
    kind = Kind.COHORT_COUNT


# Its result, one site's and combined over the sites (``genogate.results``' bases) -----------------------------


@dataclass(frozen=True, slots=True)
class CohortCountResult(res.QueryResult):
    kind: ClassVar[Kind] = Kind.COHORT_COUNT
    count: res.NoisyValue


@dataclass(frozen=True, slots=True)
class CombinedCohortCount(res.CombinedResult):
    kind: ClassVar[Kind] = Kind.COHORT_COUNT
    count: res.CombinedValue


class CohortCountKind(QueryKind):
    kind = Kind.COHORT_COUNT
    query_type = CohortCount
    result_type = CohortCountResult
    combined_type = CombinedCohortCount
    command = "cohort-count"
    help = "count the participants matching a filter"
    per_variant = False
    uses_variants = False

    def sensitivity(self, k: int) -> Sensitivity:
        return one_value()  # one participant: +-1

    def to_pb(self, q: Query) -> pb.Query:
        assert isinstance(q, CohortCount)
        return pb.Query(cohort_count=pb.CohortCountQuery(filter=filter_to_pb(q.filter)))

    def from_pb(self, m: pb.Query) -> Query:
        return CohortCount(filter_from_pb(m.cohort_count.filter))

    def result_to_pb(self, r: res.QueryResult, m: pb.CohortCountResult) -> None:
        fill_noisy(m.count, _result(r).count)

    def result_from_pb(self, m: pb.CohortCountResult) -> CohortCountResult:
        return CohortCountResult(noisy_from_pb(m.count))

    def combined_to_pb(self, r: res.CombinedResult, m: pb.CombinedCohortCount) -> None:
        assert isinstance(r, CombinedCohortCount)
        fill_combined(m.count, r.count)

    def combined_from_pb(self, m: pb.CombinedCohortCount) -> CombinedCohortCount:
        return CombinedCohortCount(combined_value_from_pb(m.count))

    def canonical(self, q: Query, build: str | None, this_year: int | None) -> Query:
        assert isinstance(q, CohortCount)
        return CohortCount(normalise_filter(q.filter, this_year))

    def variants(self, q: Query) -> tuple[Variant, ...]:
        return ()

    def exact(self, q: Query, data: NodeData) -> Counts:
        return counts([data.size(data.masks[0])])

    def release(
        self, q: Query, variants: Sequence[Variant] | None, exact: Counts, data: NodeData, out: Release
    ) -> CohortCountResult:
        noisy = out.draw(exact)
        return CohortCountResult(out.value(noisy[0]))

    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> CombinedCohortCount:
        return CombinedCohortCount(maths.sum_of([_result(r).count for r in results]))

    def site_rows(self, result: res.QueryResult) -> list[SiteRow]:
        return [("", "count", _result(result).count)]

    def combined_rows(self, combined: res.CombinedResult) -> tuple[list[CombinedRow], dict[str, res.OddsRatio]]:
        assert isinstance(combined, CombinedCohortCount)
        return [("", "count", combined.count)], {}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_where(parser)

    def from_args(self, args: argparse.Namespace) -> Query:
        return CohortCount(as_filter(args.where))


def _result(r: res.QueryResult) -> CohortCountResult:
    assert isinstance(r, CohortCountResult)
    return r


KIND = CohortCountKind()
