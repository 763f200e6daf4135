"""``open_state(config)``: the ``CoordinatorState`` implementation ``[state] backend`` names, and
``read_summary(settings)``: the same state's summary for ``genogate-coordinator status``, read-only.

Adding an implementation (PostgreSQL, for replicated coordinators) means: one class keeping the contract of
``coordinator.state.interface.CoordinatorState``, run through ``tests/conformance/test_coordinator_state.py``;
one more choice in ``coordinator.config.StateBackend`` (with its settings in ``StateSettings``); and one more
branch in each function here. Nothing else in the coordinator names an implementation.
"""

from __future__ import annotations

from coordinator.config import CoordinatorConfig, StateSettings
from coordinator.model import StateSummary
from coordinator.state import sqlite
from coordinator.state.interface import CoordinatorState
from genogate.errors import ConfigError
from genogate.signing import Signer

BACKENDS = ("sqlite",)


def _unknown(backend: str) -> ConfigError:
    return ConfigError(f"[state] backend: unknown coordinator state {backend!r}; backends are {', '.join(BACKENDS)}")


def open_state(config: CoordinatorConfig) -> CoordinatorState:
    """The state ``config.state`` names, signing grants and revocation lists with ``[committee] signing_key``
    and requiring ``[committee] approvals_required`` approvals of the studies proposed from now on."""
    backend = config.state.backend
    if backend not in BACKENDS:  # the config loader refuses other values; this guards hand-built configs
        raise _unknown(backend)
    signer = Signer.from_pem_file(config.committee.signing_key)
    return sqlite.SqliteCoordinatorState(config.state.path, signer, config.committee.approvals_required)


def read_summary(settings: StateSettings) -> StateSummary:
    """Studies per state, researchers, federated queries and registered nodes, read without changing or
    creating anything (``StoreError`` if the state cannot be read)."""
    if settings.backend not in BACKENDS:
        raise _unknown(settings.backend)
    return sqlite.read_summary(settings.path)
