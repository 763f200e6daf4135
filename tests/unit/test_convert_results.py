"""Results between domain values (``genogate.results``, each kind's in its module) and wire messages
(``genogate.convert``'s "Results" section for the shared values; each kind's ``result_to_pb`` ... dispatched
by ``genogate.kinds``): round trips over generated values both ways (domain -> wire -> domain is the identity;
wire -> domain -> wire gives the same bytes), and the node's values byte for byte as it built them before it
spoke domain types."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from genogate import results as res
from genogate.convert import (
    budget_from_pb,
    budget_to_pb,
    combined_value_from_pb,
    combined_value_to_pb,
    noisy_from_pb,
    noisy_to_pb,
    odds_ratio_from_pb,
    odds_ratio_to_pb,
)
from genogate.kinds import (
    KINDS,
    combined_from_pb,
    combined_to_pb,
    for_pb,
    for_result,
    release_body_from_pb,
    release_body_to_pb,
    result_from_pb,
    result_to_pb,
)
from genogate.kinds import allele_frequency as af
from genogate.kinds import carrier_count as cc
from genogate.kinds import case_control as ct
from genogate.kinds import cohort_count as co
from genogate.kinds import genotype_counts as gc
from genogate.query import MAX_POS, Kind, Variant
from genogate.wire.v1 import common_pb2 as pb

finite = st.floats(allow_nan=False, allow_infinity=False)
u32 = st.integers(min_value=0, max_value=2**32 - 1)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(max_size=12)
bases = st.text(alphabet="ACGT", min_size=1, max_size=4)
variants = st.builds(
    lambda chrom, pos, ref, alt: Variant(chrom, pos, ref, alt + "A" if alt == ref else alt),
    st.sampled_from(["1", "22", "X", "chr7", "MT"]),
    st.integers(min_value=1, max_value=MAX_POS),
    bases,
    bases,
)
noisy = st.builds(
    res.NoisyValue,
    estimate=i64,
    noise_scale=finite,
    ci95_low=finite,
    ci95_high=finite,
    below_threshold=st.booleans(),
    threshold=u32,
    mechanism=st.sampled_from(("", *res.MECHANISMS)),
    noise_stddev=finite,
)
combined_values = st.builds(
    res.CombinedValue,
    estimate=st.none() | finite,
    ci95_low=finite,
    ci95_high=finite,
    noise_stddev=finite,
    sites_below_threshold=u32,
    sites=u32,
    threshold=u32,
    released=finite,
    not_computed=text,
)
odds = st.builds(res.OddsRatio, finite, finite, finite, finite, text)


def _tuple(s: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(s, max_size=3).map(tuple)


site_results: st.SearchStrategy[res.QueryResult] = st.one_of(
    st.builds(co.CohortCountResult, noisy),
    st.builds(af.AlleleFrequencyResult, _tuple(st.builds(af.AlleleCounts, variants, noisy, noisy))),
    st.builds(gc.GenotypeCountsResult, variants, noisy, noisy, noisy, noisy, noisy, noisy),
    st.builds(ct.CaseControlResult, _tuple(st.builds(ct.CaseControlTable, variants, noisy, noisy, noisy, noisy))),
    st.builds(cc.CarrierCountResult, noisy),
)
cv = combined_values
combinations: st.SearchStrategy[res.CombinedResult] = st.one_of(
    st.builds(co.CombinedCohortCount, cv),
    st.builds(af.CombinedAlleleFrequency, _tuple(st.builds(af.CombinedAlleleCounts, variants, cv, cv, cv))),
    st.builds(gc.CombinedGenotypeCounts, variants, cv, cv, cv, cv, cv, cv),
    st.builds(ct.CombinedCaseControl, _tuple(st.builds(ct.CombinedCaseControlTable, variants, cv, cv, cv, cv, odds))),
    st.builds(cc.CombinedCarrierCount, cv),
)
budgets = st.builds(res.BudgetStatus, text, text, finite, finite, finite, u32, finite, finite, u32, u64)
bodies = st.builds(
    res.ReleaseBody,
    query_id=text,
    study_id=text,
    site=text,
    query_sha256=st.binary(max_size=32),
    result=st.none() | site_results,
    epsilon_charged=finite,
    delta_charged=finite,
    from_store=st.booleans(),
    cached_query_id=text,
    budget_after=st.none() | budgets,
    released_unix_ms=i64,
    original_epsilon_charged=finite,
    original_delta_charged=finite,
    consent_epoch=u64,
)


def _bytes(m: Any) -> bytes:
    return bytes(m.SerializeToString(deterministic=True))


@settings(max_examples=200)
@given(noisy, combined_values, odds, budgets)
def test_values_round_trip_both_ways(v: res.NoisyValue, c: res.CombinedValue, o: res.OddsRatio, b: Any) -> None:
    for value, to_pb, from_pb, message in (
        (v, noisy_to_pb, noisy_from_pb, pb.NoisyValue),
        (c, combined_value_to_pb, combined_value_from_pb, pb.CombinedValue),
        (o, odds_ratio_to_pb, odds_ratio_from_pb, pb.OddsRatio),
        (b, budget_to_pb, budget_from_pb, pb.BudgetStatus),
    ):
        wire = to_pb(value)  # type: ignore[operator]
        assert from_pb(wire) == value  # type: ignore[operator]
        again = message.FromString(_bytes(wire))
        assert _bytes(to_pb(from_pb(again))) == _bytes(wire)  # type: ignore[operator]


def test_an_absent_combined_estimate_stays_absent_on_the_wire() -> None:
    assert not combined_value_to_pb(res.CombinedValue(not_computed="suppressed")).HasField("estimate")
    zero = combined_value_to_pb(res.CombinedValue(estimate=0.0))
    assert zero.HasField("estimate") and combined_value_from_pb(zero).estimate == 0.0


@settings(max_examples=200)
@given(site_results, combinations)
def test_each_kinds_results_round_trip_and_name_their_kind(r: res.QueryResult, c: res.CombinedResult) -> None:
    wire = result_to_pb(r)
    assert for_pb(wire) is for_result(r) is KINDS[r.kind]
    assert result_from_pb(pb.QueryResult.FromString(_bytes(wire))) == r
    assert _bytes(result_to_pb(result_from_pb(wire))) == _bytes(wire)  # type: ignore[arg-type]
    cwire = combined_to_pb(c)
    assert for_pb(cwire) is for_result(c) is KINDS[c.kind]
    assert combined_from_pb(pb.CombinedResult.FromString(_bytes(cwire))) == c
    assert _bytes(combined_to_pb(combined_from_pb(cwire))) == _bytes(cwire)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(bodies)
def test_release_bodies_round_trip_byte_for_byte(b: res.ReleaseBody) -> None:
    wire = release_body_to_pb(b)
    assert release_body_from_pb(pb.ReleaseBody.FromString(_bytes(wire))) == b
    assert _bytes(release_body_to_pb(release_body_from_pb(wire))) == _bytes(wire)
    assert wire.HasField("result") == (b.result is not None)
    assert wire.HasField("budget_after") == (b.budget_after is not None)


def test_a_result_naming_no_kind_is_none() -> None:
    assert result_from_pb(pb.QueryResult()) is None and combined_from_pb(pb.CombinedResult()) is None


def test_every_kind_has_its_result_and_combined_types() -> None:
    """Each ``Kind`` names exactly one site result type and one combination type, both in its kind's module and
    on ``genogate.results``' bases."""
    site = {t.kind for t in (co.CohortCountResult, af.AlleleFrequencyResult, gc.GenotypeCountsResult)}
    site |= {ct.CaseControlResult.kind, cc.CarrierCountResult.kind}
    combined = {t.kind for t in (co.CombinedCohortCount, af.CombinedAlleleFrequency, gc.CombinedGenotypeCounts)}
    combined |= {ct.CombinedCaseControl.kind, cc.CombinedCarrierCount.kind}
    assert site == combined == set(Kind)
    for kind in Kind:
        k = KINDS[kind]
        assert k.result_type.kind is kind and issubclass(k.result_type, res.QueryResult)
        assert k.combined_type.kind is kind and issubclass(k.combined_type, res.CombinedResult)


