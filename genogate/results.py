"""Domain results: what a node releases and what the coordinator combines, as plain frozen dataclasses.

This module holds what every kind shares: ``NoisyValue``, ``CombinedValue``, ``OddsRatio``, ``BudgetStatus``,
``ReleaseBody`` and the bases ``QueryResult`` and ``CombinedResult``. Each kind's own result and combined
result (``CohortCountResult``, ``CombinedCohortCount``, ...) are defined in its module
(``genogate.kinds.<label>``) on those bases, beside its query. They carry exactly what their wire messages
(``genogate.v1`` ``NoisyValue``, ``QueryResult``, ``ReleaseBody``, ``BudgetStatus``, ``CombinedValue``,
``CombinedResult``) carry, field for field and under the same names. ``genogate.convert`` (its "Results"
section) converts the shared values both ways, each kind its own result (``QueryKind.result_to_pb`` ...), and
the registry (``genogate.kinds.result_to_pb``, ``release_body_to_pb`` ...) dispatches on the kind; only the
servicers, the clients and the node's release (signing) step call them. The kinds shape and combine these,
``coordinator.combine`` computes on them and the SDK returns them.

A value a node reported only as "fewer than k" has ``below_threshold`` set and zeros in its number fields:
read it through ``genogate.nodeclient.Released`` (``estimate`` None), never the zeros. A combined value
without an honest point estimate has ``estimate`` None and ``not_computed`` saying why.

Each kind's result and combined result names its ``Kind`` (``kind``, a class attribute), by which the
registry finds the kind module that shapes, combines, converts and prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from genogate.query import Kind

#: The noise mechanisms a value may name ("" when the wire named none or one this version does not know).
MECHANISMS = ("discrete_laplace", "discrete_gaussian")


@dataclass(frozen=True, slots=True)
class NoisyValue:
    """One noisy count a node released: the estimate and its 95% interval, or only "fewer than
    ``threshold``" (``below_threshold``, the number fields zero); the noise's mechanism, scale and stddev."""

    estimate: int = 0
    noise_scale: float = 0.0
    ci95_low: float = 0.0
    ci95_high: float = 0.0
    below_threshold: bool = False
    threshold: int = 0
    mechanism: str = ""
    noise_stddev: float = 0.0


# The bases of each kind's results ----------------------------------------------------------------------


class QueryResult:
    """One site's result of one kind: a frozen dataclass defined in its kind's module
    (``genogate.kinds.<label>``, the kind's ``QueryKind.result_type``) that names its ``Kind``."""

    __slots__ = ()
    kind: ClassVar[Kind]


class CombinedResult:
    """The combination of the sites' results of one kind: a frozen dataclass defined in its kind's module
    (``genogate.kinds.<label>``, the kind's ``QueryKind.combined_type``) that names its ``Kind``."""

    __slots__ = ()
    kind: ClassVar[Kind]


# A site's release and budget -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A study's budget at one site, as the site's own ledger reports it."""

    study_id: str = ""
    site: str = ""
    epsilon_cap: float = 0.0
    epsilon_spent: float = 0.0
    epsilon_remaining: float = 0.0
    queries_answered: int = 0
    researcher_epsilon_cap: float = 0.0
    researcher_epsilon_spent: float = 0.0
    budget_period_days: int = 0
    consent_epoch: int = 0


@dataclass(frozen=True, slots=True)
class ReleaseBody:
    """What a node signed for one query: the ids, the result, what this request was charged now and what
    the query was charged originally, whether it came from the store, the budget after, the release time
    and the consent epoch. ``result`` and ``budget_after`` are None where the wire message left them unset."""

    query_id: str = ""
    study_id: str = ""
    site: str = ""
    query_sha256: bytes = b""
    result: QueryResult | None = None
    epsilon_charged: float = 0.0
    delta_charged: float = 0.0
    from_store: bool = False
    cached_query_id: str = ""
    budget_after: BudgetStatus | None = None
    released_unix_ms: int = 0
    original_epsilon_charged: float = 0.0
    original_delta_charged: float = 0.0
    consent_epoch: int = 0


# Combined over the answering sites (coordinator.combine) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class CombinedValue:
    """One value summed over the answering sites, with its 95% interval; ``estimate`` None (and
    ``not_computed`` saying why) when some site suppressed it; ``released``: the sum of what was released."""

    estimate: float | None = None
    ci95_low: float = 0.0
    ci95_high: float = 0.0
    noise_stddev: float = 0.0
    sites_below_threshold: int = 0
    sites: int = 0
    threshold: int = 0
    released: float = 0.0
    not_computed: str = ""


@dataclass(frozen=True, slots=True)
class OddsRatio:
    """An allelic odds ratio with Woolf's interval; the numbers 0 and ``not_computed`` set when a cell was
    suppressed."""

    estimate: float = 0.0
    ci95_low: float = 0.0
    ci95_high: float = 0.0
    log_se: float = 0.0
    not_computed: str = ""
