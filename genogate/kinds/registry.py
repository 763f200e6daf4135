"""The registry of query kinds (``KINDS``) and the operations on any query or result that dispatch on its
kind: wire conversion (queries, results, combined results, release bodies), canonical form, filters. One dict
lookup per call.

The registry discovers the kinds once, at import: every module of the package but ``base``, ``registry`` and
those named ``_*`` is a kind module and exports its ``QueryKind`` instance as ``KIND``. A module without one,
a ``KIND`` that is no ``QueryKind``, two modules claiming one ``Kind`` or a ``Kind`` no module claims is an
``ImportError`` naming the module (or the ``Kind``): the package does not import half a registry."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from genogate import results as res
from genogate.convert import budget_from_pb, budget_to_pb
from genogate.errors import InvalidArgument
from genogate.kinds.base import QueryKind
from genogate.query import Filter, Kind, Query
from genogate.wire.v1 import common_pb2 as pb

#: The modules of the package that are not kinds.
NOT_KINDS: Final = frozenset({"base", "registry"})


def discover(package: str) -> dict[Kind, QueryKind]:
    """The ``KIND`` of every kind module of ``package`` (imported here), by ``Kind``, in ``Kind`` order."""
    found: dict[Kind, tuple[str, QueryKind]] = {}
    for info in sorted(pkgutil.iter_modules(sys.modules[package].__path__), key=lambda m: m.name):
        if info.name in NOT_KINDS or info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        kind = getattr(importlib.import_module(name), "KIND", None)
        if not isinstance(kind, QueryKind):
            raise ImportError(f"{name}: a kind module must export its QueryKind instance as KIND, found {kind!r}")
        if kind.kind in found:
            raise ImportError(f"{name}: its KIND is {kind.kind}, which {found[kind.kind][0]} already declares")
        found[kind.kind] = (name, kind)
    missing = [k.name for k in Kind if k not in found]
    if missing:
        raise ImportError(f"{package}: no module declares the kind(s) {', '.join(missing)}")
    return {k: found[k][1] for k in sorted(found, key=lambda k: k.value)}


#: Every query kind, by ``Kind``, in ``Kind`` order.
KINDS: Final[Mapping[Kind, QueryKind]] = MappingProxyType(discover(__package__ or "genogate.kinds"))
_BY_TYPE: Final[Mapping[type, QueryKind]] = MappingProxyType({k.query_type: k for k in KINDS.values()})
_BY_NAME: Final[Mapping[str, QueryKind]] = MappingProxyType({k.name: k for k in KINDS.values()})
_BY_COMMAND: Final[Mapping[str, QueryKind]] = MappingProxyType({k.command: k for k in KINDS.values()})


def kind_of(q: Query) -> QueryKind:
    """The kind of a query dataclass."""
    return _BY_TYPE[type(q)]


def for_pb(m: pb.Query | pb.QueryResult | pb.CombinedResult) -> QueryKind | None:
    """The kind of a wire query or result (its ``kind`` oneof), None when it names none."""
    which = m.WhichOneof("kind")
    return _BY_NAME[which] if which is not None else None


def for_result(r: res.QueryResult | res.CombinedResult) -> QueryKind:
    """The kind of a domain result or combination (``genogate.results``)."""
    return KINDS[r.kind]


def for_command(command: str) -> QueryKind:
    """The kind of a ``genogate query`` sub-command."""
    return _BY_COMMAND[command]


def query_to_pb(q: Query) -> pb.Query:
    return kind_of(q).to_pb(q)


def query_from_pb(m: pb.Query) -> Query:
    """The query of a wire message; ``InvalidArgument`` when it is malformed or names no kind."""
    kind = for_pb(m)
    if kind is None:
        raise InvalidArgument("the query names no kind")
    return kind.from_pb(m)


def canonical_bytes(q: Query) -> bytes:
    """Deterministic bytes of a query (callers canonicalise first); hashed for the same-answer cache."""
    return query_to_pb(q).SerializeToString(deterministic=True)


def canonical(q: Query, build: str | None = None, this_year: int | None = None) -> Query:
    """The canonical form of a query: variants and regions in their one spelling (``canonical_variant``),
    filters in their canonical form (``normalise_filter``, with the node's ``this_year``), variant lists
    sorted and de-duplicated. A filter that selects nobody whatever the data is refused (INVALID_FILTER).

    Two queries with the same canonical form ask the same question; the node answers the second with the
    first's stored release while its consent epoch lasts (``node.ledger``; averaging repeated noisy answers
    would otherwise defeat the noise). ``chr1`` and ``1``, ``a`` and ``A``, ``GCA>GA`` and ``GC>G`` are one
    question; so are ``not (sex=M or sex=U)`` and ``sex=F``, or (in 2026) ``age>=40 and age<=200`` and
    ``age>=40``.
    """
    return kind_of(q).canonical(q, build, this_year)


def filters_of(q: Query) -> tuple[Filter, ...]:
    """The cohort filters of a query (case/control: cases, then controls)."""
    return kind_of(q).filters(q)


# Results on the wire (the kind converts its own sub-message in place; see ``QueryKind.result_to_pb``) --------


def _fill_result(out: pb.QueryResult, r: res.QueryResult) -> None:
    sub = getattr(out, r.kind.label)
    sub.SetInParent()  # the kind is named even when its result lists nothing
    KINDS[r.kind].result_to_pb(r, sub)


def result_to_pb(r: res.QueryResult) -> pb.QueryResult:
    """The wire form of one site's result (the node signs its serialization)."""
    out = pb.QueryResult()
    _fill_result(out, r)
    return out


