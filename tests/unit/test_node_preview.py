"""What a node's policy makes of a proposed study (``node.preview``, NodeService.DescribePolicy's answer), and
how the coordinator's preview turns a site's answer into problems and notes (``coordinator.preview``)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from coordinator.preview import preview, site_problems
from genogate.convert import proposal_from_pb
from genogate.errors import Reason
from genogate.query import Kind
from genogate.studies import KindPolicy, NodeInfo, SitePolicy, StudyProposal
from genogate.table import participants_text
from genogate.table import preview as preview_table
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from node.policy import Policy
from node.preview import MAX_KINDS, bucket, describe, kind_verdicts, purpose_verdict

POLICY = Policy(
    epsilon_per_query_cap=Decimal("1"),
    epsilon_per_study_cap=Decimal("4"),
    delta_per_query=Decimal("1e-9"),
    delta_per_study_cap=Decimal("1e-6"),
    min_reportable_count=5,
    allowed_kinds=frozenset(Kind),
    allowed_purposes=frozenset({"GRU", "HMB", "DS"}),
    max_variants_per_query=1000,
    rate_limit_per_study_per_minute=600,
    public_site_catalogue=False,
    preview_participants=True,  # opted in (the default is off)
)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, (0, 10)), (9, (0, 10)), (10, (10, 100)), (99, (10, 100)), (100, (100, 1000)), (12_345, (10_000, 100_000))],
)
def test_participants_are_reported_as_their_decade(n: int, expected: tuple[int, int]) -> None:
    assert bucket(n) == expected
    low, below = bucket(n)
    assert low <= n < below


def test_one_participant_more_or_less_moves_the_bucket_only_at_a_power_of_ten() -> None:
    moved = [n for n in range(1, 20_000) if bucket(n) != bucket(n - 1)]
    assert moved == [10, 100, 1000, 10_000]


def test_kinds_refused_say_why_and_conditions_are_notes() -> None:
    only_counts = dataclasses.replace(POLICY, allowed_kinds=frozenset({Kind.COHORT_COUNT, Kind.CARRIER_COUNT}))
    verdicts = kind_verdicts(only_counts, [2, 1, 5, 99, 1])
    assert [v.kind for v in verdicts] == [Kind.ALLELE_FREQUENCY, Kind.COHORT_COUNT, Kind.CARRIER_COUNT, 99]
    af, cc, carriers, unknown = verdicts
    assert not af.allowed and af.refusal is Reason.KIND_REFUSED
    assert af.note == (
        "this node's policy does not answer allele-frequency ([policy] allowed_kinds: carrier_count, cohort_count)"
    )
    assert cc.allowed and cc.note == ""
    assert (
        not carriers.allowed and "takes a region" in carriers.note and "public_site_catalogue = false" in carriers.note
    )
    assert not unknown.allowed and unknown.note == "this node does not know query kind 99"
    public = dataclasses.replace(POLICY, public_site_catalogue=True)
    assert all(v.allowed and not v.note for v in kind_verdicts(public, [k.value for k in Kind]))
    named = {v.kind: v for v in kind_verdicts(POLICY, [k.value for k in Kind])}
    assert named[Kind.ALLELE_FREQUENCY].allowed and "named variants only" in named[Kind.ALLELE_FREQUENCY].note
    assert len(kind_verdicts(POLICY, list(range(1000)))) == MAX_KINDS  # bounded work


def test_purposes_follow_the_rule_every_query_is_held_to() -> None:
    assert purpose_verdict(POLICY, "HMB;NPU") == (("HMB", frozenset({"NPU"})), "")
    assert purpose_verdict(POLICY, "DS-C50")[0] == ("DS-C50", frozenset())  # DS admits every disease
    parsed, why = purpose_verdict(POLICY, "POA")
    assert (
        parsed is None
        and why == "this node's policy does not accept the purpose POA ([policy] allowed_purposes: DS, GRU, HMB)"
    )
    parsed, why = purpose_verdict(POLICY, "NPU")
    assert parsed is None and why.startswith("the purpose 'NPU' is not one: ")


def test_the_count_is_asked_only_when_the_purpose_is_accepted_and_the_policy_publishes_it() -> None:
    asked: list[object] = []

    def consenting(purpose: tuple[str, frozenset[str]]) -> int:
        asked.append(purpose)
        return 1234

    args = {"name": "n", "genome_build": "GRCh38", "version": "v", "kinds": [1], "consenting": consenting}
    assert describe(POLICY, purpose="HMB", **args).participants == (1000, 10_000)  # type: ignore[arg-type]
    assert describe(POLICY, purpose="POA", **args).participants == (0, 0)  # type: ignore[arg-type]
    silent = dataclasses.replace(POLICY, preview_participants=False)
    assert describe(silent, purpose="HMB", **args).participants == (0, 0)  # type: ignore[arg-type]
    assert asked == [("HMB", frozenset())]


# The coordinator's side ------------------------------------------------------------------------------------

NODES = {n: NodeInfo(n, f"{n}:7000", "ab" * 32, "GRCh38") for n in ("site-a", "site-b")}


def _said(**overrides: object) -> SitePolicy:
    fields: dict[str, object] = {
        "name": "site-a",
        "genome_build": "GRCh38",
        "version": "0.1.0",
        "purpose_accepted": True,
        "purpose_reason": "",
        "kinds": (KindPolicy(Kind.COHORT_COUNT, True),),
        "epsilon_per_query_cap": 1.0,
        "epsilon_per_query_min": 0.001,
        "epsilon_total_cap": 4.0,
        "epsilon_per_researcher_cap": 8.0,
        "epsilon_per_node_cap": 100.0,
        "budget_period_days": 365,
        "participants_at_least": 100,
        "participants_below": 1000,
    }
    fields.update(overrides)
    return SitePolicy(**fields)  # type: ignore[arg-type]


def _proposal(**overrides: object) -> StudyProposal:
    fields: dict[str, object] = {
        "title": "t",
        "purpose": "HMB",
        "kinds": [pb.QUERY_KIND_COHORT_COUNT],
        "sites": ["site-a", "site-b"],
        "epsilon_total_per_site": 2.0,
        "epsilon_per_query_cap": 0.5,
        "duration_days": 30,
    }
    fields.update(overrides)
    return proposal_from_pb(cpb.StudyProposal(**fields))  # type: ignore[arg-type]


def test_a_build_other_than_registered_or_asked_is_a_problem() -> None:
    other = _said(genome_build="GRCh37")
    problems, _ = site_problems("site-a", other, registered_build="GRCh38", assembly="GRCh38", cap=Decimal("0.5"))
    assert problems == ["site-a: serves GRCh37 but is registered as GRCh38: the operator must update its registration"]
    problems, _ = site_problems("site-a", other, registered_build="GRCh37", assembly="GRCh38", cap=Decimal("0.5"))
    assert problems == ["site-a: serves GRCh37, and the study asks for GRCh38"]
    assert site_problems("site-a", _said(), registered_build="GRCh38", assembly="", cap=Decimal("0.5")) == ([], [])


def test_a_site_that_accepts_everything_adds_no_problem_and_its_caps_are_used() -> None:
    out = preview(_proposal(), NODES, policies={"site-a": _said(), "site-b": _said(name="site-b")})
    assert out.problems == ()
    a = out.sites[0]
    assert a.reachable and a.purpose_accepted and a.epsilon_total_cap == 4.0 and a.epsilon_per_query_cap == 1.0
    assert (a.participants_at_least, a.participants_below, a.genome_build) == (100, 1000, "GRCh38")


def test_refusals_and_an_unreachable_site_are_problems_with_their_reasons() -> None:
    refusing = _said(
        name="site-b",
        purpose_accepted=False,
        purpose_reason="this node's policy does not accept the purpose HMB ([policy] allowed_purposes: GRU)",
        kinds=(KindPolicy(Kind.COHORT_COUNT, False, int(Reason.KIND_REFUSED), "not here"),),
        epsilon_per_query_cap=0.25,
    )
    out = preview(
        _proposal(), NODES, policies={"site-a": "failed UNAVAILABLE: the site is unreachable", "site-b": refusing}
    )
    assert list(out.problems) == [
        "site-a: could not be asked (failed UNAVAILABLE: the site is unreachable)",
        "site-b: this node's policy does not accept the purpose HMB ([policy] allowed_purposes: GRU)",
        "site-b: refuses cohort_count: not here",
        "site-b: the per-query cap ε 0.5 is above the site's cap of ε 0.25 per query: queries asking more are "
        "refused there",
    ]
    a, b = out.sites
    assert not a.reachable and a.note.startswith("failed UNAVAILABLE") and b.kinds_refused == (Kind.COHORT_COUNT,)


def test_the_table_prints_what_each_site_said_and_the_half_width_as_its_note_does() -> None:
    out = preview(_proposal(), NODES, policies={"site-a": _said(), "site-b": "failed UNAVAILABLE: down"})
    text = preview_table(out)
    row_a = next(line for line in text.splitlines() if line.startswith("site-a ") and "GRCh38" in line)
    assert row_a.split()[-2:] == ["100-999", f"±{out.sites[0].count_ci95_half_width:.3g}"]
    assert f"each count {row_a.split()[-1]} (95%)" in text
    assert text.index("notes:") < text.index("problems:")
    assert participants_text(0, 10) == "<10" and participants_text(0, 0) is None
    assert participants_text(1000, 10_000) == "1,000-9,999"