# The node's values as it built them before these types: a pb.NoisyValue set field by field.


def _old_value(noisy_count: int, scale: float, stddev: float, mechanism: int, k: int, half: float) -> pb.NoisyValue:
    base = pb.NoisyValue(noise_scale=scale, noise_stddev=stddev, mechanism=mechanism, threshold=k)  # type: ignore[arg-type]
    if k > 0 and noisy_count < k:
        base.below_threshold = True
        return base
    base.estimate = noisy_count
    base.ci95_low, base.ci95_high = noisy_count - half, noisy_count + half
    return base


@settings(max_examples=300)
@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.floats(min_value=0.01, max_value=1e6),
    st.floats(min_value=0.01, max_value=1e6),
    st.sampled_from(res.MECHANISMS),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=10**6),
)
def test_the_nodes_values_serialise_exactly_as_before(
    n: int, scale: float, stddev: float, mechanism: str, k: int, half: int
) -> None:
    wire_mechanism = {"discrete_laplace": pb.NOISE_MECHANISM_DISCRETE_LAPLACE}.get(
        mechanism, pb.NOISE_MECHANISM_DISCRETE_GAUSSIAN
    )
    old = _old_value(n, scale, stddev, wire_mechanism, k, half)
    below = k > 0 and n < k
    new = (
        res.NoisyValue(noise_scale=scale, below_threshold=True, threshold=k, mechanism=mechanism, noise_stddev=stddev)
        if below
        else res.NoisyValue(n, scale, n - half, n + half, False, k, mechanism, stddev)
    )
    assert _bytes(noisy_to_pb(new)) == _bytes(old)
    variant = Variant("1", 100, "A", "G")
    old_result = pb.QueryResult(
        allele_frequency=pb.AlleleFrequencyResult(
            variants=[
                pb.AlleleCounts(
                    variant=pb.Variant(chrom="1", pos=100, ref="A", alt="G"), allele_count=old, allele_number=old
                )
            ]
        )
    )
    new_result = af.AlleleFrequencyResult((af.AlleleCounts(variant, new, new),))
    assert _bytes(result_to_pb(new_result)) == _bytes(old_result)


