"""The coordinator's durable state: the ``CoordinatorState`` interface, its implementations, and the factory
``open_state(config)`` that builds the one ``[state] backend`` names."""

from coordinator.model import CommitteeMember, QueryRecord, StateSummary
from coordinator.state.factory import BACKENDS, open_state, read_summary
from coordinator.state.interface import CoordinatorState
from coordinator.state.sqlite import SqliteCoordinatorState

__all__ = [
    "BACKENDS",
    "CommitteeMember",
    "CoordinatorState",
    "QueryRecord",
    "SqliteCoordinatorState",
    "StateSummary",
    "open_state",
    "read_summary",
]
