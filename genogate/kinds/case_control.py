"""Case/control: a 2x2 allele table per variant (ALT and REF allele counts of cases and of controls) and,
combined over the sites, an allelic odds ratio. A participant matching both filters counts as a case only."""

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
    fill_odds_ratio,
    fill_variant,
    filter_from_pb,
    filter_to_pb,
    noisy_from_pb,
    odds_ratio_from_pb,
    released_variant,
    variant_from_pb,
    variant_to_pb,
)
from genogate.errors import InvalidArgument, Reason, UsageError
from genogate.kinds.base import (
    CombinedRow,
    Maths,
    NodeData,
    QueryKind,
    Release,
    SiteRow,
    add_variants,
    allele_pairs,
    alt_ref,
    as_filter,
    as_variants,
    same_variants,
    variant_text,
)
from genogate.query import Filter, Kind, Query, Variant, canonical_variant, normalise_filter
from genogate.wire.v1 import common_pb2 as pb

if TYPE_CHECKING:
    from genogate.kinds.base import Counts, Mask, Sensitivity


@dataclass(frozen=True, slots=True)
class CaseControl(Query):
    """A 2x2 allele table per variant; a participant matching both filters counts as a case only."""

    variants: tuple[Variant, ...]
    case_filter: Filter
    control_filter: Filter
    kind = Kind.CASE_CONTROL

    def __post_init__(self) -> None:
        if not self.variants:
            raise InvalidArgument(
                "a case/control query needs at least one variant",
                reason=Reason.INVALID_VARIANT,
                message="a variant is malformed",
            )


CELLS = ("case_alt", "case_ref", "control_alt", "control_ref")


# Its result, one site's and combined over the sites (``genogate.results``' bases) -----------------------------


@dataclass(frozen=True, slots=True)
class CaseControlTable:
    """The 2x2 allele table of one variant."""

    variant: Variant
    case_alt: res.NoisyValue
    case_ref: res.NoisyValue
    control_alt: res.NoisyValue
    control_ref: res.NoisyValue


@dataclass(frozen=True, slots=True)
class CaseControlResult(res.QueryResult):
    kind: ClassVar[Kind] = Kind.CASE_CONTROL
    tables: tuple[CaseControlTable, ...]


@dataclass(frozen=True, slots=True)
class CombinedCaseControlTable:
    variant: Variant
    case_alt: res.CombinedValue
    case_ref: res.CombinedValue
    control_alt: res.CombinedValue
    control_ref: res.CombinedValue
    odds_ratio: res.OddsRatio


@dataclass(frozen=True, slots=True)
class CombinedCaseControl(res.CombinedResult):
    kind: ClassVar[Kind] = Kind.CASE_CONTROL
    tables: tuple[CombinedCaseControlTable, ...]


_CELLS = ("case_alt", "case_ref", "control_alt", "control_ref")


