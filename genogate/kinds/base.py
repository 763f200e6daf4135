"""The interface every query kind implements (``QueryKind``), and the narrow views a kind is given of the
node's data (``NodeData``), of the node's noise (``Release``) and of the coordinator's combination maths
(``Maths``).

A kind is one module of this package holding one ``QueryKind`` instance, ``KIND``; the registry
(``genogate.kinds.registry``) discovers the modules and maps each ``Kind`` to its ``KIND``. Everything that
differs between kinds lives in that module: its query dataclass (a ``genogate.query.Query``), its result and
combined result dataclasses (on ``genogate.results``' bases), its sensitivity, the wire conversion of all
three, canonical form, the variants and region it names, its filters and cohort arms, its noise plans, its
exact computation over ``NodeData``, the shaping of its noisy release, the combination of the sites' releases,
its result rows and its command-line arguments. The node, the coordinator, the SDK and the CLI look the kind
up once per query (a dict lookup) and stay generic.

Privacy: ``exact`` runs only after the node's charge is durable (the node calls it; a kind never reads data
itself), and ``release`` sees the exact vector only to hand it to ``Release.draw``: every number it shapes
into the result is noisy, or post-processing of noisy numbers.
"""

from __future__ import annotations

import abc
import argparse
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from genogate import results as res
from genogate.filter import parse_filter
from genogate.query import EVERYONE, Filter, Kind, Query, Region, Variant
from genogate.wire.v1 import common_pb2 as pb

# numpy and the noise planning (OpenDP) are imported where used, not here: the CLI builds its parser from the
# kinds, and a command that asks nothing should not load them (a third of a second per command).
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from genogate.privacy import NoisePlan as NoisePlan
    from genogate.privacy import Sensitivity as Sensitivity

    Mask = npt.NDArray[np.bool_]
    Counts = npt.NDArray[np.int64]

SiteRow = tuple[str, str, res.NoisyValue]
CombinedRow = tuple[str, str, res.CombinedValue]

#: Genotype classes, in the order of ``NodeData.classes`` columns (``node.records``).
HOM_REF, HET, HOM_ALT, HEMI_REF, HEMI_ALT, NO_CALL = range(6)
GENOTYPE_CLASSES = ("hom_ref", "het", "hom_alt", "hemi_ref", "hemi_alt", "no_call")


class NodeData(Protocol):
    """What a kind's exact computation may ask of a node's data, for one charged query (only after the charge).

    The node implements it over its store (``node.counting``). Masks are over the node's participants; the
    requested variants are those of the query (a region's: the node's site list), in the order released."""

    @property
    def consent(self) -> Mask:
        """Every participant whose consent admits the study's purpose."""

    @property
    def masks(self) -> Sequence[Mask]:
        """The cohort of each of the query's filters (``QueryKind.filters``, then ``QueryKind.arms``)."""

    def size(self, mask: Mask) -> int:
        """How many participants ``mask`` holds."""

    def classes(self, mask: Mask) -> Counts:
        """Genotype class counts (variants x 6, columns ``HOM_REF``..``NO_CALL``) of the requested variants'
        rows under ``mask``; a variant the store lacks counts every member hom-ref."""

    def carriers(self, mask: Mask, chosen: Mask | None = None) -> int:
        """Participants in ``mask`` carrying an ALT allele of a requested variant (of those ``chosen``, when
        given: one flag per requested variant) that the store holds."""


class Release(Protocol):
    """The node's noise for one charged query: its draws (OpenDP) and the shape of one released value."""

    def draw(self, exact: Counts, stage: int = 0) -> Counts:
        """The exact vector of release ``stage`` (an index into ``QueryKind.plans``) with noise added."""

    def value(self, noisy: int | np.integer, stage: int = 0) -> res.NoisyValue:
        """One noisy count with its 95% interval, or "fewer than k"."""

    def sum_value(self, a: int | np.integer, b: int | np.integer, stage: int = 0) -> res.NoisyValue:
        """The sum of two independently noised counts, with an interval covering the true sum."""


class Maths(Protocol):
    """The coordinator's combination of one value over the sites (``coordinator.combine``)."""

    def sum_of(self, values: Sequence[res.NoisyValue], *, draws: int = 1) -> res.CombinedValue: ...

    def frequency(
        self,
        ac: Sequence[res.NoisyValue],
        an: Sequence[res.NoisyValue],
        sum_ac: res.CombinedValue,
        sum_an: res.CombinedValue,
    ) -> res.CombinedValue: ...

    def odds_ratio(
        self, a: res.CombinedValue, b: res.CombinedValue, c: res.CombinedValue, d: res.CombinedValue
    ) -> res.OddsRatio: ...


