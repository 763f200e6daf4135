"""How a combined answer with suppressed values reads: the table (``< k``, "suppressed at N of M sites",
derived values "not computed"), the JSON (``suppressed: true`` and the threshold), the SDK's ``Estimate``
attributes and the rows behind ``to_pandas``. Built from node releases through the real combination."""

from __future__ import annotations

import json

import pytest

from coordinator.combine import combine_results
from genogate.client import Estimate, QueryResult, result_of
from genogate.kinds import combined_to_pb, result_from_pb
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from tests.unit.test_combine import value_pb as value

K = 10


def _variant(pos: int) -> pb.Variant:
    return pb.Variant(chrom="1", pos=pos, ref="A", alt="G")


def _response(kind: int, results: list[pb.QueryResult]) -> QueryResult:
    bodies = [pb.ReleaseBody(site=f"s{i}", result=r) for i, r in enumerate(results)]
    combined = combine_results([result_from_pb(b.result) for b in bodies])
    sites = [pb.SiteOutcome(site=b.site, status=pb.SITE_STATUS_ANSWERED) for b in bodies]
    return result_of(
        cpb.RunQueryResponse(
            query_id="q1",
            study_id="S1",
            kind=kind,
            epsilon=0.5,
            combined=combined_to_pb(combined) if combined else None,
            sites=sites,
        )  # type: ignore[arg-type]
    )


def _af(*sites: tuple[int, int, int]) -> QueryResult:
    """Allele frequency of 1-100-A-G (per site: AC, AN) and 1-200-A-G (per site: AC, AN 1800)."""
    results = [
        pb.QueryResult(
            allele_frequency=pb.AlleleFrequencyResult(
                variants=[
                    pb.AlleleCounts(
                        variant=_variant(100), allele_count=value(a1, 2.0, k=K), allele_number=value(n, 2.0, k=K)
                    ),
                    pb.AlleleCounts(
                        variant=_variant(200), allele_count=value(a2, 2.0, k=K), allele_number=value(1800, 2.0, k=K)
                    ),
                ]
            )
        )
        for a1, n, a2 in sites
    ]
    return _response(pb.QUERY_KIND_ALLELE_FREQUENCY, results)


def _line(text: str, variant: str, quantity: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(variant) and f" {quantity} " in f"{line} ")


def test_a_value_every_site_suppressed_prints_fewer_than_k_and_no_midpoint() -> None:
    r = _af((3, 2000, 60), (-1, 2000, 4), (5, 2000, 30))  # 1-100: every site < 10; 1-200: one site < 10
    text = str(r)
    ac = _line(text, "1-100-A-G", "allele_count")
    assert "< 10 each" in ac and "suppressed at 3 of 3 sites" in ac
    assert ac.split()[2:5] == ["<", "10", "each"]  # the estimate column holds the bound, not a number
    partly = _line(text, "1-200-A-G", "allele_count")
    assert "90 + < 10" in partly and "suppressed at 1 of 3 sites" in partly
    for variant, cell in (("1-100-A-G", "allele_count"), ("1-200-A-G", "allele_count")):
        af = _line(text, variant, "allele_frequency")
        assert "not computed" in af and f"{cell} suppressed at" in af
    an = _line(text, "1-100-A-G", "allele_number")
    assert "6,000" in an and "suppressed" not in an


def test_one_site_suppressed_prints_plain_fewer_than_k() -> None:
    text = str(_af((4, 2000, 4)))
    ac = _line(text, "1-100-A-G", "allele_count")
    assert ac.split()[2:4] == ["<", "10"] and "each" not in ac and "suppressed at 1 of 1 site" in ac


def test_sdk_estimate_attributes() -> None:
    r = _af((3, 2000, 60), (-1, 2000, 4), (5, 2000, 30))
    ac = r.value("allele_count", "1-100-A-G")
    assert isinstance(ac, Estimate)
    assert (ac.estimate, ac.suppressed, ac.threshold, ac.released, ac.noise_stddev) == (None, True, K, None, None)
    assert (ac.sites_below_threshold, ac.sites, ac.ci95_low) == (3, 3, 0)
    assert ac.ci95_high >= 3 * (K - 1)  # the interval still says how large the count could be
    partly = r.value("allele_count", "1-200-A-G")
    assert (partly.estimate, partly.suppressed, partly.released, partly.sites_below_threshold) == (None, True, 90, 1)
    assert partly.ci95_low <= 90 <= partly.ci95_high
    af = r.value("allele_frequency", "1-100-A-G")
    assert af.estimate is None and af.not_computed == "allele_count suppressed at 3 of 3 sites"
    assert 0 == af.ci95_low < af.ci95_high < 0.01
    an = r.value("allele_number", "1-100-A-G")
    assert (an.estimate, an.suppressed, an.threshold, an.not_computed) == (6000, False, None, "")


def test_json_says_suppressed_with_the_threshold() -> None:
    doc = json.loads(json.dumps(_af((3, 2000, 60), (-1, 2000, 4), (5, 2000, 30)).to_json()))
    rows = {(v["variant"], v["quantity"]): v for v in doc["values"]}
    ac = rows[("1-100-A-G", "allele_count")]
    assert ac["suppressed"] is True and ac["threshold"] == K and ac["estimate"] is None
    assert ac["note"] == "suppressed at 3 of 3 sites" and (ac["sites_below_threshold"], ac["sites"]) == (3, 3)
    af = rows[("1-100-A-G", "allele_frequency")]
    assert af["estimate"] is None and af["note"] == "allele_count suppressed at 3 of 3 sites"
    an = rows[("1-100-A-G", "allele_number")]
    assert an["suppressed"] is False and an["threshold"] is None and an["estimate"] == 6000


