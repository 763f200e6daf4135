"""Results between domain values (``genogate.results``) and wire messages (``genogate.convert``, its
"Results" section): round trips over generated values both ways (domain -> wire -> domain is the identity;
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
    combined_from_pb,
    combined_to_pb,
    combined_value_from_pb,
    combined_value_to_pb,
    noisy_from_pb,
    noisy_to_pb,
    odds_ratio_from_pb,
    odds_ratio_to_pb,
    release_body_from_pb,
    release_body_to_pb,
    result_from_pb,
    result_to_pb,
)
from genogate.kinds import KINDS, for_pb, for_result
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
    st.builds(res.CohortCountResult, noisy),
    st.builds(res.AlleleFrequencyResult, _tuple(st.builds(res.AlleleCounts, variants, noisy, noisy))),
    st.builds(res.GenotypeCountsResult, variants, noisy, noisy, noisy, noisy, noisy, noisy),
    st.builds(res.CaseControlResult, _tuple(st.builds(res.CaseControlTable, variants, noisy, noisy, noisy, noisy))),
    st.builds(res.CarrierCountResult, noisy),
)
cv = combined_values
combinations: st.SearchStrategy[res.CombinedResult] = st.one_of(
    st.builds(res.CombinedCohortCount, cv),
    st.builds(res.CombinedAlleleFrequency, _tuple(st.builds(res.CombinedAlleleCounts, variants, cv, cv, cv))),
    st.builds(res.CombinedGenotypeCounts, variants, cv, cv, cv, cv, cv, cv),
    st.builds(res.CombinedCaseControl, _tuple(st.builds(res.CombinedCaseControlTable, variants, cv, cv, cv, cv, odds))),
    st.builds(res.CombinedCarrierCount, cv),
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
    """Each ``Kind`` names exactly one site result type and one combination type in ``genogate.results``."""
    site = {t.kind for t in (res.CohortCountResult, res.AlleleFrequencyResult, res.GenotypeCountsResult)}
    site |= {res.CaseControlResult.kind, res.CarrierCountResult.kind}
    combined = {t.kind for t in (res.CombinedCohortCount, res.CombinedAlleleFrequency, res.CombinedGenotypeCounts)}
    combined |= {res.CombinedCaseControl.kind, res.CombinedCarrierCount.kind}
    assert site == combined == set(Kind)


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
    new_result = res.AlleleFrequencyResult((res.AlleleCounts(variant, new, new),))
    assert _bytes(result_to_pb(new_result)) == _bytes(old_result)
