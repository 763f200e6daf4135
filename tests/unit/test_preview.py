"""The proposal dry run (``coordinator.preview``): the grant body an approval would issue, per-site noise at
the per-query cap from ``node.dp``, and human-readable problems and budget lines. Nothing is recorded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coordinator.preview import DAY_MS, grant_body, preview, proposal_problems, study_assembly
from genogate.query import Kind
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from node import dp

NOW_MS = 1_767_225_600_000
NODES = {
    name: cpb.NodeInfo(name=name, endpoint=f"{name}:7000", cert_sha256="ab" * 32, genome_build="GRCh38")
    for name in ("site-a", "site-b")
}
BUILDS = {name: n.genome_build for name, n in NODES.items()}


def proposal(**overrides: object) -> cpb.StudyProposal:
    fields: dict[str, object] = {
        "title": "BRCA2 carriers",
        "purpose": "HMB",
        "kinds": [pb.QUERY_KIND_ALLELE_FREQUENCY, pb.QUERY_KIND_COHORT_COUNT],
        "sites": ["site-a", "site-b"],
        "epsilon_total_per_site": 10.0,
        "epsilon_per_query_cap": 0.5,
        "duration_days": 90,
        "researcher_key_fingerprint": "f" * 64,
    }
    fields.update(overrides)
    return cpb.StudyProposal(**fields)  # type: ignore[arg-type]


def count_halfwidth(cap: str) -> float:
    return dp.plan(dp.SENSITIVITY[Kind.COHORT_COUNT](1), Decimal(cap), Decimal(0)).ci95_halfwidth


def test_a_valid_proposal_previews_its_grant_noise_and_budget() -> None:
    p = proposal()
    out = preview(p, NODES, researcher_public_key=b"k" * 32, revocation_epoch=3, now_ms=NOW_MS)
    assert out.grant_body == grant_body(
        p, study_id="", researcher_public_key=b"k" * 32, approved_ms=NOW_MS, revocation_epoch=3, assembly="GRCh38"
    )
    assert out.grant_body.assembly == "GRCh38"  # the build every site has
    body = out.grant_body
    assert body.study_id == "" and body.not_before_unix_ms == NOW_MS
    assert body.not_after_unix_ms == NOW_MS + 90 * DAY_MS
    assert (body.epsilon_total, body.epsilon_per_query_cap, body.revocation_epoch) == (10.0, 0.5, 3)

    assert [s.site for s in out.sites] == ["site-a", "site-b"]
    for site in out.sites:
        assert site.registered and not site.reachable and not site.purpose_accepted and not site.kinds_refused
        assert site.epsilon_total_cap == 10.0
        assert site.count_ci95_half_width == count_halfwidth("0.5") > 0

    af = dp.plan(dp.SENSITIVITY[Kind.ALLELE_FREQUENCY](1), Decimal("0.5"), Decimal(0)).ci95_halfwidth
    assert list(out.problems) == [
        f"allele_frequency: 20 queries of 1 variant at eps 0.5, each count ±{af:.3g} (95%)",
        f"cohort_count: 20 queries at eps 0.5, each count ±{count_halfwidth('0.5'):.3g} (95%)",
    ]


def test_budget_lines_count_exactly_at_the_cap() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in floats; read exactly it is 3.
    out = preview(proposal(epsilon_total_per_site=0.3, epsilon_per_query_cap=0.1, kinds=[1]), NODES, now_ms=NOW_MS)
    assert out.problems[0].startswith("cohort_count: 3 queries at eps 0.1,")


def test_unknown_sites_and_a_bad_purpose_are_problems() -> None:
    out = preview(proposal(sites=["site-a", "site-x"], purpose="DS"), NODES, now_ms=NOW_MS)
    assert [(s.site, s.registered) for s in out.sites] == [("site-a", True), ("site-x", False)]
    assert "unknown sites: site-x" in out.problems
    assert any(p.startswith("purpose 'DS': DS needs a disease") for p in out.problems)


def test_caps_over_the_total_are_a_problem_and_buy_nothing() -> None:
    out = preview(proposal(epsilon_per_query_cap=11.0), NODES, now_ms=NOW_MS)
    assert list(out.problems) == ["epsilon_per_query_cap 11.0 exceeds epsilon_total_per_site 10.0"]
    assert out.sites[0].count_ci95_half_width == count_halfwidth("11.0")


@pytest.mark.parametrize("cap", [0.0, -1.0, float("nan"), float("inf"), 2e6])
def test_unusable_caps_give_no_noise_figure(cap: float) -> None:
    out = preview(proposal(epsilon_per_query_cap=cap), NODES, now_ms=NOW_MS)
    assert all(s.count_ci95_half_width == 0.0 for s in out.sites)
    assert any("epsilon_per_query_cap must be a positive finite number" in p for p in out.problems)
    assert not any("queries" in p for p in out.problems)


def test_a_huge_but_allowed_cap_reports_no_noise_rather_than_minus_infinity() -> None:
    out = preview(proposal(epsilon_total_per_site=1e6, epsilon_per_query_cap=1e6, kinds=[1]), NODES, now_ms=NOW_MS)
    assert out.sites[0].count_ci95_half_width >= 0.0
    assert out.problems[0].startswith("cohort_count: 1 query at eps 1000000.0, each count ±0 (95%)")


def test_proposal_problems_is_empty_for_a_valid_proposal() -> None:
    assert proposal_problems(proposal(), BUILDS) == []
    assert proposal_problems(proposal(epsilon_per_query_cap=10.0, duration_days=3650), BUILDS) == []


def test_a_study_has_one_genome_build() -> None:
    """The proposal's assembly, else the one its sites share; sites on different builds, or a proposal on
    another build than its sites, are problems (liftover is out of scope)."""
    mixed = {"site-a": "GRCh37", "site-b": "GRCh38"}
    assert study_assembly(proposal(), BUILDS) == ("GRCh38", [])
    assert study_assembly(proposal(assembly="GRCh38"), BUILDS) == ("GRCh38", [])
    assert study_assembly(proposal(sites=["site-a"]), mixed) == ("GRCh37", [])
    _, problems = study_assembly(proposal(), mixed)
    assert problems == [
        "the sites differ in genome build (site-a GRCh37, site-b GRCh38): a study's sites must share one build"
    ]
    assert study_assembly(proposal(assembly="GRCh37"), BUILDS)[1] == [
        "the study asks for GRCh37 but its sites' data is on GRCh38"
    ]
    assert "is not one of GRCh37, GRCh38" in study_assembly(proposal(assembly="hg19"), BUILDS)[1][0]
    assert problems[0] in proposal_problems(proposal(), mixed)
    out = preview(proposal(), {n: cpb.NodeInfo(name=n, genome_build=b) for n, b in mixed.items()}, now_ms=NOW_MS)
    assert problems[0] in out.problems and out.grant_body.assembly == ""
