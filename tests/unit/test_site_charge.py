"""What the coordinator reports as ε charged at a site (``SiteResult.epsilon_charged``): exactly what the
node's receipts say this fan-out cost, whichever attempt paid."""

from __future__ import annotations

import pytest

from coordinator.fanout import SiteResult
from genogate.wire.v1 import common_pb2 as pb


def outcome(attempts: int, **body: object) -> SiteResult:
    return SiteResult("site-a", pb.SITE_STATUS_ANSWERED, attempts=attempts, body=pb.ReleaseBody(**body))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempts", "body", "charged"),
    [
        (1, {"epsilon_charged": 0.5, "original_epsilon_charged": 0.5}, 0.5),  # charged now
        (1, {"from_store": True, "original_epsilon_charged": 0.5}, 0.0),  # a stored release
        (1, {"original_epsilon_charged": 0.5}, 0.0),  # joined another query id's charge: paid nothing
        (2, {"original_epsilon_charged": 0.5}, 0.5),  # a retry: the first attempt paid, its answer was lost
        (2, {"epsilon_charged": 0.5, "original_epsilon_charged": 0.5}, 0.5),  # the first attempt never arrived
        (2, {"from_store": True, "original_epsilon_charged": 0.5}, 0.0),
    ],
)
def test_the_charge_a_fan_out_reports_is_what_the_site_charged_for_it(
    attempts: int, body: dict[str, object], charged: float
) -> None:
    result = outcome(attempts, **body)
    assert result.epsilon_charged == charged
    assert result.to_pb(with_release=False).epsilon_charged == charged
