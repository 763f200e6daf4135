"""The coordinator's durable state: the ``CoordinatorState`` interface and its implementations."""

from coordinator.model import CommitteeMember, QueryRecord
from coordinator.state.interface import CoordinatorState
from coordinator.state.sqlite import SqliteCoordinatorState

__all__ = ["CommitteeMember", "CoordinatorState", "QueryRecord", "SqliteCoordinatorState"]