class QueryKind(abc.ABC):
    """One query kind: everything that differs between kinds. Subclasses set the class attributes and
    implement every abstract method; the defaults fit kinds with one filter and one release."""

    kind: Kind
    """The ``Kind`` member; its ``label`` is the field name in ``pb.Query``, ``pb.QueryResult`` and
    ``pb.CombinedResult``, and its result types (``result_type``, ``combined_type``) name it."""
    query_type: type[Query]
    """The query dataclass (defined in the kind's module, a ``genogate.query.Query``)."""
    result_type: type[res.QueryResult]
    """One site's result dataclass (defined in the kind's module, a ``genogate.results.QueryResult``)."""
    combined_type: type[res.CombinedResult]
    """The combined result dataclass (defined in the kind's module, a ``genogate.results.CombinedResult``)."""
    command: str
    """The ``genogate query`` sub-command."""
    help: str
    """The sub-command's one-line help."""
    per_variant: bool
    """Whether one query's cost covers one variant (the study preview says "of 1 variant")."""
    uses_variants: bool
    """Whether the query releases values per variant (named, or a region's)."""
    takes_region: Literal["no", "optional", "only"] = "no"
    """Whether its queries may name a region instead of variants ("optional") or must ("only"): a node lists
    a region's sites only when its policy makes that list public (``[policy] public_site_catalogue``)."""
    ratios: frozenset[str] = frozenset()
    """The quantities of its combined rows that are ratios, not counts (printed with 4 significant digits)."""

    @property
    def name(self) -> str:
        return self.kind.label

    # Wire and canonical form ---------------------------------------------------------------------------

    @abc.abstractmethod
    def to_pb(self, q: Query) -> pb.Query:
        """The wire form of a query of this kind."""

    @abc.abstractmethod
    def from_pb(self, m: pb.Query) -> Query:
        """The query of this kind in ``m`` (its sub-message is set); ``InvalidArgument`` when malformed."""

    # Results on the wire: the kind's sub-message of ``pb.QueryResult`` / ``pb.CombinedResult`` (the field named
    # by its label), filled in place with ``genogate.convert``'s ``fill_*`` functions: the node converts every
    # result it releases, a 1,000-variant allele frequency included, so no sub-message is built and copied.
    # Decoding does not validate (a site's own signed output; see ``genogate.convert``'s "Results" section).

    @abc.abstractmethod
    def result_to_pb(self, r: res.QueryResult, m: Any) -> None:
        """Fill ``m``, this kind's (empty) sub-message of a ``pb.QueryResult``, with one site's result."""

    @abc.abstractmethod
    def result_from_pb(self, m: Any) -> res.QueryResult:
        """One site's result of this kind from its sub-message of a ``pb.QueryResult``."""

    @abc.abstractmethod
    def combined_to_pb(self, r: res.CombinedResult, m: Any) -> None:
        """Fill ``m``, this kind's (empty) sub-message of a ``pb.CombinedResult``, with a combination."""

    @abc.abstractmethod
    def combined_from_pb(self, m: Any) -> res.CombinedResult:
        """The combination of this kind from its sub-message of a ``pb.CombinedResult``."""

    @abc.abstractmethod
    def canonical(self, q: Query, build: str | None, this_year: int | None) -> Query:
        """The canonical form (``genogate.kinds.canonical``)."""

    def filters(self, q: Query) -> tuple[Filter, ...]:
        """The cohort filters of a query (one per arm)."""
        return (q.filter,)  # type: ignore[attr-defined]

    @abc.abstractmethod
    def variants(self, q: Query) -> tuple[Variant, ...]:
        """The variants a query names (none for a region or a cohort count)."""

    def region(self, q: Query) -> Region | None:
        """The region a query names, if any (the node lists its sites)."""
        return None

    # The node ----------------------------------------------------------------------------------------------

    def reads_rows(self, q: Query) -> bool:
        """Whether the exact computation asks ``NodeData.classes`` (the node reads the variants' rows)."""
        return self.uses_variants

    @abc.abstractmethod
    def sensitivity(self, k: int) -> Sensitivity:
        """The declared sensitivity of one release of ``k`` variants (built with ``one_value``,
        ``class_counts`` or ``allele_pairs``: ``genogate.privacy``'s constructors)."""

    def plans(
        self, q: Query, k: int | None, epsilon: Decimal, delta: Decimal
    ) -> tuple[list[Sensitivity], list[NoisePlan]]:
        """The releases a query makes (usually one) and their noise: ``k`` variants (None: none), ε to spend,
        δ per query (used only by a release of more than one value)."""
        sens = self.sensitivity(max(k or 1, 1))
        return [sens], [plan(sens, epsilon, delta if sens.length > 1 else Decimal(0))]

    def arms(self, masks: list[Mask]) -> list[Mask]:
        """The cohort masks counted, from one mask per filter."""
        return masks

    @abc.abstractmethod
    def exact(self, q: Query, data: NodeData) -> Counts:
        """The exact vector of the first release (never leaves the node un-noised)."""

    @abc.abstractmethod
    def release(
        self, q: Query, variants: Sequence[Variant] | None, exact: Counts, data: NodeData, out: Release
    ) -> res.QueryResult:
        """Noise ``exact`` through ``out`` and shape the noisy values into the result (of this kind)."""

    # The coordinator and the researcher ------------------------------------------------------------------

    @abc.abstractmethod
    def combine(self, results: Sequence[res.QueryResult], maths: Maths) -> res.CombinedResult:
        """The combination of the answering sites' results (at least one, all of this kind)."""

    @abc.abstractmethod
    def site_rows(self, result: res.QueryResult) -> list[SiteRow]:
        """(variant, quantity, value) of every number in one site's result."""

    @abc.abstractmethod
    def combined_rows(self, combined: res.CombinedResult) -> tuple[list[CombinedRow], dict[str, res.OddsRatio]]:
        """(variant, quantity, value) of every combined number, and the odds ratios by variant."""

    @abc.abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The sub-command's own arguments (the common ones are the CLI's)."""

    @abc.abstractmethod
    def from_args(self, args: argparse.Namespace) -> Query:
        """The query the sub-command's arguments ask (``UsageError`` for a wrong combination)."""


