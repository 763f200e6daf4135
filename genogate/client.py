"""The researcher's Python SDK: federated queries and budgets through the coordinator.

    from genogate import Client

    with Client.from_profile("alice.toml") as gg:
        r = gg.allele_frequency("S-7f3a", ["1-55516888-G-A"], where="ancestry in (EUR,AFR)", epsilon=0.5)
        print(r)                  # a readable table
        r.rows()                  # list of dicts: one per released number, with its 95% interval
        r.to_pandas()             # the same as a DataFrame (needs pandas; not a dependency of genogate)
        r.sites                   # each site's status, reason and ε charged

Every query is signed with the profile's ``signing_key`` (the key the study's grant names) and sent once to
the coordinator, which relays the same signed bytes to each site and combines their noisy answers. When the
coordinator cannot be reached or does not answer in time, the client sends the *same signed bytes* again
(up to ``attempts`` times): each node recognises the query id and payload and returns its stored release,
so a retry never spends budget twice or draws fresh noise. (A new envelope with an old query id is a
different request, which nodes refuse.) Failures raise ``GenogateError`` subclasses with a stable ``reason``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genogate import envelope, results, table
from genogate.coordclient import CoordinatorClient
from genogate.errors import DeadlineExceeded, GenogateError, Reason, Unavailable, number
from genogate.kinds import KINDS, combined_from_pb, for_result, kind_of, release_body_from_pb
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.base import as_filter, as_region, as_variants
from genogate.kinds.carrier_count import CarrierCount
from genogate.kinds.case_control import CaseControl
from genogate.kinds.cohort_count import CohortCount
from genogate.kinds.genotype_counts import GenotypeCounts
from genogate.query import Filter, Kind, Query, Region, Variant, canonical_region, canonical_variant
from genogate.rpc import ClientTLS
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.words import enum_word

if TYPE_CHECKING:
    from genogate.signing import Signer

_STATUS = {v.number: enum_word(v) for v in pb.SiteStatus.DESCRIPTOR.values if v.number != pb.SITE_STATUS_UNSPECIFIED}
"""answered, timed_out, refused, failed: the words every JSON the CLI prints uses (``genogate.words``)."""


@dataclass(frozen=True)
class Estimate:
    """One released number combined over the answering sites.

    ``estimate`` is None when there is no honest point value: ``suppressed`` (some site reported its count
    only as "fewer than ``threshold``"), or a ratio of such a count (``not_computed`` says which). The 95%
    interval is given either way and covers the true value (for an absent variant: ``[0, an upper
    bound]``). ``released`` is the sum of the noisy values the sites did release (None if none did)."""

    estimate: float | None
    ci95_low: float
    ci95_high: float
    noise_stddev: float | None
    sites_below_threshold: int = 0
    sites: int = 0
    threshold: int | None = None
    released: float | None = None
    not_computed: str = ""

    @property
    def suppressed(self) -> bool:
        """Some site reported this value (or a count it is derived from) only as "fewer than k"."""
        return self.sites_below_threshold > 0

    @classmethod
    def of(cls, v: results.CombinedValue) -> Estimate:
        if v.estimate is not None:
            return cls(v.estimate, v.ci95_low, v.ci95_high, v.noise_stddev, 0, v.sites, None, v.released)
        some_released = v.threshold > 0 and v.sites_below_threshold < v.sites  # a count some sites released
        return cls(
            None,
            v.ci95_low,
            v.ci95_high,
            None,
            v.sites_below_threshold,
            v.sites,
            v.threshold or None,
            v.released if some_released else None,
            v.not_computed or "not computed",
        )

    @classmethod
    def of_odds_ratio(cls, o: results.OddsRatio) -> Estimate:
        if o.not_computed:
            return cls(None, math.nan, math.nan, None, not_computed=o.not_computed)
        return cls(o.estimate, o.ci95_low, o.ci95_high, None)

    def text(self, quantity: str = "") -> str:
        """The estimate as table text: a number, ``< k`` when every site suppressed it, ``released + < k``
        when some did, ``not computed`` for a ratio of a suppressed count."""
        if self.estimate is not None:
            return _num(self.estimate, quantity)
        if self.threshold is None:
            return "not computed"
        bound = f"< {self.threshold}" + (" each" if self.sites_below_threshold > 1 else "")
        return bound if self.released is None else f"{_num(self.released, quantity)} + {bound}"

    def note(self) -> str:
        """Why there is no estimate ("" when there is one), e.g. "suppressed at 2 of 3 sites"."""
        return "" if self.estimate is not None else self.not_computed


@dataclass(frozen=True)
class Site:
    """What one site did with the query."""

    site: str
    status: str  # answered, timed_out, refused, failed
    reason: str  # e.g. BUDGET_EXHAUSTED; "" when answered
    message: str
    epsilon_charged: float
    from_store: bool
    attempts: int
    latency_ms: int
    release: results.ReleaseBody | None  # the node-signed release, when the grant allows a per-site breakdown
    stored_epsilon: float | None = None
    """When ``from_store``: the ε the stored release was charged when first answered (the ε its noise was drawn
    at), whatever ε this query asked; None otherwise."""

    @property
    def status_text(self) -> str:
        """The status as the query table prints it: "answered from the stored release at ε 0.25" for a stored
        release (its own ε, not the one asked)."""
        if self.status != "answered" or not self.from_store:
            return self.status
        at = f" at ε {number(self.stored_epsilon)}" if self.stored_epsilon is not None else ""
        return f"answered from the stored release{at}"


@dataclass(frozen=True)
class Row:
    """One released number: which variant (if any) and which quantity, with its estimate and interval."""

    variant: str
    quantity: str
    value: Estimate


@dataclass
class QueryResult:
    query_id: str
    study_id: str
    kind: str
    epsilon: float
    sites: list[Site]
    values: list[Row]
    odds_ratios: dict[str, results.OddsRatio] = field(default_factory=dict)
    combined: results.CombinedResult | None = field(default=None, repr=False)
    """The coordinator's combination (``genogate.results``); None when no site answered."""
    spellings: dict[str, str] = field(default_factory=dict)
    """Each variant as the caller typed it -> the canonical spelling the sites answer under, where they differ
    (``chr5-117882594-T-A`` -> ``5-117882594-T-A``); ``value`` accepts either."""
    charge_note: str = ""
    """What the query charged, in words: which sites charged what, which refused and so charged nothing."""

    @property
    def answered(self) -> list[str]:
        return [s.site for s in self.sites if s.status == "answered"]

    @property
    def from_store(self) -> bool:
        """Every site that answered did so from its stored release of the same question (a repeated question:
        the first answer again, at no cost, whatever ε this query asked)."""
        answered = [s for s in self.sites if s.status == "answered"]
        return bool(answered) and all(s.from_store for s in answered)

    @property
    def stored_epsilon(self) -> float | None:
        """When ``from_store`` and every answering site's stored release was drawn at the same ε: that ε (the
        ε the values carry, not the one asked); else None (each site's is in ``sites``)."""
        if not self.from_store:
            return None
        found = {s.stored_epsilon for s in self.sites if s.status == "answered"}
        return found.pop() if len(found) == 1 else None

    def value(self, quantity: str, variant: str = "") -> Estimate:
        """The estimate of one quantity (e.g. "count", "allele_frequency"), of one variant when per variant
        (in any spelling: ``chr5-117882594-t-a`` finds ``5-117882594-T-A``)."""
        variant = self.spellings.get(variant) or _canonical_text(variant)
        for r in self.values:
            if r.quantity == quantity and r.variant == variant:
                return r.value
        raise KeyError(f"no {quantity!r}{f' for {variant}' if variant else ''} in this result")

    def rows(self) -> list[dict[str, Any]]:
        """One dict per released number (and per odds ratio), ready for a table or a DataFrame. ``estimate``
        is None where there is none (``suppressed``; ``note`` says why); the interval is always given."""
        out = [self._row(r.variant, r.quantity, r.value) for r in self.values]
        out += [self._row(variant, "odds_ratio", Estimate.of_odds_ratio(o)) for variant, o in self.odds_ratios.items()]
        return out

    @staticmethod
    def _row(variant: str, quantity: str, e: Estimate) -> dict[str, Any]:
        return {
            "variant": variant,
            "quantity": quantity,
            "estimate": e.estimate,
            "ci95_low": e.ci95_low,
            "ci95_high": e.ci95_high,
            "noise_stddev": math.nan if e.noise_stddev is None else e.noise_stddev,
            "suppressed": e.suppressed,
            "threshold": e.threshold,
            "sites_below_threshold": e.sites_below_threshold,
            "sites": e.sites,
            "released": e.released,
            "note": e.note(),
        }

    def by_site(self) -> list[dict[str, Any]]:
        """Each answering site's own noisy numbers (only when the study's grant allows a per-site breakdown:
        otherwise the coordinator does not pass the sites' releases on, and this is empty). A value under the
        site's minimum reportable count has ``estimate`` None and ``below_threshold`` True."""
        out: list[dict[str, Any]] = []
        for s in self.sites:
            if s.release is None or s.release.result is None:
                continue
            result = s.release.result
            for variant, quantity, v in for_result(result).site_rows(result):
                hidden = v.below_threshold
                out.append(
                    {
                        "site": s.site,
                        "variant": variant,
                        "quantity": quantity,
                        "estimate": None if hidden else v.estimate,
                        "ci95_low": None if hidden else v.ci95_low,
                        "ci95_high": None if hidden else v.ci95_high,
                        "noise_stddev": v.noise_stddev,
                        "below_threshold": hidden,
                        "threshold": v.threshold,
                    }
                )
        return out

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (pandas is optional: ImportError says how to get it)."""
        return _dataframe(self.rows())

    def to_json(self) -> dict[str, Any]:
        return {
            "by_site": self.by_site(),
            "query_id": self.query_id,
            "study_id": self.study_id,
            "kind": self.kind,
            "epsilon": self.epsilon,
            "from_store": self.from_store,
            "stored_epsilon": self.stored_epsilon,
            "spellings": [{"typed": t, "canonical": c} for t, c in self.spellings.items()],
            "charge_note": self.charge_note,
            "values": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in self.rows()
            ],
            "sites": [
                {
                    "site": s.site,
                    "status": s.status,
                    "reason": s.reason,
                    "message": s.message,
                    "epsilon_charged": s.epsilon_charged,
                    "from_store": s.from_store,
                    "stored_epsilon": s.stored_epsilon,
                    "attempts": s.attempts,
                    "latency_ms": s.latency_ms,
                }
                for s in self.sites
            ],
        }

    def __str__(self) -> str:
        rows = [(r.variant, r.quantity, r.value) for r in self.values]
        rows += [(v, "odds_ratio", Estimate.of_odds_ratio(o)) for v, o in self.odds_ratios.items()]
        values = table.table(
            ["variant", "quantity", "estimate", "95% interval", "noise sd", "note"],
            [
                [
                    variant or "-",
                    quantity,
                    e.text(quantity),
                    "-" if math.isnan(e.ci95_low) else f"[{_num(e.ci95_low, quantity)}, {_num(e.ci95_high, quantity)}]",
                    "-" if e.noise_stddev is None else _num(e.noise_stddev, quantity),
                    e.note() or "-",
                ]
                for variant, quantity, e in rows
            ],
        )
        sites = table.table(
            ["site", "status", "reason", "epsilon charged", "attempts", "ms"],
            [
                [
                    s.site,
                    s.status_text,
                    s.reason or "-",
                    f"{s.epsilon_charged:g}",
                    s.attempts,
                    s.latency_ms,
                ]
                for s in self.sites
            ],
        )
        head = f"query {self.query_id}  study {self.study_id}  {self.kind}  {self._epsilon_text()}"
        if not self.values:
            values = "no site answered: nothing to combine"
        text = f"{head}\n\n{values}\n\nsites ({len(self.answered)} of {len(self.sites)} answered):\n{sites}"
        why = [f"  {s.site}: {s.message}" for s in self.sites if s.status != "answered" and s.message]
        if why:  # each refusal's own reason in words, with its numbers (a code alone says too little)
            text += "\n" + "\n".join(why)
        if self.charge_note:
            text += f"\n{self.charge_note}"
        if self.spellings:
            typed = "\n".join(
                f"  you typed {t}: the sites' canonical spelling is {c}" for t, c in self.spellings.items()
            )
            text = f"{head}\n{typed}" + text[len(head) :]
        per_site = self.by_site()
        if per_site:
            breakdown = table.table(
                ["site", "variant", "quantity", "estimate", "95% interval"],
                [
                    [
                        r["site"],
                        r["variant"] or "-",
                        r["quantity"],
                        f"< {r['threshold']}" if r["below_threshold"] else _num(r["estimate"], r["quantity"]),
                        "-"
                        if r["below_threshold"]
                        else f"[{_num(r['ci95_low'], r['quantity'])}, {_num(r['ci95_high'], r['quantity'])}]",
                    ]
                    for r in per_site
                ],
            )
            text += f"\n\nper site (the study's grant allows the breakdown):\n{breakdown}"
        return text

    def _epsilon_text(self) -> str:
        """The ε the answer carries: the one asked, or for a repeated question the stored release's own ε (a
        stored release is returned whatever ε the repeat asks: printing the new ε would misstate its noise)."""
        if not self.from_store:
            return f"epsilon {number(self.epsilon)} per site"
        stored = self.stored_epsilon
        at = f" at ε {number(stored)} per site" if stored is not None else " (each site's ε below)"
        return f"answered from the stored release{at}; nothing charged (a repeated question gets its first answer)"


def _dataframe(rows: list[dict[str, Any]]) -> Any:
    """``rows`` as a ``pandas.DataFrame`` (pandas is optional: ImportError says how to get it)."""
    try:
        import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return pd.DataFrame(rows)


_RATIOS = frozenset(q for kind in KINDS.values() for q in kind.ratios)


def _num(x: float, quantity: str) -> str:
    if quantity in _RATIOS:
        return f"{x:.4g}"
    return f"{x:,.1f}" if abs(x - round(x)) > 1e-9 else f"{round(x):,}"


def _spellings(q: Query) -> dict[str, str]:
    """Typed -> canonical text of a query's variants and region, where they differ (``genogate.genome``)."""
    kind = kind_of(q)
    region = kind.region(q)
    typed: list[Variant | Region] = [*kind.variants(q), *([region] if region is not None else [])]
    out = {}
    for item in typed:
        try:
            canon = canonical_variant(item) if isinstance(item, Variant) else canonical_region(item)
        except GenogateError:
            continue  # a RefSeq accession of another build: the coordinator or node refused it
        if str(canon) != str(item):
            out[str(item)] = str(canon)
    return out


