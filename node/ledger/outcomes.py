"""What the ledger answers, as plain frozen dataclasses: the outcome of ``Ledger.begin`` (``Charged``, ``Pending``
or ``Answered``), a study's ``BudgetStatus``, one recorded query id (``LedgerEntry``) and a study's spent
totals (``StudySpent``). Amounts are exact ``Decimal`` (``node.ledger.amounts``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class BudgetStatus:
    """A study's budget at this node. ``epsilon_cap``/``delta_cap`` are the caps as enforced (rounded down
    to 1e-12); ``queries_answered`` counts distinct query ids with a stored result, zero-cost replays of an
    answered canonical query included, idempotent retries not (they reuse a query id)."""

    study_id: str
    epsilon_cap: Decimal
    epsilon_spent: Decimal
    epsilon_remaining: Decimal
    delta_cap: Decimal
    delta_spent: Decimal
    queries_answered: int
    researcher_epsilon_spent: Decimal = Decimal(0)
    """ε the researcher asked about spent at this node across all studies over the budget window."""


@dataclass(frozen=True)
class Charged:
    """A new durable charge was made (or a suspect one paid again): the caller now draws noise and calls
    ``complete()``. This call paid the ε and δ it asked for."""

    charge_id: int
    epoch: int = field(default=0, compare=False)
    """The consent epoch the charge belongs to."""
    original_epsilon: Decimal = field(default=Decimal(0), compare=False)
    """ε and δ the charge was first made with (by ``original_query_id``)."""
    original_delta: Decimal = field(default=Decimal(0), compare=False)
    original_query_id: str = field(default="", compare=False)


@dataclass(frozen=True)
class Pending:
    """Charged earlier but no result stored yet (the node died between charge and store, or an identical
    query is being computed): the caller computes and calls ``complete()``; this call paid nothing."""

    charge_id: int
    epoch: int = field(default=0, compare=False)
    original_epsilon: Decimal = field(default=Decimal(0), compare=False)
    original_delta: Decimal = field(default=Decimal(0), compare=False)
    original_query_id: str = field(default="", compare=False)


@dataclass(frozen=True)
class Answered:
    """The stored result; this call paid nothing. ``original_query_id`` is the query id that paid for it;
    ``from_store`` is True when the asking query id did not (a zero-cost replay, or a retry of one: a retry
    gets its first answer). ``epoch`` and the original charge describe the charge (not compared)."""

    result: bytes
    original_query_id: str
    from_store: bool
    epoch: int = field(default=0, compare=False)
    original_epsilon: Decimal = field(default=Decimal(0), compare=False)
    original_delta: Decimal = field(default=Decimal(0), compare=False)


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded query id, for operators (``Ledger.history``). A replay shows ε = δ = 0."""

    query_id: str
    payload_sha256: str
    canonical_sha256: str
    charge_id: int
    original_query_id: str
    epsilon_charged: Decimal
    delta_charged: Decimal
    received_ms: int
    answered: bool
    researcher: str = ""
    """Who the charge is attributed to ('' for charges made before schema version 4)."""
    epoch: int = 0
    caller: str = ""


@dataclass(frozen=True)
class StudySpent:
    study_id: str
    epsilon_spent: Decimal
    delta_spent: Decimal
    queries_answered: int