class CaseControlKind(QueryKind):
    kind = Kind.CASE_CONTROL
    query_type = CaseControl
    result_type = CaseControlResult
    combined_type = CombinedCaseControl
    command = "case-control"
    help = "case/control allele tables and odds ratios"
    per_variant = True
    uses_variants = True
    ratios = frozenset({"odds_ratio"})

    def sensitivity(self, k: int) -> Sensitivity:
        return allele_pairs(k, pairs_per_variant=2)  # (alt, ref) per arm per variant, one arm moves

    def to_pb(self, q: Query) -> pb.Query:
        assert isinstance(q, CaseControl)
        return pb.Query(
            case_control=pb.CaseControlQuery(
                variants=[variant_to_pb(v) for v in q.variants],
                case_filter=filter_to_pb(q.case_filter),
                control_filter=filter_to_pb(q.control_filter),
            )
        )

    def from_pb(self, m: pb.Query) -> Query:
        c = m.case_control
        return CaseControl(
            tuple(variant_from_pb(v) for v in c.variants),
            filter_from_pb(c.case_filter),
            filter_from_pb(c.control_filter),
        )

    def result_to_pb(self, r: res.QueryResult, m: pb.CaseControlResult) -> None:
        add = m.tables.add
        for t in _result(r).tables:
            x = add()
            fill_variant(x.variant, t.variant)
            fill_noisy(x.case_alt, t.case_alt)
            fill_noisy(x.case_ref, t.case_ref)
            fill_noisy(x.control_alt, t.control_alt)
            fill_noisy(x.control_ref, t.control_ref)

    def result_from_pb(self, m: pb.CaseControlResult) -> CaseControlResult:
        return CaseControlResult(
            tuple(
                CaseControlTable(released_variant(t.variant), *(noisy_from_pb(getattr(t, c)) for c in _CELLS))
                for t in m.tables
            )
        )

    def combined_to_pb(self, r: res.CombinedResult, m: pb.CombinedCaseControl) -> None:
        assert isinstance(r, CombinedCaseControl)
        add = m.tables.add
        for t in r.tables:
            x = add()
            fill_variant(x.variant, t.variant)
            for c in _CELLS:
                fill_combined(getattr(x, c), getattr(t, c))
            fill_odds_ratio(x.odds_ratio, t.odds_ratio)

    def combined_from_pb(self, m: pb.CombinedCaseControl) -> CombinedCaseControl:
        return CombinedCaseControl(
            tuple(
                CombinedCaseControlTable(
                    released_variant(t.variant),
                    combined_value_from_pb(t.case_alt),
                    combined_value_from_pb(t.case_ref),
                    combined_value_from_pb(t.control_alt),
                    combined_value_from_pb(t.control_ref),
                    odds_ratio_from_pb(t.odds_ratio),
                )
                for t in m.tables
            )
        )

    def canonical(self, q: Query, build: str | None, this_year: int | None) -> Query:
        assert isinstance(q, CaseControl)
        return CaseControl(
            tuple(sorted({canonical_variant(v, build) for v in q.variants})),
            normalise_filter(q.case_filter, this_year),
            normalise_filter(q.control_filter, this_year),
        )

    def filters(self, q: Query) -> tuple[Filter, ...]:
        assert isinstance(q, CaseControl)
        return (q.case_filter, q.control_filter)

    def variants(self, q: Query) -> tuple[Variant, ...]:
        assert isinstance(q, CaseControl)
        return q.variants

    def arms(self, masks: list[Mask]) -> list[Mask]:
        return [masks[0], masks[1] & ~masks[0]]  # a participant in both arms counts as a case only

    def exact(self, q: Query, data: NodeData) -> Counts:
        import numpy as np

        # one read of the rows, counted for both arms: (case alt, case ref, control alt, control ref) per variant
        return np.stack([alt_ref(data.classes(m)).reshape(-1, 2) for m in data.masks], axis=1).reshape(-1)

    def release(
        self, q: Query, variants: Sequence[Variant] | None, exact: Counts, data: NodeData, out: Release
    ) -> CaseControlResult:
        assert variants is not None
        noisy = out.draw(exact)
        return CaseControlResult(
            tuple(
                CaseControlTable(
                    variant=v,
                    case_alt=out.value(r[0]),
                    case_ref=out.value(r[1]),
                    control_alt=out.value(r[2]),
                    control_ref=out.value(r[3]),
                )
                for v, r in zip(variants, noisy.reshape(-1, 4), strict=True)
            )
        )

    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> CombinedCaseControl:
        tables = [_result(r).tables for r in results]
        same_variants([[x.variant for x in site] for site in tables])
        out = []
        for i, table in enumerate(tables[0]):
            cells = [maths.sum_of([getattr(site[i], f) for site in tables]) for f in CELLS]
            out.append(
                CombinedCaseControlTable(
                    variant=table.variant,
                    case_alt=cells[0],
                    case_ref=cells[1],
                    control_alt=cells[2],
                    control_ref=cells[3],
                    odds_ratio=maths.odds_ratio(*cells),
                )
            )
        return CombinedCaseControl(tuple(out))

    def site_rows(self, result: res.QueryResult) -> list[SiteRow]:
        out: list[SiteRow] = []
        for t in _result(result).tables:
            out += [(variant_text(t.variant), name, getattr(t, name)) for name in CELLS]
        return out

    def combined_rows(self, combined: res.CombinedResult) -> tuple[list[CombinedRow], dict[str, res.OddsRatio]]:
        assert isinstance(combined, CombinedCaseControl)
        rows: list[CombinedRow] = []
        odds: dict[str, res.OddsRatio] = {}
        for t in combined.tables:
            v = variant_text(t.variant)
            rows += [(v, name, getattr(t, name)) for name in CELLS]
            odds[v] = t.odds_ratio
        return rows, odds

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_variants(parser)
        parser.add_argument("--cases", required=True, metavar="FILTER", help="who the cases are")
        parser.add_argument("--controls", required=True, metavar="FILTER", help="who the controls are")

    def from_args(self, args: argparse.Namespace) -> Query:
        if not args.variant:
            raise UsageError(f"{self.command}: give --variant (one or more)")
        return CaseControl(as_variants(args.variant), as_filter(args.cases), as_filter(args.controls))


def _result(r: res.QueryResult) -> CaseControlResult:
    assert isinstance(r, CaseControlResult)
    return r


KIND = CaseControlKind()