def _canonical_text(variant: str) -> str:
    """``variant`` in its canonical spelling, or as given when it does not parse as one."""
    if not variant:
        return variant
    try:
        return str(canonical_variant(Variant.parse(variant)))
    except GenogateError:
        return variant


def result_of(response: cpb.RunQueryResponse) -> QueryResult:
    """The typed result of a ``RunQueryResponse`` (the SDK's conversion, right after the RPC)."""

    sites = [
        Site(
            site=o.site,
            status=_STATUS.get(o.status, "failed"),
            reason="" if o.status == pb.SITE_STATUS_ANSWERED else Reason(o.reason).name,
            message=o.message,
            epsilon_charged=o.epsilon_charged,
            from_store=o.from_store,
            attempts=o.attempts,
            latency_ms=o.latency_ms,
            release=release_body_from_pb(pb.ReleaseBody.FromString(o.release.payload)) if o.release.payload else None,
            stored_epsilon=o.stored_epsilon if o.from_store and o.stored_epsilon > 0 else None,
        )
        for o in response.sites
    ]
    rows: list[Row] = []
    odds: dict[str, results.OddsRatio] = {}
    combined = combined_from_pb(response.combined) if response.HasField("combined") else None
    if combined is not None:
        values, odds = for_result(combined).combined_rows(combined)
        rows += [Row(variant, quantity, Estimate.of(v)) for variant, quantity, v in values]
    return QueryResult(
        query_id=response.query_id,
        study_id=response.study_id,
        kind=Kind(response.kind).label if response.kind else "",
        epsilon=response.epsilon,
        sites=sites,
        values=rows,
        odds_ratios=odds,
        combined=combined,
        charge_note=response.charge_note,
    )


