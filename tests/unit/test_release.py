"""``node.release`` on its own: the noisy values a kind shapes its result from, the drawing through ``node.dp``
(OpenDP), the signed body; the service's use of them is tested in test_service.py."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import privacy
from genogate.signing import Signer, verify
from genogate.wire.v1 import common_pb2 as pb
from node import release
from node.dp import OpenDPNoise
from node.ledger import Charged

SENS = privacy.Sensitivity(l1=1, l2=1.0, length=3)
PLAN = privacy.plan(SENS, Decimal("0.5"), Decimal(0))


def test_a_value_below_k_is_reported_as_fewer_than_k_from_the_noisy_value() -> None:
    low = release.noisy_value(4, PLAN, 5)
    assert low.below_threshold and low.threshold == 5 and low.estimate == 0 and low.ci95_high == 0
    at = release.noisy_value(5, PLAN, 5)
    assert not at.below_threshold and at.estimate == 5
    assert at.ci95_low == pytest.approx(5 - PLAN.ci95_halfwidth) and at.ci95_high == pytest.approx(
        5 + PLAN.ci95_halfwidth
    )
    assert at.mechanism == "discrete_laplace" and at.noise_scale == PLAN.scale


def test_k_zero_reports_negative_noisy_values() -> None:
    v = release.noisy_value(-3, PLAN, 0)
    assert not v.below_threshold and v.estimate == -3 and v.threshold == 0


def test_a_sum_of_two_draws_has_the_union_bound_interval() -> None:
    v = release.sum_value(7, 8, PLAN, 5)
    half = 2 * privacy.halfwidth(PLAN, 0.025)
    assert v.estimate == 15 and v.ci95_high - v.estimate == pytest.approx(half)
    assert v.noise_stddev == pytest.approx(PLAN.stddev * 2**0.5)
    assert release.sum_value(2, 2, PLAN, 5).below_threshold  # thresholded on the noisy sum


def test_the_noiser_draws_with_the_plan_of_each_stage() -> None:
    wide = privacy.plan(SENS, Decimal("0.01"), Decimal(0))
    noiser = release.Noiser(OpenDPNoise(), 0, [SENS, SENS], [PLAN, wide])
    drawn = noiser.draw(np.array([10, 20, 30], dtype=np.int64), stage=1)
    assert drawn.dtype == np.int64 and drawn.shape == (3,)
    assert noiser.value(12, stage=1).noise_scale == wide.scale != PLAN.scale
    with pytest.raises(ValueError):  # a vector that does not fit the sensitivity is a bug, never drawn
        noiser.draw(np.array([1, 2], dtype=np.int64))


def test_the_signed_body_binds_the_request_and_states_what_was_paid() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    begun = Charged(7, epoch=2, original_epsilon=Decimal("0.5"), original_delta=Decimal(0), original_query_id="q0")
    body = release.release_body(
        query_id="q1",
        study_id="S1",
        site="site-a",
        query_sha256=b"\x01" * 32,
        result=pb.QueryResult().SerializeToString(),
        charged=(Decimal("0.5"), Decimal(0)),
        from_store=False,
        begun=begun,
        budget_after=pb.BudgetStatus(study_id="S1"),
        released_unix_ms=123,
    )
    out = release.sign(body, signer)
    verify(signer.public_raw, "genogate.v1.ReleaseBody", out.payload, out.node_signature)
    got = pb.ReleaseBody.FromString(out.payload)
    assert (got.query_sha256, got.epsilon_charged, got.consent_epoch, got.cached_query_id) == (b"\x01" * 32, 0.5, 2, "")
    assert out.node_key_id == signer.key_id
