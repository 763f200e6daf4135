"""The query-kind registry: every ``Kind`` is one module defining its query dataclass, its result and combined
result dataclasses (with their wire conversion) and sensitivity and implementing every part of ``QueryKind``,
``Kind`` mirrors the wire enum, the registry discovers the modules (a new module is picked up by the registry,
the wire conversion and the CLI with no other edit; a bad one is an import error naming it), the wire form
round-trips, the canonical form is idempotent, and no per-kind branch lives outside ``genogate/kinds``."""

from __future__ import annotations

import abc
import ast
import dataclasses
import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import genogate.kinds
from genogate import cli
from genogate import results as res
from genogate.errors import InvalidArgument, UsageError
from genogate.kinds import KINDS, canonical, canonical_bytes, for_command, for_pb, kind_of, query_from_pb, query_to_pb
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.base import QueryKind
from genogate.kinds.carrier_count import CarrierCount
from genogate.kinds.case_control import CaseControl
from genogate.kinds.cohort_count import CohortCount
from genogate.kinds.genotype_counts import GenotypeCounts
from genogate.query import AgeRange, And, Kind, Not, PhenotypeHas, Query, Region, SexIs, Variant
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
    "result_type": type,
    "combined_type": type,
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
        "result_to_pb",
        "result_from_pb",
        "combined_to_pb",
        "combined_from_pb",
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
    assert {"result_to_pb", "result_from_pb", "combined_to_pb", "combined_from_pb"} <= abstract

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


def test_kind_mirrors_the_wire_enum_member_for_member() -> None:
    """``Kind`` is written out so that type checkers see its members; the wire ``QueryKind`` enum is the
    contract. A proto kind without a ``Kind`` member, a ``Kind`` member without a proto kind, or a different
    number fails here."""
    wire = {v.name: v.number for v in pb.QueryKind.DESCRIPTOR.values}
    assert wire.pop("QUERY_KIND_UNSPECIFIED") == 0
    assert wire == {f"QUERY_KIND_{k.name}": k.value for k in Kind}


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=lambda k: k.name)
def test_each_kind_defines_its_query_and_declares_its_sensitivity_in_its_module(kind: QueryKind) -> None:
    module = type(kind).__module__
    assert module == f"genogate.kinds.{kind.name}"
    assert kind.query_type.__module__ == module
    assert issubclass(kind.query_type, Query) and dataclasses.is_dataclass(kind.query_type)
    assert kind.query_type.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "sensitivity" in vars(type(kind)), "declared by the kind itself, not inherited"
    for typ, base in ((kind.result_type, res.QueryResult), (kind.combined_type, res.CombinedResult)):
        assert typ.__module__ == module, typ
        assert issubclass(typ, base) and dataclasses.is_dataclass(typ) and typ.kind is kind.kind
        assert typ.__dataclass_params__.frozen  # type: ignore[attr-defined]
    for name in (
        "result_type",
        "combined_type",
        "result_to_pb",
        "result_from_pb",
        "combined_to_pb",
        "combined_from_pb",
    ):
        assert name in vars(type(kind)), f"{name}: declared by the kind itself, not inherited"
    sens = kind.sensitivity(3)
    assert sens.l1 >= 1 and sens.l2 >= 1 and sens.length >= 1


def _class_bases(path: Path) -> list[tuple[str, set[str]]]:
    return [
        (node.name, {b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases})
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    ]