def test_the_odds_ratio_of_a_suppressed_cell_is_not_computed() -> None:
    def table(case_alt: int) -> pb.QueryResult:
        t = pb.CaseControlTable(
            variant=_variant(100),
            case_alt=value(case_alt, 2.0, k=K),
            case_ref=value(400, 2.0, k=K),
            control_alt=value(60, 2.0, k=K),
            control_ref=value(900, 2.0, k=K),
        )
        return pb.QueryResult(case_control=pb.CaseControlResult(tables=[t]))

    r = _response(pb.QUERY_KIND_CASE_CONTROL, [table(2), table(7)])
    line = _line(str(r), "1-100-A-G", "odds_ratio")
    assert "not computed" in line and "case_alt suppressed at 2 of 2 sites" in line
    row = next(x for x in r.rows() if x["quantity"] == "odds_ratio")
    assert row["estimate"] is None and row["note"] == "case_alt suppressed at 2 of 2 sites"
    doc = r.to_json()["values"]
    assert next(x for x in doc if x["quantity"] == "odds_ratio")["ci95_low"] is None  # NaN becomes null
    released = _response(pb.QUERY_KIND_CASE_CONTROL, [table(20), table(30)])
    assert next(x for x in released.rows() if x["quantity"] == "odds_ratio")["estimate"] > 0


def test_to_pandas_keeps_suppressed_as_missing_with_the_flag() -> None:
    pd = pytest.importorskip("pandas")
    df = _af((3, 2000, 60), (-1, 2000, 4), (5, 2000, 30)).to_pandas()
    assert isinstance(df, pd.DataFrame)
    ac = df[(df.variant == "1-100-A-G") & (df.quantity == "allele_count")].iloc[0]
    assert pd.isna(ac.estimate) and bool(ac.suppressed) and ac.threshold == K


def test_rows_behind_to_pandas_have_one_shape() -> None:
    rows = _af((3, 2000, 60), (-1, 2000, 4), (5, 2000, 30)).rows()
    assert len({tuple(r) for r in rows}) == 1  # the same columns in every row
    assert {"estimate", "suppressed", "threshold", "sites_below_threshold", "sites", "note"} <= set(rows[0])


# A repeated question and refusals: what the table and the JSON say (issue 15) -----------------------------


def _with_sites(sites: list[pb.SiteOutcome], epsilon: float = 0.1) -> QueryResult:
    result = pb.QueryResult(cohort_count=pb.CohortCountResult(count=value(120, 2.0)))
    combined = combine_results([result_from_pb(result)])
    return result_of(
        cpb.RunQueryResponse(
            query_id="q2",
            study_id="S1",
            kind=pb.QUERY_KIND_COHORT_COUNT,
            epsilon=epsilon,
            combined=combined_to_pb(combined) if combined else None,
            sites=sites,
        )  # type: ignore[arg-type]
    )


def test_a_repeated_question_says_the_stored_epsilon_not_the_one_asked() -> None:
    stored = pb.SiteOutcome(site="site-a", status=pb.SITE_STATUS_ANSWERED, from_store=True, stored_epsilon=0.25)
    r = _with_sites([stored], epsilon=0.1)
    text = str(r)
    assert "answered from the stored release at ε 0.25 per site; nothing charged" in text.splitlines()[0]
    assert "epsilon 0.1" not in text and "ε 0.1" not in text
    assert "answered from the stored release at ε 0.25" in text.split("sites (1 of 1 answered):")[1]
    out = json.loads(json.dumps(r.to_json()))
    assert (out["from_store"], out["stored_epsilon"], out["epsilon"]) == (True, 0.25, 0.1)
    assert out["sites"][0]["from_store"] is True and out["sites"][0]["stored_epsilon"] == 0.25


def test_a_fresh_answer_says_the_epsilon_asked_and_mixed_sites_say_each_their_own() -> None:
    fresh = pb.SiteOutcome(site="site-a", status=pb.SITE_STATUS_ANSWERED, epsilon_charged=0.1)
    r = _with_sites([fresh], epsilon=0.1)
    assert "epsilon 0.1 per site" in str(r).splitlines()[0]
    assert (r.to_json()["from_store"], r.to_json()["stored_epsilon"]) == (False, None)
    assert r.to_json()["sites"][0]["stored_epsilon"] is None
    stored = pb.SiteOutcome(site="site-b", status=pb.SITE_STATUS_ANSWERED, from_store=True, stored_epsilon=0.5)
    mixed = _with_sites([fresh, stored], epsilon=0.1)
    text = str(mixed)
    assert "epsilon 0.1 per site" in text.splitlines()[0]  # site-a's values are at the ε asked
    assert "answered from the stored release at ε 0.5" in text and not mixed.from_store
    assert mixed.stored_epsilon is None


def test_per_site_refusals_show_their_reason_in_words_not_only_the_code() -> None:
    why = "this node does not publish its site list, so it answers no query over a region: name the variants instead"
    refused = [
        pb.SiteOutcome(site=s, status=pb.SITE_STATUS_REFUSED, reason=pb.ERROR_REASON_KIND_REFUSED, message=why)
        for s in ("site-a", "site-b")
    ]
    text = str(_with_sites(refused))
    assert "KIND_REFUSED" in text
    assert f"  site-a: {why}" in text.splitlines() and f"  site-b: {why}" in text.splitlines()