# Helpers the kinds share -------------------------------------------------------------------------------


# The sensitivity constructors of ``genogate.privacy``, loaded with the first query, not by every command.


def one_value() -> Sensitivity:
    """One value one participant moves by at most 1 (``genogate.privacy.one_value``)."""
    from genogate import privacy

    return privacy.one_value()


def class_counts(classes: int) -> Sensitivity:
    """Counts of disjoint classes, one participant in one class (``genogate.privacy.class_counts``)."""
    from genogate import privacy

    return privacy.class_counts(classes)


def allele_pairs(k: int, pairs_per_variant: int = 1) -> Sensitivity:
    """(alt, ref) pairs of ``k`` variants, one pair moved by one participant (``genogate.privacy.allele_pairs``)."""
    from genogate import privacy

    return privacy.allele_pairs(k, pairs_per_variant)


def plan(sens: Sensitivity, epsilon: Decimal, delta: Decimal) -> NoisePlan:
    """The noise of one release (mechanism, scale, interval) spending exactly ``epsilon`` and ``delta``."""
    from genogate import privacy  # loaded with the first query, not by every command

    return privacy.plan(sens, epsilon, delta)


def counts(values: Sequence[int]) -> Counts:
    """An exact vector from plain counts."""
    import numpy as np

    return np.array(values, dtype=np.int64)


def add_where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--where", default="", metavar="FILTER", help="cohort filter (default: everyone; see below)")


def add_variants(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="CHROM-POS-REF-ALT",
        help="a variant, e.g. 1-55516888-G-A; repeat for several",
    )


def add_region(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--region",
        required=required,
        metavar="CHROM:START-END",
        help="every variant of the region (the sites must publish their site lists)",
    )


def variant_text(v: Variant) -> str:
    return f"{v.chrom}-{v.pos}-{v.ref}-{v.alt}"


def same_variants(per_site: Sequence[Sequence[Variant]]) -> None:
    """Refuse to combine sites that answered for different variants."""
    first = list(per_site[0])
    for site in per_site[1:]:
        if list(site) != first:
            raise ValueError("sites answered for different variants")


def as_filter(where: str | Filter | None) -> Filter:
    if where is None or where == "":
        return EVERYONE
    return parse_filter(where) if isinstance(where, str) else where


def as_variants(variants: Iterable[str | Variant]) -> tuple[Variant, ...]:
    return tuple(v if isinstance(v, Variant) else Variant.parse(v) for v in variants)


def as_region(region: str | Region) -> Region:
    return region if isinstance(region, Region) else Region.parse(region)


def alt_ref(classes: Counts) -> Counts:
    """Interleaved (ALT, REF) allele counts per variant from class counts: (a0, r0, a1, r1, ...)."""
    import numpy as np

    ac = 2 * classes[:, HOM_ALT] + classes[:, HET] + classes[:, HEMI_ALT]
    an = 2 * (classes[:, HOM_REF] + classes[:, HET] + classes[:, HOM_ALT]) + classes[:, HEMI_REF] + classes[:, HEMI_ALT]
    return np.stack([ac, an - ac], axis=1).reshape(-1).astype(np.int64)
