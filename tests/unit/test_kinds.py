"""The query-kind registry: every ``Kind`` is one module implementing every part of ``QueryKind``, the wire
form round-trips, the canonical form is idempotent, and no per-kind branch lives outside ``genogate/kinds``."""

from __future__ import annotations

import abc
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import genogate.kinds
from genogate import cli
from genogate.errors import InvalidArgument, UsageError
from genogate.kinds import KINDS, canonical, canonical_bytes, for_command, for_pb, kind_of, query_from_pb, query_to_pb
from genogate.kinds.base import QueryKind
from genogate.query import (
    AgeRange,
    AlleleFrequency,
    And,
    CarrierCount,
    CaseControl,
    CohortCount,
    GenotypeCounts,
    Kind,
    Not,
    PhenotypeHas,
    Query,
    Region,
    SexIs,
    Variant,
)
from genogate.wire.v1 import common_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
V1 = Variant("chr1", 55516888, "g", "a")
V2 = Variant("1", 1000, "GCA", "GA")
F1 = And((SexIs("F"), AgeRange(40, None)))
F2 = Not(PhenotypeHas("HP:0001250"))

EXAMPLES: dict[Kind, list[Query]] = {
    Kind.COHORT_COUNT: [CohortCount(), CohortCount(F1)],
    Kind.ALLELE_FREQUENCY: [
        AlleleFrequency((V1, V2, V1), filter=F2),
        AlleleFrequency(region=Region("chrX", 100, 2000)),
    ],
    Kind.GENOTYPE_COUNTS: [GenotypeCounts(V1), GenotypeCounts(V2, F1)],
    Kind.CASE_CONTROL: [CaseControl((V2, V1), F1, F2)],
    Kind.CARRIER_COUNT: [CarrierCount(Region("chr2", 1, 5000)), CarrierCount(Region("2", 10, 20), 0.01, F2)],
}

# Every part of the interface: the attributes each kind sets, and every public method.
ATTRIBUTES = {
    "kind": Kind,
    "query_type": type,
    "command": str,
    "help": str,
    "per_variant": bool,
    "uses_variants": bool,
    "ratios": frozenset,
}
METHODS = sorted(
    name for name, member in vars(QueryKind).items() if not name.startswith("_") and inspect.isfunction(member)
)


def _kind_modules() -> set[str]:
    """The modules of the package that are not the interface or the registry: one per kind."""
    return {m.name for m in pkgutil.iter_modules(genogate.kinds.__path__)} - {"base", "registry"}


def test_every_kind_member_has_a_registered_module_in_kind_order() -> None:
    assert list(KINDS) == list(Kind)
    for kind, module in KINDS.items():
        assert module.kind is kind
        assert module.name == kind.label


def test_the_modules_of_the_package_are_exactly_the_registry() -> None:
    """Adding a kind is one module: a module not in the registry, or a registered kind without its own
    module named after it, fails here."""
    registered = {type(k).__module__.rsplit(".", 1)[1] for k in KINDS.values()}
    assert _kind_modules() == registered == {k.label for k in Kind}
    for name in _kind_modules():
        module = __import__(f"genogate.kinds.{name}", fromlist=["KIND"])
        assert module.KIND is KINDS[Kind[name.upper()]]


def test_the_interface_declares_the_parts_the_issue_names() -> None:
    assert set(METHODS) >= {
        "to_pb",
        "from_pb",
        "canonical",
        "filters",
        "variants",
        "region",
        "reads_rows",
        "sensitivity",
        "plans",
        "arms",
        "exact",
        "release",
        "combine",
        "site_rows",
        "combined_rows",
        "add_arguments",
        "from_args",
    }
    assert set(ATTRIBUTES) <= set(QueryKind.__annotations__)


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=lambda k: k.name)
def test_every_kind_implements_every_part_with_the_interface_signature(kind: QueryKind) -> None:
    assert isinstance(kind, QueryKind)
    assert not inspect.isabstract(type(kind)), getattr(type(kind), "__abstractmethods__", ())
    for name, typ in ATTRIBUTES.items():
        assert isinstance(getattr(kind, name), typ), name
    assert kind.query_type.kind is kind.kind  # type: ignore[attr-defined]
    assert kind.command == kind.name.replace("_", "-")
    assert kind.help and kind.help == kind.help.strip()
    for name in METHODS:
        method = getattr(kind, name)
        assert callable(method), name
        want = inspect.signature(getattr(QueryKind, name))
        got = inspect.signature(getattr(type(kind), name))
        assert list(got.parameters) == list(want.parameters), name
        assert [p.kind for p in got.parameters.values()] == [p.kind for p in want.parameters.values()], name