def result_from_pb(m: pb.QueryResult) -> res.QueryResult | None:
    """The result in ``m``; None when it names no kind."""
    which = m.WhichOneof("kind")
    if which is None:
        return None
    return _BY_NAME[which].result_from_pb(getattr(m, which))


def combined_to_pb(r: res.CombinedResult) -> pb.CombinedResult:
    out = pb.CombinedResult()
    sub = getattr(out, r.kind.label)
    sub.SetInParent()
    KINDS[r.kind].combined_to_pb(r, sub)
    return out


def combined_from_pb(m: pb.CombinedResult) -> res.CombinedResult | None:
    """The combination in ``m``; None when it names no kind."""
    which = m.WhichOneof("kind")
    if which is None:
        return None
    return _BY_NAME[which].combined_from_pb(getattr(m, which))


def release_body_to_pb(b: res.ReleaseBody) -> pb.ReleaseBody:
    m = pb.ReleaseBody(
        query_id=b.query_id,
        study_id=b.study_id,
        site=b.site,
        query_sha256=b.query_sha256,
        epsilon_charged=b.epsilon_charged,
        delta_charged=b.delta_charged,
        from_store=b.from_store,
        cached_query_id=b.cached_query_id,
        released_unix_ms=b.released_unix_ms,
        original_epsilon_charged=b.original_epsilon_charged,
        original_delta_charged=b.original_delta_charged,
        consent_epoch=b.consent_epoch,
    )
    if b.result is not None:
        _fill_result(m.result, b.result)
    if b.budget_after is not None:
        m.budget_after.CopyFrom(budget_to_pb(b.budget_after))
    return m


def release_body_from_pb(m: pb.ReleaseBody) -> res.ReleaseBody:
    return res.ReleaseBody(
        query_id=m.query_id,
        study_id=m.study_id,
        site=m.site,
        query_sha256=m.query_sha256,
        result=result_from_pb(m.result) if m.HasField("result") else None,
        epsilon_charged=m.epsilon_charged,
        delta_charged=m.delta_charged,
        from_store=m.from_store,
        cached_query_id=m.cached_query_id,
        budget_after=budget_from_pb(m.budget_after) if m.HasField("budget_after") else None,
        released_unix_ms=m.released_unix_ms,
        original_epsilon_charged=m.original_epsilon_charged,
        original_delta_charged=m.original_delta_charged,
        consent_epoch=m.consent_epoch,
    )