def test_query_classes_and_kind_classes_are_defined_only_in_their_kind_modules() -> None:
    """Read from the source: a ``Query`` dataclass, a ``QueryKind`` subclass, a site result and a combined
    result (on ``genogate.results``' bases) are defined in a kind module of ``genogate/kinds``, one of each per
    module, and nowhere else in the shared package, the node or the coordinator; ``genogate.query``,
    ``genogate.privacy``, ``genogate.results`` and ``genogate.convert`` name no kind (adding one edits none)."""
    bases_of_a_kind = {"Query", "QueryKind", "res.QueryResult", "res.CombinedResult", "QueryResult", "CombinedResult"}
    found: dict[str, list[tuple[str, str]]] = {}
    for package in ("genogate", "node", "coordinator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, bases in _class_bases(path):
                for base in bases_of_a_kind & bases:
                    found.setdefault(rel, []).append((base.removeprefix("res."), name))
    assert set(found) == {f"genogate/kinds/{k.label}.py" for k in Kind}
    for rel, classes in found.items():
        assert sorted(base for base, _ in classes) == ["CombinedResult", "Query", "QueryKind", "QueryResult"], rel
    for rel in ("genogate/query.py", "genogate/privacy.py", "genogate/results.py", "genogate/convert.py"):
        named = _kind_names_in_code(ROOT / rel, but_in="Kind")
        assert not named, (rel, named)


def _kind_names_in_code(path: Path, but_in: str) -> set[str]:
    """The kinds (``COHORT_COUNT``/``CohortCount``/``cohort_count``...) the code of a module names, outside
    its docstrings (which may describe the kinds) and the class ``but_in``."""
    tree = ast.parse(path.read_text())
    tree.body = [n for n in tree.body if not (isinstance(n, ast.ClassDef) and n.name == but_in)]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            body[0] = ast.Pass()
    spellings = {s: k for k in Kind for s in (k.name, k.label, k.name.title().replace("_", ""))}
    return {spellings[m] for m in re.findall(r"\w+", ast.unparse(tree)) if m in spellings}


# A new kind module is picked up with no other edit. A new kind needs its wire messages (and ``Kind`` member),
# which a test cannot add, so the toy replaces a kind in a temporary copy of the package: cohort_count.py goes,
# headcount.py (the cohort count under another name, dataclass and sub-command) comes, and a fresh interpreter
# loads the copy as ``genogate.kinds`` and asks the registry, the signed envelope's wire form and the CLI.

_LOAD_COPY = """
import importlib.util, json, sys
import genogate

copy = sys.argv[1]
spec = importlib.util.spec_from_file_location(
    "genogate.kinds", copy + "/__init__.py", submodule_search_locations=[copy]
)
module = importlib.util.module_from_spec(spec)
sys.modules["genogate.kinds"] = module
try:
    spec.loader.exec_module(module)
except ImportError as exc:
    print(json.dumps({"import_error": str(exc)}))
    raise SystemExit(0)
genogate.kinds = module
"""

_ASK_TOY = """
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import contextlib, io

from genogate import cli, envelope
from genogate import results as res
from genogate.kinds import KINDS, for_command, for_pb, for_result, kind_of, query_to_pb
from genogate.kinds import combined_from_pb, combined_to_pb, release_body_from_pb, release_body_to_pb
from genogate.kinds import result_from_pb, result_to_pb
from genogate.query import Kind
from genogate.signing import Signer

toy = KINDS[Kind.COHORT_COUNT]
parser = cli._parser()
args = parser.parse_args(["query", "headcount", "--study", "S", "--epsilon", "1", "--where", "sex=F"])
q = for_command(args.kind).from_args(args)
signer = Signer(Ed25519PrivateKey.generate())
payload, signature = envelope.sign(envelope.build(q, study_id="S", epsilon=1.0), signer)
opened = envelope.open_envelope(payload, signature, signer.public_raw, max_bytes=None)
try:
    parser.parse_args(["query", "cohort-count", "--study", "S", "--epsilon", "1"])
    old_command = True
except SystemExit:
    old_command = False
usage = io.StringIO()
with contextlib.redirect_stdout(usage), contextlib.suppress(SystemExit):
    parser.parse_args(["query", "--help"])
result = toy.result_type(res.NoisyValue(estimate=7, threshold=5))
combined = toy.combined_type(res.CombinedValue(estimate=14.0, sites=2))
body = res.ReleaseBody(query_id="q", result=result)
print(json.dumps({
    "result_type": [toy.result_type.__module__, toy.result_type.__qualname__],
    "combined_type": [toy.combined_type.__module__, toy.combined_type.__qualname__],
    "result_oneof": result_to_pb(result).WhichOneof("kind"),
    "results_round_trip": [
        for_result(result) is toy,
        for_result(combined) is toy,
        result_from_pb(result_to_pb(result)) == result,
        combined_from_pb(combined_to_pb(combined)) == combined,
        release_body_from_pb(release_body_to_pb(body)) == body,
        result_to_pb(result).cohort_count.count.estimate == 7,
    ],
    "kinds": [m.name for m in KINDS.values()],
    "module": type(toy).__module__,
    "query_type": toy.query_type.__qualname__,
    "query": repr(q),
    "kind_of": kind_of(q) is toy,
    "oneof": query_to_pb(q).WhichOneof("kind"),
    "for_pb": for_pb(query_to_pb(q)) is toy,
    "opened": repr(opened.query),
    "same": opened.query == q,
    "old_command": old_command,
    "help": toy.help,
    "usage": usage.getvalue(),
    "sensitivity": [toy.sensitivity(1).l1, toy.sensitivity(1).length],
}))
"""


def _kinds_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "kinds"
    shutil.copytree(ROOT / "genogate/kinds", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _run(copy: Path, script: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_COPY + script, str(copy)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_new_kind_module_is_picked_up_by_the_registry_wire_and_cli_with_no_other_edit(tmp_path: Path) -> None:
    copy = _kinds_copy(tmp_path)
    source = (copy / "cohort_count.py").read_text()
    toy, n = re.subn(r"(?<!pb\.)\b(Combined)?CohortCount(Result)?\b", r"\1Headcount\2", source)
    assert n >= 8, "the toy is the cohort count under another name (its query, result and combined result)"
    toy, n = re.subn(r'command = "cohort-count"', 'command = "headcount"', toy)
    assert n == 1
    toy, n = re.subn(r'help = "[^"]*"', 'help = "the toy headcount"', toy)
    assert n == 1
    (copy / "cohort_count.py").unlink()
    (copy / "headcount.py").write_text(toy)

    seen = _run(copy, _ASK_TOY)
    assert seen["kinds"] == [k.label for k in Kind]
    assert seen["module"] == "genogate.kinds.headcount"
    assert seen["query_type"] == "Headcount"
    assert seen["result_type"] == ["genogate.kinds.headcount", "HeadcountResult"]
    assert seen["combined_type"] == ["genogate.kinds.headcount", "CombinedHeadcount"]
    assert seen["result_oneof"] == "cohort_count"
    assert seen["results_round_trip"] == [True] * 6
    assert seen["query"] == seen["opened"] == "Headcount(filter=SexIs(sex='F'))"
    assert seen["kind_of"] is seen["for_pb"] is seen["same"] is True
    assert seen["oneof"] == "cohort_count"
    assert seen["old_command"] is False
    assert seen["help"] == "the toy headcount"
    assert "headcount" in str(seen["usage"]) and "the toy headcount" in str(seen["usage"])
    assert "cohort-count" not in str(seen["usage"])
    assert seen["sensitivity"] == [1, 1]


def test_the_unmodified_copy_loads_as_the_package_does(tmp_path: Path) -> None:
    """The loader of the toy test itself: the untouched copy gives the real registry (so a failure above is
    the toy's, not the loader's)."""
    copy = _kinds_copy(tmp_path)
    script = (
        'print(json.dumps({"file": module.__file__, "kinds": [type(k).__module__ for k in module.KINDS.values()]}))'
    )
    seen = _run(copy, script)
    assert seen["file"] == str(copy / "__init__.py")
    assert seen["kinds"] == [f"genogate.kinds.{k.label}" for k in Kind]


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        (
            "no_kind.py",
            "X = 1\n",
            r"genogate\.kinds\.no_kind: a kind module must export its QueryKind instance as KIND, found None",
        ),
        ("not_a_kind.py", "KIND = 'cohort_count'\n", r"genogate\.kinds\.not_a_kind: .* found 'cohort_count'"),
        (
            "again.py",
            "from genogate.kinds.cohort_count import KIND\n",
            r"genogate\.kinds\.cohort_count: its KIND is Kind\.COHORT_COUNT,"
            r" which genogate\.kinds\.again already declares",
        ),
        ("cohort_count.py", None, r"genogate\.kinds: no module declares the kind\(s\) COHORT_COUNT"),
    ],
    ids=["missing", "not-a-query-kind", "duplicate", "kind-without-module"],
)
def test_a_bad_kind_module_is_an_import_error_naming_it(
    tmp_path: Path, name: str, text: str | None, error: str
) -> None:
    copy = _kinds_copy(tmp_path)
    if text is None:
        (copy / name).unlink()
    else:
        (copy / name).write_text(text)
    seen = _run(copy, 'print(json.dumps({"loaded": True}))')
    assert re.fullmatch(error, str(seen.get("import_error"))), seen


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
    from genogate.kinds import for_result, result_from_pb
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