def test_an_abstract_part_left_out_fails_at_once() -> None:
    abstract = {n for n, m in vars(QueryKind).items() if getattr(m, "__isabstractmethod__", False)}
    assert {"to_pb", "from_pb", "canonical", "exact", "release", "combine", "from_args"} <= abstract

    class Half(QueryKind):
        kind = Kind.COHORT_COUNT

    with pytest.raises(TypeError, match="abstract"):
        Half()  # type: ignore[abstract]
    assert isinstance(QueryKind, abc.ABCMeta)


def test_every_wire_oneof_is_a_registered_kind() -> None:
    """The query, result and combined-result messages name exactly the registered kinds, by label."""
    for message in (pb.Query, pb.QueryResult, pb.CombinedResult):
        names = {f.name for f in message.DESCRIPTOR.oneofs_by_name["kind"].fields}
        assert names == {k.name for k in KINDS.values()}, message.DESCRIPTOR.name


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.label)
def test_round_trip_and_canonical_form_per_kind(kind: Kind) -> None:
    assert EXAMPLES[kind], "every kind needs an example here"
    for q in EXAMPLES[kind]:
        module = kind_of(q)
        assert module is KINDS[kind] and q.kind is kind
        m = query_to_pb(q)
        assert m.WhichOneof("kind") == kind.label
        assert for_pb(m) is module
        assert query_from_pb(m) == q
        assert query_from_pb(pb.Query.FromString(m.SerializeToString())) == q
        c = canonical(q)
        assert type(c) is type(q)
        assert canonical(c) == c
        assert canonical_bytes(canonical(c)) == canonical_bytes(c)
        assert query_from_pb(query_to_pb(c)) == c
        assert module.filters(c) == module.filters(query_from_pb(query_to_pb(c)))


def test_canonical_forms_merge_spellings_and_sort_variants() -> None:
    c = canonical(AlleleFrequency((V1, V2, V1)))
    assert isinstance(c, AlleleFrequency)
    assert c.variants == (Variant("1", 1000, "GC", "G"), Variant("1", 55516888, "G", "A"))
    assert canonical(CaseControl((V2, V1), F1, F2)) == CaseControl(c.variants, canonical(CohortCount(F1)).filter, F2)  # type: ignore[attr-defined]


def test_a_query_naming_no_kind_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="names no kind"):
        query_from_pb(pb.Query())
    assert for_pb(pb.QueryResult()) is None


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.label)
def test_the_variants_and_region_a_query_names(kind: Kind) -> None:
    module = KINDS[kind]
    for q in EXAMPLES[kind]:
        named = module.variants(q)
        region = module.region(q)
        assert module.uses_variants == bool(named or region is not None)
        assert all(isinstance(v, Variant) for v in named)
        assert region is None or isinstance(region, Region)


def test_each_kind_is_a_cli_sub_command_that_builds_its_query() -> None:
    assert cli.KINDS_HELP == ", ".join(k.label for k in Kind)
    parser = cli._parser()
    extra = {
        Kind.COHORT_COUNT: ["--where", "sex=F"],
        Kind.ALLELE_FREQUENCY: ["--variant", "1-1000-GCA-GA", "--variant", "chr1-55516888-G-A"],
        Kind.GENOTYPE_COUNTS: ["--variant", "1-1000-G-A"],
        Kind.CASE_CONTROL: ["--variant", "1-1000-G-A", "--cases", "sex=F", "--controls", "sex=M"],
        Kind.CARRIER_COUNT: ["--region", "2:10-20", "--max-af", "0.01"],
    }
    for kind, module in KINDS.items():
        args = parser.parse_args(["query", module.command, "--study", "S", "--epsilon", "1", *extra[kind]])
        assert for_command(args.kind) is module
        q = module.from_args(args)
        assert kind_of(q) is module
    args = parser.parse_args(["query", "allele-frequency", "--study", "S", "--epsilon", "1"])
    with pytest.raises(UsageError, match="give --variant"):
        KINDS[Kind.ALLELE_FREQUENCY].from_args(args)


