"""Where wire messages (``genogate.wire.v1``) and domain values (``genogate.query``) meet: variants, regions,
filters and kinds here, each kind's query in its module (``genogate.kinds``), on these.

Decoding validates: a malformed message raises ``InvalidArgument`` with a matchable reason, never a
protobuf or Python error.
"""

from __future__ import annotations

from genogate.errors import InvalidArgument, Reason
from genogate.query import (
    MAX_POS,
    AgeRange,
    AncestryIn,
    And,
    Everyone,
    Filter,
    Kind,
    Not,
    Or,
    PhenotypeHas,
    Region,
    SexIs,
    Variant,
    check_filter_size,
)
from genogate.wire.v1 import common_pb2 as pb

_SEX_TO_PB = {"F": pb.SEX_FEMALE, "M": pb.SEX_MALE, "U": pb.SEX_UNKNOWN}
_SEX_FROM_PB = {v: k for k, v in _SEX_TO_PB.items()}


# Variants and regions -----------------------------------------------------------------------------------


def variant_to_pb(v: Variant) -> pb.Variant:
    return pb.Variant(chrom=v.chrom, pos=v.pos, ref=v.ref, alt=v.alt)


def variant_from_pb(m: pb.Variant) -> Variant:
    if m.pos > MAX_POS:
        raise InvalidArgument("position too large", reason=Reason.INVALID_VARIANT, message="a variant is malformed")
    return Variant(m.chrom, int(m.pos), m.ref, m.alt)


def region_to_pb(r: Region) -> pb.Region:
    return pb.Region(chrom=r.chrom, start=r.start, end=r.end)


def region_from_pb(m: pb.Region) -> Region:
    if m.start > MAX_POS or m.end > MAX_POS:
        raise InvalidArgument("position too large", reason=Reason.INVALID_REGION, message="the region is malformed")
    return Region(m.chrom, int(m.start), int(m.end))


# Filters --------------------------------------------------------------------------------------------------


def filter_to_pb(f: Filter) -> pb.Filter:
    if isinstance(f, Everyone):
        return pb.Filter()
    if isinstance(f, SexIs):
        return pb.Filter(sex_is=pb.Filter.SexIs(sex=_SEX_TO_PB[f.sex]))
    if isinstance(f, AgeRange):
        return pb.Filter(age_range=pb.Filter.AgeRange(min_years=f.min_years, max_years=f.max_years))
    if isinstance(f, AncestryIn):
        return pb.Filter(ancestry_in=pb.Filter.AncestryIn(groups=list(f.groups)))
    if isinstance(f, PhenotypeHas):
        return pb.Filter(phenotype_has=pb.Filter.PhenotypeHas(term=f.term))
    if isinstance(f, And):
        return pb.Filter(all_of=pb.Filter.And(items=[filter_to_pb(i) for i in f.items]))
    if isinstance(f, Or):
        return pb.Filter(any_of=pb.Filter.Or(items=[filter_to_pb(i) for i in f.items]))
    return pb.Filter(negation=pb.Filter.Not(item=filter_to_pb(f.item)))


def filter_from_pb(m: pb.Filter) -> Filter:
    f = _filter_from_pb(m, 0)
    check_filter_size(f)
    return f


def _filter_from_pb(m: pb.Filter, depth: int) -> Filter:
    if depth > 32:  # check_filter_size reports the real limit; this only stops runaway recursion
        raise InvalidArgument(
            "filter nested too deeply", reason=Reason.INVALID_FILTER, message="the cohort filter is malformed"
        )
    which = m.WhichOneof("condition")
    if which is None:
        return Everyone()
    if which == "sex_is":
        if m.sex_is.sex not in _SEX_FROM_PB:
            raise InvalidArgument(
                "sex must be set", reason=Reason.INVALID_FILTER, message="the cohort filter is malformed"
            )
        return SexIs(_SEX_FROM_PB[m.sex_is.sex])  # type: ignore[arg-type]
    if which == "age_range":
        a = m.age_range
        return AgeRange(
            a.min_years if a.HasField("min_years") else None, a.max_years if a.HasField("max_years") else None
        )
    if which == "ancestry_in":
        return AncestryIn(tuple(m.ancestry_in.groups))
    if which == "phenotype_has":
        return PhenotypeHas(m.phenotype_has.term)
    if which == "all_of":
        return And(tuple(_filter_from_pb(i, depth + 1) for i in m.all_of.items))
    if which == "any_of":
        return Or(tuple(_filter_from_pb(i, depth + 1) for i in m.any_of.items))
    return Not(_filter_from_pb(m.negation.item, depth + 1))


# Query kinds (each kind's query: ``genogate.kinds``) ----------------------------------------------


def kind_to_pb(k: Kind) -> int:
    return k.value


def kind_from_pb(value: int) -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise InvalidArgument("unknown query kind") from None
