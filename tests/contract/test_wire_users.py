"""Who may touch the generated wire code (``genogate.wire``): read from the source, like the layering rules
(tests/contract/test_layers.py, whose import graph this reuses: every import at any depth counts).

Protobuf stays at the edges: the servicers, the clients (the SDK's RPC wrappers), the node's release
(signing) step and the converters. The domain in the middle (the kinds' release shaping, combination and
rows, ``coordinator.combine``, the planner, DP, ledger, backends, ``genogate.results``) sees plain frozen
dataclasses. ``ALLOWED`` names every other module that imports ``genogate.wire``, each with its reason; a new
importer fails here until it is listed with one (or, better, converts at its edge instead), and an entry
whose module no longer imports the wire fails too, so the list only shrinks honestly."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from tests.contract.test_layers import GENERATED, PACKAGES, ROOT, Import, import_graph

#: Every module outside the generated code that may import ``genogate.wire``, and why.
ALLOWED: Mapping[str, str] = {
    # Converters.
    "genogate.convert": "the converters: every domain value <-> wire message (variants ... studies, results)",
    "genogate.kinds.base": "a kind's query and result wire conversion (to_pb ... combined_from_pb) is declared there",
    "genogate.kinds.registry": "query, result and release body wire conversion dispatched by kind (query_to_pb ...)",
    "genogate.kinds.cohort_count": "its query's and results' wire conversion (to_pb ... combined_from_pb)",
    "genogate.kinds.allele_frequency": "its query's and results' wire conversion (to_pb ... combined_from_pb)",
    "genogate.kinds.genotype_counts": "its query's and results' wire conversion (to_pb ... combined_from_pb)",
    "genogate.kinds.case_control": "its query's and results' wire conversion (to_pb ... combined_from_pb)",
    "genogate.kinds.carrier_count": "its query's and results' wire conversion (to_pb ... combined_from_pb)",
    "genogate.envelope": "builds, signs and decodes the signed query envelope: signatures are over wire bytes",
    # Servers and servicers.
    "node.app": "builds the gRPC server, the GetNodeInfo answer and the revocation-list fetcher (a client)",
    "node.servicer": "the node's servicer",
    "node.service": "answers the servicer in the signed wire Release and BudgetStatus it returns as they are",
    "node.release": "the release step: the kind's domain result to the ReleaseBody the node signs (bytes)",
    "node.policy": "hands the committee-signed grant, as sent, to node.grants (signatures are over wire bytes)",
    "node.grants": "verifies committee-signed grants and revocation lists: signatures are over wire bytes",
    "coordinator.app": "builds the coordinator's gRPC server",
    "coordinator.servicer": "the coordinator's servicer",
    "coordinator.queries": "RunQuery / GetStudyBudget at the edge: the sites' wire results in, the response out",
    "coordinator.fanout": "the coordinator's client of the nodes (relays signed bytes, reads signed releases)",
    "coordinator.state.sqlite": "stores signed proposal/review/grant bytes, decodes them to read fields, and "
    "serializes the grant terms (``coordinator.preview.grant_body``) into the GrantBody bytes the committee signs",
    # Clients (the SDK's RPC wrappers) and what prints their answers.
    "genogate.nodeclient": "the SDK's client of a node: converts right after the RPC",
    "genogate.coordclient": "the SDK's client of the coordinator: converts right before and after each RPC",
    "genogate.client": "the SDK's Client: converts RunQueryResponse / GetStudyBudget right after the RPC",
    "genogate.cli": "--json prints the RPC's response message (protobuf JSON mapping, the CLI's contract), "
    "converted back from the domain values the client returned",
    "genogate.reconcile": "reconciliation decodes signed receipts (ReleaseBody bytes) to match the node's log",
    "coordinator.record": "records a run's wire releases as digests and its combined answer's wire bytes' digest",
}

#: Modules that must never import the wire: the domain in the middle (a spot check beside the list above).
DOMAIN = (
    "genogate.results",
    "genogate.query",
    "genogate.studies",
    "genogate.risk",
    "genogate.table",
    "genogate.privacy",
    "coordinator.preview",
    "coordinator.combine",
    "node.dp",
    "node.counting",
    "node.backend",
)


@pytest.fixture(scope="module")
def wire_imports() -> list[Import]:
    return [
        e
        for e in import_graph(ROOT, PACKAGES)
        if any(e.target == g or e.target.startswith(g + ".") for g in GENERATED)
        and not any(e.source == g or e.source.startswith(g + ".") for g in GENERATED)
    ]


def test_only_the_listed_modules_import_the_wire(wire_imports: list[Import]) -> None:
    stray = [f"{e}" for e in wire_imports if e.source not in ALLOWED]
    assert not stray, "protobuf outside the edges (convert at the edge, or list it with a reason):\n" + "\n".join(stray)


def test_every_listed_module_still_imports_the_wire(wire_imports: list[Import]) -> None:
    users = {e.source for e in wire_imports}
    assert sorted(set(ALLOWED) - users) == [], "listed but no longer a wire user: remove it from ALLOWED"


def test_every_entry_gives_a_reason() -> None:
    assert all(reason.strip() for reason in ALLOWED.values())


def test_the_domain_never_imports_the_wire(wire_imports: list[Import]) -> None:
    assert not set(DOMAIN) & set(ALLOWED)
    assert [str(e) for e in wire_imports if e.source in DOMAIN] == []


def test_the_scan_sees_a_wire_import_it_does_not_allow(tmp_path: object) -> None:
    """The check itself, on a small tree: a domain module importing the wire is found."""
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "genogate" / "wire" / "v1").mkdir(parents=True)
    for d in ("genogate", "genogate/wire", "genogate/wire/v1"):
        (root / d / "__init__.py").write_text("")
    (root / "genogate" / "wire" / "v1" / "common_pb2.py").write_text("")
    (root / "genogate" / "results.py").write_text("def f():\n    from genogate.wire.v1 import common_pb2 as pb\n")
    (root / "genogate" / "convert.py").write_text("from genogate.wire.v1 import common_pb2\n")
    edges = import_graph(root, ("genogate",))
    users = {e.source for e in edges if e.target.startswith("genogate.wire")}
    assert users == {"genogate.results", "genogate.convert"}