@dataclass(frozen=True)
class SiteBudget:
    """One site's budget for a study, as its own ledger reports it (``None`` where the site did not answer)."""

    site: str
    status: str  # answered, timed_out, refused, failed
    reason: str  # e.g. GRANT_MISSING; "" when answered
    epsilon_cap: float | None
    epsilon_spent: float | None
    epsilon_remaining: float | None
    queries_answered: int | None


@dataclass
class Budget:
    """A study's budget at each of its sites (``Client.budget``)."""

    study_id: str
    sites: list[SiteBudget]

    @classmethod
    def of(cls, study_id: str, sites: Sequence[cpb.SiteBudget]) -> Budget:
        """The SDK's conversion of the coordinator's ``GetStudyBudget`` answer, right after the RPC."""
        from genogate.convert import budget_from_pb

        rows = []
        for s in sites:
            if s.HasField("budget"):
                b = budget_from_pb(s.budget)
                figures = (b.epsilon_cap, b.epsilon_spent, b.epsilon_remaining, b.queries_answered)
                rows.append(SiteBudget(s.site, "answered", "", *figures))
            else:
                rows.append(SiteBudget(s.site, _STATUS.get(s.status, "failed"), Reason(s.reason).name, *[None] * 4))
        return cls(study_id, rows)

    def site(self, name: str) -> SiteBudget:
        for s in self.sites:
            if s.site == name:
                return s
        raise KeyError(f"no site {name!r} in the budget of {self.study_id}")

    @property
    def remaining(self) -> dict[str, float]:
        """ε left at each site that answered."""
        return {s.site: s.epsilon_remaining for s in self.sites if s.epsilon_remaining is not None}

    def rows(self) -> list[dict[str, Any]]:
        return [dict(vars(s)) for s in self.sites]

    def to_pandas(self) -> Any:
        """The sites as a ``pandas.DataFrame`` (pandas is optional: ImportError says how to get it)."""
        return _dataframe(self.rows())

    def to_json(self) -> dict[str, Any]:
        return {"study_id": self.study_id, "sites": self.rows()}

    def __str__(self) -> str:
        def num(x: float | int | None) -> str:
            return "-" if x is None else f"{x:g}"

        return f"study {self.study_id}\n" + table.table(
            ["site", "status", "cap", "spent", "remaining", "queries"],
            [
                [
                    s.site,
                    s.status + (f" ({s.reason})" if s.reason else ""),
                    num(s.epsilon_cap),
                    num(s.epsilon_spent),
                    num(s.epsilon_remaining),
                    "-" if s.queries_answered is None else s.queries_answered,
                ]
                for s in self.sites
            ],
        )


