"""The coordinator's checks before it decodes or fans out a query (``coordinator.queries``): the study id read
from an envelope's top-level wire fields alone, and the sentence that says what a query charged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.fanout import SiteResult
from coordinator.queries import MAX_TOP_LEVEL_FIELDS, charge_note, study_id_of
from genogate.errors import InvalidArgument, Reason
from genogate.wire.v1 import common_pb2 as pb

TEXT = st.text(max_size=40)


@settings(max_examples=500, deadline=None)
@given(
    study=TEXT,
    query_id=TEXT,
    sites=st.lists(TEXT, max_size=8),
    epsilon=st.floats(allow_nan=True),
    nonce=st.binary(max_size=32),
    variants=st.integers(0, 20),
    extra_study=st.one_of(st.none(), TEXT),
)
def test_the_study_id_read_from_the_wire_is_what_protobuf_decodes(
    study: str, query_id: str, sites: list[str], epsilon: float, nonce: bytes, variants: int, extra_study: str | None
) -> None:
    env = pb.QueryEnvelope(query_id=query_id, study_id=study, sites=sites, epsilon=epsilon, nonce=nonce)
    env.query.allele_frequency.variants.extend(pb.Variant(chrom="1", pos=i + 1) for i in range(variants))
    payload = env.SerializeToString()
    if extra_study is not None:  # a second study_id field after the rest: protobuf keeps the last one
        payload += pb.QueryEnvelope(study_id=extra_study).SerializeToString()
    assert study_id_of(payload) == pb.QueryEnvelope.FromString(payload).study_id


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",  # a truncated varint
        b"\x12\x05ab",  # a length past the end
        b"\x0b",  # wire type 3 (groups) is never ours
        b"\x12\x02\xff\xfe",  # a study id that is not UTF-8
        pb.QueryEnvelope(sites=["s"] * (MAX_TOP_LEVEL_FIELDS + 1)).SerializeToString(),  # bounded work
    ],
)
def test_malformed_or_overlong_wire_data_is_refused_typed(payload: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        study_id_of(payload)
    assert info.value.reason == Reason.INVALID_QUERY


def _answered(site: str, charged: float, stored: float = 0.0) -> SiteResult:
    body = pb.ReleaseBody(epsilon_charged=charged, from_store=bool(stored), original_epsilon_charged=stored or charged)
    return SiteResult(site, pb.SITE_STATUS_ANSWERED, body=body, attempts=1)


def test_the_charge_note_says_plainly_which_sites_charged_what() -> None:
    mixed = [
        _answered("site-a", 0.5),
        _answered("site-b", 0.0, stored=0.25),
        SiteResult("site-c", pb.SITE_STATUS_REFUSED, Reason.BUDGET_EXHAUSTED),
        SiteResult("site-d", pb.SITE_STATUS_TIMED_OUT, Reason.DEADLINE_EXCEEDED),
    ]
    assert charge_note(mixed) == (
        "charged: site-a ε 0.5; answered from a stored release at no charge: site-b (stored at ε 0.25); "
        "refused, charging nothing: site-c (budget_exhausted); no answer, may have charged (resend the same "
        "signed query to get its answer at no further cost): site-d"
    )
    refused = [SiteResult("site-a", pb.SITE_STATUS_REFUSED, Reason.EPSILON_OVER_CAP)]
    assert charge_note(refused) == "no site charged anything; refused, charging nothing: site-a (epsilon_over_cap)"


def test_a_stored_release_reports_the_epsilon_it_was_drawn_at_not_the_one_asked() -> None:
    stored = _answered("site-b", 0.0, stored=0.25).to_pb(with_release=False)
    assert (stored.from_store, stored.epsilon_charged, stored.stored_epsilon) == (True, 0.0, 0.25)
    fresh = _answered("site-a", 0.1).to_pb(with_release=False)
    assert (fresh.from_store, fresh.epsilon_charged, fresh.stored_epsilon) == (False, 0.1, 0.0)
