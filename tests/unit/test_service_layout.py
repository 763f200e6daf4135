"""The node service's modules: ``node.service`` re-exports the names that callers (tests, bench, attacks)
import from it, as the very objects of ``node.policy``."""

from __future__ import annotations

import node.policy
import node.service


def test_the_service_reexports_policy_and_caller() -> None:
    from node.service import Caller, Policy, QueryService

    assert Policy is node.policy.Policy and Caller is node.policy.Caller
    assert QueryService.__module__ == "node.service"
    assert set(node.service.__all__) == {"Caller", "Policy", "QueryService"}