class Client:
    """A researcher's connection to the coordinator (mutual TLS), signing each query with their key."""

    def __init__(
        self, coordinator: str, tls: ClientTLS, signer: Signer, *, timeout_s: float = 120.0, attempts: int = 3
    ):
        self._rpc = CoordinatorClient(coordinator, tls, timeout_s=timeout_s)
        self._signer = signer
        self._attempts = max(1, attempts)

    @classmethod
    def from_profile(cls, path: str | Path | None = None, *, timeout_s: float = 120.0) -> Client:
        """From a profile file (or ``$GENOGATE_PROFILE``), the same file the ``genogate`` command uses."""
        from genogate.profile import resolve

        profile = resolve(Path(path) if path is not None else None)
        return cls(profile.coordinator, profile.client_tls(), profile.signer(), timeout_s=timeout_s)

    def close(self) -> None:
        self._rpc.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Queries ------------------------------------------------------------------------------------------------

    def run(
        self,
        study: str,
        query: Query,
        *,
        epsilon: float,
        sites: Sequence[str] = (),
        query_id: str | None = None,
        site_timeout_ms: int = 0,
        assembly: str = "",
    ) -> QueryResult:
        """Sign and run any query; every other query method comes here. ``assembly`` names the genome build
        of the query's coordinates ("GRCh37" or "GRCh38"); empty means the study's, and a site whose data is on
        another build refuses (``WRONG_ASSEMBLY``)."""
        env = envelope.build(
            query, study_id=study, epsilon=epsilon, query_id=query_id, sites=tuple(sites), assembly=assembly
        )
        request = envelope.signed_query(env, self._signer)
        for attempt in range(1, self._attempts + 1):
            try:
                result = result_of(self._rpc.run_query(request, site_timeout_ms=site_timeout_ms))
                result.spellings = _spellings(query)
                return result
            except (Unavailable, DeadlineExceeded):
                if attempt == self._attempts:
                    raise
                time.sleep(0.2 * 2**attempt)  # the same bytes again: a retry, never a second charge
        raise AssertionError("unreachable")

    def cohort_count(self, study: str, *, where: str | Filter | None = None, epsilon: float, **kw: Any) -> QueryResult:
        return self.run(study, CohortCount(as_filter(where)), epsilon=epsilon, **kw)

    def allele_frequency(
        self,
        study: str,
        variants: Iterable[str | Variant] = (),
        *,
        region: str | Region | None = None,
        where: str | Filter | None = None,
        epsilon: float,
        **kw: Any,
    ) -> QueryResult:
        q = AlleleFrequency(
            as_variants(variants), region=as_region(region) if region is not None else None, filter=as_filter(where)
        )
        return self.run(study, q, epsilon=epsilon, **kw)

    def genotype_counts(
        self, study: str, variant: str | Variant, *, where: str | Filter | None = None, epsilon: float, **kw: Any
    ) -> QueryResult:
        return self.run(study, GenotypeCounts(as_variants([variant])[0], as_filter(where)), epsilon=epsilon, **kw)

    def case_control(
        self,
        study: str,
        variants: Iterable[str | Variant],
        *,
        cases: str | Filter,
        controls: str | Filter,
        epsilon: float,
        **kw: Any,
    ) -> QueryResult:
        q = CaseControl(as_variants(variants), as_filter(cases), as_filter(controls))
        return self.run(study, q, epsilon=epsilon, **kw)

    def carrier_count(
        self,
        study: str,
        region: str | Region,
        *,
        max_allele_frequency: float | None = None,
        where: str | Filter | None = None,
        epsilon: float,
        **kw: Any,
    ) -> QueryResult:
        q = CarrierCount(as_region(region), max_allele_frequency=max_allele_frequency, filter=as_filter(where))
        return self.run(study, q, epsilon=epsilon, **kw)

    # Budgets ------------------------------------------------------------------------------------------------

    def budget(self, study: str, sites: Sequence[str] = ()) -> Budget:
        """What each site of the study reports as its cap, spent and remaining ε (from its own ledger)."""
        return Budget.of(study, self._rpc.study_budget(study, sites))