_NAMES = r"(cohort[_-]count|allele[_-]frequency|genotype[_-]counts|case[_-]control|carrier[_-]count)"
_BRANCH = re.compile(
    r"isinstance\([^)]*\b(CohortCount|AlleleFrequency|GenotypeCounts|CaseControl|CarrierCount)\b"
    rf"|(==|!=|\bin \(|\bin \[)\s*[\"']{_NAMES}[\"']"
)


def test_no_per_kind_branch_outside_the_kind_modules() -> None:
    """Adding a kind must not need edits elsewhere: no ``isinstance(q, CohortCount)`` or oneof-name branch
    in the shared package, the node or the coordinator (the demo, leaving the package, is exempt)."""
    found = []
    for package in ("genogate", "node", "coordinator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(("genogate/kinds/", "genogate/wire/")) or rel == "genogate/demo.py":
                continue
            found += [f"{rel}: {m.group(0)}" for m in _BRANCH.finditer(path.read_text())]
    assert found == []


# Every kind through the real parts: a node's release (exact counts, zero noise injected as in
# tests/unit/test_service.py), the coordinator's combination of two sites, and the researcher's rows.

NODE_EXAMPLES: dict[Kind, Query] = {
    Kind.COHORT_COUNT: CohortCount(SexIs("F")),
    Kind.ALLELE_FREQUENCY: AlleleFrequency((Variant("1", 100, "A", "G"), Variant("1", 200, "C", "T"))),
    Kind.GENOTYPE_COUNTS: GenotypeCounts(Variant("1", 100, "A", "G")),
    Kind.CASE_CONTROL: CaseControl((Variant("1", 100, "A", "G"),), SexIs("F"), SexIs("M")),
    Kind.CARRIER_COUNT: CarrierCount(Region("1", 1, 1000), 0.2),
}


@pytest.fixture(scope="module")
def service_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from node.ingest import ingest
    from tests.unit.test_service import SHEET, VCF

    d = tmp_path_factory.mktemp("kinds")
    (d / "c.vcf").write_text(VCF)
    (d / "s.tsv").write_text(SHEET)
    ingest(d / "store.duckdb", [d / "c.vcf"], d / "s.tsv", build="GRCh37")
    return d / "store.duckdb"


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.label)
def test_each_kind_from_node_release_to_combined_rows(kind: Kind, service_store: Path, tmp_path: Path) -> None:
    from coordinator.combine import combine_results
    from genogate.convert import result_from_pb
    from genogate.kinds import for_result
    from tests.unit.test_service import ask, make

    module = KINDS[kind]
    svc = make(service_store, tmp_path, memory_mb=16)
    try:
        body = ask(svc, NODE_EXAMPLES[kind])
    finally:
        svc.close()
    assert for_pb(body.result) is module
    result = result_from_pb(body.result)
    assert result is not None and for_result(result) is module
    site = module.site_rows(result)
    assert site and all(v.estimate >= 0 for _, _, v in site)
    combined = combine_results([result, result])
    assert combined is not None and for_result(combined) is module
    rows, odds = module.combined_rows(combined)
    by_name = {(variant, quantity): value for variant, quantity, value in rows}
    # Every number a site released is combined, as the sum over the two sites; the rest are ratios.
    for variant, quantity, value in site:
        assert by_name[variant, quantity].estimate == 2 * value.estimate, (variant, quantity)
    assert {q for _, q in by_name} - {q for _, q, _ in site} <= module.ratios
    assert bool(odds) == ("odds_ratio" in module.ratios)