# Fixed results of every kind, serialised, against digests computed on main before each kind's result types and
# converters moved into its module (issue 14 item 2): the move changed no byte of any result, combination or
# release body.


def _nv(i: int) -> res.NoisyValue:
    return res.NoisyValue(100 + i, 1.5 + i, 90.25 + i, 110.75 + i, False, 5, "discrete_laplace", 2.1213 + i)


def _cv(i: int) -> res.CombinedValue:
    return res.CombinedValue(200.5 + i, 180.0 + i, 221.0 + i, 4.5, 1, 3, 5, 200.0 + i, "")


_BELOW = res.NoisyValue(0, 3.0, 0.0, 0.0, True, 10, "discrete_gaussian", 3.7)
_NC = res.CombinedValue(None, 0.0, 0.0, 0.0, 2, 3, 10, 12.0, "suppressed at 2 sites")
_V1, _V2 = Variant("1", 55516888, "G", "A"), Variant("X", 100, "AT", "A")


def _digest(messages: list[Any]) -> str:
    import hashlib

    h = hashlib.sha256()
    for m in messages:
        h.update(_bytes(m))
        h.update(b"|")
    return h.hexdigest()


def test_fixed_results_of_every_kind_serialise_as_on_main_before_the_move() -> None:
    site: list[res.QueryResult] = [
        co.CohortCountResult(_nv(0)),
        co.CohortCountResult(_BELOW),
        af.AlleleFrequencyResult(()),
        af.AlleleFrequencyResult((af.AlleleCounts(_V1, _nv(1), _nv(2)), af.AlleleCounts(_V2, _BELOW, _nv(3)))),
        gc.GenotypeCountsResult(_V1, _nv(0), _nv(1), _BELOW, _nv(3), _nv(4), _nv(5)),
        ct.CaseControlResult((ct.CaseControlTable(_V1, _nv(0), _nv(1), _BELOW, _nv(3)),)),
        ct.CaseControlResult(()),
        cc.CarrierCountResult(_nv(7)),
    ]
    combined: list[res.CombinedResult] = [
        co.CombinedCohortCount(_cv(0)),
        co.CombinedCohortCount(_NC),
        af.CombinedAlleleFrequency(
            (af.CombinedAlleleCounts(_V1, _cv(1), _cv(2), _NC), af.CombinedAlleleCounts(_V2, _cv(3), _cv(4), _cv(5)))
        ),
        af.CombinedAlleleFrequency(()),
        gc.CombinedGenotypeCounts(_V2, _cv(0), _NC, _cv(2), _cv(3), _cv(4), _cv(5)),
        ct.CombinedCaseControl(
            (
                ct.CombinedCaseControlTable(_V1, _cv(0), _cv(1), _cv(2), _NC, res.OddsRatio(2.5, 1.25, 5.0, 0.35, "")),
                ct.CombinedCaseControlTable(
                    _V2, _cv(0), _cv(1), _cv(2), _cv(3), res.OddsRatio(not_computed="cell suppressed")
                ),
            )
        ),
        cc.CombinedCarrierCount(_NC),
    ]
    budget = res.BudgetStatus("S1", "site-a", 5.0, 1.5, 3.5, 7, 2.0, 1.0, 365, 3)
    bodies = [
        res.ReleaseBody(
            "q1",
            "S1",
            "site-a",
            b"\x01" * 32,
            r,
            0.5,
            1e-9,
            i % 2 == 0,
            "q0" if i % 2 else "",
            budget if i % 3 else None,
            1764700000000 + i,
            0.5,
            1e-9,
            3,
        )
        for i, r in enumerate(site)
    ] + [res.ReleaseBody()]
    assert {k.kind for k in site} == {k.kind for k in combined} == set(Kind)
    assert _digest([result_to_pb(r) for r in site]) == (
        "9f08a7d050aa0ce320fdc296a48e7dc5509978acdaf0993465f84f90e18e6bc8"
    )
    assert _digest([combined_to_pb(c) for c in combined]) == (
        "5a4158c0c2856d1eaf47eb71a0422a33195d9e42afe10158370160e9e0d9d6e2"
    )
    assert _digest([release_body_to_pb(b) for b in bodies]) == (
        "03bfafba31cc4a320938a5a7bad888e19dce10d241915194d359ac09d4391531"
    )
    for r in site:
        assert result_from_pb(result_to_pb(r)) == r
    for c in combined:
        assert combined_from_pb(combined_to_pb(c)) == c
