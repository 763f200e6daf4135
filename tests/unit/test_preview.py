"""The proposal dry run (``coordinator.preview``): the grant body an approval would issue, per-site noise at
the per-query cap from ``genogate.privacy``, and human-readable problems and budget lines. Nothing is recorded."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from coordinator.preview import DAY_MS, grant_body, preview, proposal_problems, study_assembly
from genogate import privacy
from genogate.convert import grant_terms_to_pb, proposal_from_pb
from genogate.kinds import KINDS
from genogate.query import Kind
from genogate.studies import GrantTerms, NodeInfo, StudyProposal, halfwidth_text
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb

NOW_MS = 1_767_225_600_000
NODES = {
    name: NodeInfo(name=name, endpoint=f"{name}:7000", cert_sha256="ab" * 32, genome_build="GRCh38")
    for name in ("site-a", "site-b")
}
BUILDS = {name: n.genome_build for name, n in NODES.items()}


def proposal(**overrides: object) -> StudyProposal:
    """A domain proposal as the coordinator reads one: the wire message converted (any kind number kept)."""
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
    return proposal_from_pb(cpb.StudyProposal(**fields))  # type: ignore[arg-type]


def count_halfwidth(cap: str) -> float:
    return privacy.plan(KINDS[Kind.COHORT_COUNT].sensitivity(1), Decimal(cap), Decimal(0)).ci95_halfwidth


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
    # The per-site figure is one answer of the first requested kind: the very number its note prints.
    af = privacy.plan(KINDS[Kind.ALLELE_FREQUENCY].sensitivity(1), Decimal("0.5"), Decimal(0)).ci95_halfwidth
    for site in out.sites:
        assert site.count_ci95_half_width == af > 0
    assert out.problems == ()  # information is not a problem
    assert list(out.notes) == [
        f"allele_frequency: 20 queries of 1 variant at eps 0.5, each count ±{af:.3g} (95%)",
        f"cohort_count: 20 queries at eps 0.5, each count ±{count_halfwidth('0.5'):.3g} (95%)",
    ]
    assert halfwidth_text(out.sites[0].count_ci95_half_width) in out.notes[0]


def test_budget_lines_count_exactly_at_the_cap() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in floats; read exactly it is 3.
    out = preview(proposal(epsilon_total_per_site=0.3, epsilon_per_query_cap=0.1, kinds=[1]), NODES, now_ms=NOW_MS)
    assert out.notes[0].startswith("cohort_count: 3 queries at eps 0.1,")


def test_unknown_sites_and_a_bad_purpose_are_problems() -> None:
    out = preview(proposal(sites=["site-a", "site-x"], purpose="DS"), NODES, now_ms=NOW_MS)
    assert [(s.site, s.registered) for s in out.sites] == [("site-a", True), ("site-x", False)]
    assert "unknown sites: site-x" in out.problems
    assert any(p.startswith("purpose 'DS': DS needs a disease") for p in out.problems)


def test_caps_over_the_total_are_a_problem_and_buy_nothing() -> None:
    out = preview(proposal(epsilon_per_query_cap=11.0), NODES, now_ms=NOW_MS)
    assert list(out.problems) == ["epsilon_per_query_cap 11.0 exceeds epsilon_total_per_site 10.0"]
    assert out.notes == ()
    af = privacy.plan(KINDS[Kind.ALLELE_FREQUENCY].sensitivity(1), Decimal("11.0"), Decimal(0)).ci95_halfwidth
    assert out.sites[0].count_ci95_half_width == af


@pytest.mark.parametrize("cap", [0.0, -1.0, float("nan"), float("inf"), 2e6])
def test_unusable_caps_give_no_noise_figure(cap: float) -> None:
    out = preview(proposal(epsilon_per_query_cap=cap), NODES, now_ms=NOW_MS)
    assert all(s.count_ci95_half_width == 0.0 for s in out.sites)
    assert any("epsilon_per_query_cap must be a positive finite number" in p for p in out.problems)
    assert not any("queries" in p for p in out.problems + out.notes)


def test_a_huge_but_allowed_cap_reports_no_noise_rather_than_minus_infinity() -> None:
    out = preview(proposal(epsilon_total_per_site=1e6, epsilon_per_query_cap=1e6, kinds=[1]), NODES, now_ms=NOW_MS)
    assert out.sites[0].count_ci95_half_width >= 0.0
    assert out.notes[0].startswith("cohort_count: 1 query at eps 1000000.0, each count ±0 (95%)")


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
    out = preview(proposal(), {n: NodeInfo(n, f"{n}:7000", "", b) for n, b in mixed.items()}, now_ms=NOW_MS)
    assert problems[0] in out.problems and out.grant_body.assembly == ""


# Issue 13: never a crash, the committee's view of cumulative ε, and risk in words.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from coordinator.preview import (  # noqa: E402
    MAX_SITES,
    SiteCaps,
    caps_of,
    check_shape,
    over_researcher_caps,
)
from genogate import risk  # noqa: E402
from genogate.errors import InvalidArgument, Reason  # noqa: E402
from genogate.wire.v1 import node_pb2 as npb  # noqa: E402

EXTREME = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([5e-324, 1e-300, 1e-15, 1e308, -0.0, 0.0, 1e6, 1e6 + 1, 2.2250738585072014e-308]),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    total=EXTREME,
    cap=EXTREME,
    days=st.integers(0, 2**32 - 1),
    sites=st.lists(st.sampled_from(["site-a", "site-b", "", "x" * 100, "site-a"]), max_size=5),
    kinds=st.lists(st.integers(0, 7), max_size=4),
)
def test_a_preview_never_fails_whatever_the_numbers(
    total: float, cap: float, days: int, sites: list[str], kinds: list[int]
) -> None:
    """The function behind PreviewStudy answers problems for anything (358 of 10,000 such proposals raised
    decimal.DivisionImpossible before); the server refuses what check_shape refuses, typed."""
    p = proposal(epsilon_total_per_site=total, epsilon_per_query_cap=cap, duration_days=days, sites=sites, kinds=kinds)
    out = preview(p, NODES, now_ms=NOW_MS)
    assert len(out.sites) == len(sites)
    try:
        check_shape(p)
    except InvalidArgument as exc:
        assert exc.reason in (Reason.INVALID_STUDY, Reason.INVALID_EPSILON)
    else:
        assert out.risk is not None and 0 < out.risk.true_positive_rate_bound <= 1


def test_the_division_that_crashed_is_a_budget_line() -> None:
    out = preview(proposal(epsilon_total_per_site=1e6, epsilon_per_query_cap=5e-324, kinds=[1]), NODES, now_ms=NOW_MS)
    assert any("more than 10^12 queries" in p for p in out.notes)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"epsilon_total_per_site": float("nan")}, Reason.INVALID_EPSILON),
        ({"epsilon_per_query_cap": 1e308}, Reason.INVALID_EPSILON),
        ({"epsilon_per_query_cap": -1.0}, Reason.INVALID_EPSILON),
        ({"duration_days": 2**32 - 1}, Reason.INVALID_STUDY),
        ({"sites": []}, Reason.INVALID_STUDY),
        ({"sites": [f"s{i}" for i in range(MAX_SITES + 1)]}, Reason.INVALID_STUDY),
        ({"sites": ["x" * 10_000]}, Reason.INVALID_STUDY),
        ({"title": "t" * 10_001}, Reason.INVALID_STUDY),
    ],
)
def test_shapes_that_cannot_be_previewed_are_typed_refusals(overrides: dict[str, object], reason: Reason) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_shape(proposal(**overrides))
    assert info.value.reason == reason
    assert "x" * 100 not in info.value.message  # a caller's name is never echoed


def test_caps_come_from_what_a_site_publishes_and_zero_means_it_does_not_say() -> None:
    info = npb.GetNodeInfoResponse(
        epsilon_total_cap=8.0, epsilon_per_researcher_cap=20.0, budget_period_days=365, epsilon_per_query_min=0.01
    )
    assert caps_of(info) == SiteCaps(Decimal("8.0"), Decimal("20.0"), 365, Decimal("0.01"), True)
    assert caps_of(npb.GetNodeInfoResponse()) == SiteCaps(reachable=True)
    assert caps_of(None) == SiteCaps()


def test_committed_plus_proposed_over_a_sites_cap_is_named_with_its_numbers() -> None:
    caps = {
        "site-a": SiteCaps(per_study=Decimal(8), per_researcher=Decimal(20), period_days=365),
        "site-b": SiteCaps(per_researcher=Decimal(30)),
    }
    # 10 proposed counts as 8 at site-a (its per-study cap): 12 + 8 = 20 is exactly at the cap
    assert over_researcher_caps(Decimal(10), ["site-a", "site-b"], {"site-a": Decimal(12)}, caps) == []
    over = over_researcher_caps(Decimal(10), ["site-a", "site-b"], {"site-a": Decimal("12.5")}, caps)
    assert over == [
        "site-a: the researcher's approved studies there may spend ε 12.5 and this study 8, 20.5 in all, over the "
        "site's cap of ε 20 per researcher over 365 days"
    ]
    assert over_researcher_caps(Decimal(10), ["site-c"], {"site-c": Decimal(1000)}, caps) == []  # says no cap


def test_the_preview_shows_each_sites_caps_committed_and_spent_and_the_risk() -> None:
    caps = {
        "site-a": SiteCaps(Decimal(8), Decimal(20), 365, Decimal("0.01"), True),
        "site-b": SiteCaps(),
    }
    out = preview(
        proposal(epsilon_total_per_site=10.0, epsilon_per_query_cap=0.005),
        NODES,
        now_ms=NOW_MS,
        caps=caps,
        committed={"site-a": Decimal(15)},
        spent={"site-a": 3.5},
        epsilon_per_query_min=Decimal("0.001"),
    )
    a, b = out.sites
    assert (a.reachable, a.epsilon_total_cap, a.epsilon_per_researcher_cap) == (True, 8.0, 20.0)
    assert (a.researcher_epsilon_committed, a.researcher_epsilon_spent, a.budget_period_days) == (15.0, 3.5, 365)
    assert a.epsilon_per_query_min == 0.01
    assert (b.reachable, b.epsilon_total_cap, b.epsilon_per_researcher_cap, b.researcher_epsilon_spent) == (
        False,
        10.0,
        0.0,
        -1.0,
    )
    assert "site-a: refuses queries below ε 0.01, and the per-query cap 0.005 is below it" in out.problems
    assert any(p.startswith("site-a: the researcher's approved studies there may spend ε 15") for p in out.problems)
    assert not any(p.startswith("site-b:") for p in out.problems)  # 0.005 is above the coordinator's floor
    # The risk is for the most exposed site: site-b, which caps nothing, at the proposal's 10
    assert out.risk == risk.membership_risk(10.0) == out.grant_body.risk


def test_the_grant_carries_the_risk_of_the_budget_as_capped_by_its_sites() -> None:
    p = proposal(epsilon_total_per_site=10.0)
    caps = {"site-a": SiteCaps(per_study=Decimal(1)), "site-b": SiteCaps(per_study=Decimal("0.5"))}
    body = grant_body(
        p,
        study_id="S-1",
        researcher_public_key=b"k" * 32,
        approved_ms=NOW_MS,
        revocation_epoch=0,
        assembly="GRCh38",
        caps=caps,
    )
    assert body.risk == risk.membership_risk(1.0)
    assert body.risk is not None and "ε = 1 " in body.risk.statement


def test_kinds_this_version_does_not_know_are_problems_not_crashes() -> None:
    p = proposal(kinds=[pb.QUERY_KIND_COHORT_COUNT, 99, 0, 99])
    assert p.kinds == (Kind.COHORT_COUNT, 99, 0, 99)
    problems = proposal_problems(p, BUILDS)
    assert "unknown or unspecified query kinds: 99, 0, 99" in problems
    assert "a query kind is requested twice" in problems
    out = preview(p, NODES, now_ms=NOW_MS)
    assert out.grant_body.kinds == (Kind.COHORT_COUNT, 99, 0, 99)  # the terms name them as they were asked
    assert [line for line in out.notes if "queries" in line] == [
        f"cohort_count: 20 queries at eps 0.5, each count ±{count_halfwidth('0.5'):.3g} (95%)"
    ]


# The bytes the committee signs: ``grant_body`` states domain terms and ``coordinator.state`` serializes them
# (``grant_terms_to_pb(...).SerializeToString(deterministic=True)``). The SHA-256 of those bytes for fixed
# proposals, as main produced them when ``grant_body`` built the wire ``GrantBody`` itself (issue 14): a
# grant signed now is byte-identical to one signed before the refactor.
GRANT_CASES = [
    (
        dict(
            title="T",
            purpose="DUO:0000042",
            kinds=[1, 2, 3],
            sites=["site-a", "site-b"],
            epsilon_total_per_site=2.5,
            epsilon_per_query_cap=0.1,
            duration_days=30,
            researcher_key_fingerprint="fp123",
            description="d",
            per_site_breakdown=True,
            assembly="GRCh38",
        ),
        {"site-a": SiteCaps(per_study=Decimal("1.5"), reachable=True), "site-b": SiteCaps(per_study=Decimal("0.5"))},
        "7fde87e681e94157c51c42c8f480a1c53b2da533faebb657061e76e14d94b08e",
    ),
    (
        dict(
            title="T",
            purpose="DUO:0000042",
            kinds=[1, 2, 3],
            sites=["site-a", "site-b"],
            epsilon_total_per_site=2.5,
            epsilon_per_query_cap=0.1,
            duration_days=30,
            researcher_key_fingerprint="fp123",
            description="d",
            per_site_breakdown=True,
            assembly="GRCh38",
        ),
        None,
        "810f92f3017372f1a55c996d402908c34d3b0d758b2e11d74f0c240b23bc15af",
    ),
    (
        dict(
            title="U",
            purpose="DUO:0000007",
            kinds=[5, 99, 0, 5],
            sites=["x", "x"],
            epsilon_total_per_site=0.1 + 0.2,
            epsilon_per_query_cap=1e-3,
            duration_days=3650,
            researcher_key_fingerprint="fp",
        ),
        None,
        "e51ff1ca6ff3b3c6ecf369271268a1a045ac04ab8ee856b5d2bdebe161813c84",
    ),
    (
        dict(kinds=[1], sites=["a"], epsilon_total_per_site=float("nan"), epsilon_per_query_cap=0.0, duration_days=1),
        None,
        "06c5ace26325b686fd24802ddae9bf4d5854c27c380d9ae4bd97ec4734f9310c",
    ),
]


@pytest.mark.parametrize(("fields", "caps", "sha256"), GRANT_CASES)
def test_the_signed_grant_bytes_are_those_main_signed(
    fields: dict[str, object], caps: dict[str, SiteCaps] | None, sha256: str
) -> None:
    p = proposal_from_pb(cpb.StudyProposal(**fields))  # type: ignore[arg-type]
    terms = grant_body(
        p,
        study_id="S-0123456789ab",
        researcher_public_key=b"k" * 32,
        approved_ms=1_700_000_000_000,
        revocation_epoch=7,
        assembly=p.assembly or "GRCh37",
        caps=caps,
    )
    assert isinstance(terms, GrantTerms)
    payload = grant_terms_to_pb(terms).SerializeToString(deterministic=True)
    assert hashlib.sha256(payload).hexdigest() == sha256
