"""``study preview`` asks the nodes (issue 15, item 4), with real processes on loopback and real mTLS.

Three nodes with their own policies behind one coordinator: site-a with the defaults (no public site list, so
carrier-count is refused with that reason), site-b stricter (GRU only, cohort counts only, ε 0.1 per query,
no participant bucket), site-c registered and then stopped. The coordinator's PreviewStudy asks each node's
DescribePolicy at once and reports what each said; its problems are only the real ones, information goes to
the notes; an unreachable site is reported and never fails the preview; the half-width is one number in the
SDK's answer, the table's CI95 column and the note. DescribePolicy answers the coordinator only and writes
nothing to the node's ledger.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from genogate import duo
from genogate.coordclient import CoordinatorClient
from genogate.errors import PermissionDenied, Reason
from genogate.nodeclient import ClientTLS, NodeClient
from genogate.query import Kind
from genogate.rpc import error_from_rpc
from genogate.signing import Signer
from genogate.studies import NodeInfo, StudyPreview, StudyProposal, halfwidth_text
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import node_pb2 as npb
from node.ingest.synth_spec import SynthSpec
from node.preview import bucket
from node.synth_cli import synth_store
from tests.nodes import client_tls, make_ca, make_coordinator, make_node, write_profile
from tests.processes import ROOT, Proc, start_coordinator, start_node

SITES = ("site-a", "site-b", "site-c")
SPEC = SynthSpec(samples=600, variants=200, seed=5)


@dataclass
class Fed:
    root: Path
    coordinator: Proc
    nodes: dict[str, Proc]
    operator: ClientTLS
    coord_tls: ClientTLS  # the coordinator's common name ("coord"), as the coordinator calls the nodes
    alice_tls: ClientTLS
    alice: Signer
    profile: Path
    sheets: dict[str, Path]

    def preview(self, **overrides: object) -> StudyPreview:
        with CoordinatorClient(self.coordinator.address, self.alice_tls) as c:
            return c.preview_study(proposal(self.alice, **overrides))


def proposal(alice: Signer, **overrides: object) -> StudyProposal:
    fields: dict[str, object] = {
        "title": "carriers",
        "purpose": "HMB",
        "kinds": (Kind.ALLELE_FREQUENCY, Kind.COHORT_COUNT, Kind.CARRIER_COUNT),
        "sites": SITES,
        "epsilon_total_per_site": 2.0,
        "epsilon_per_query_cap": 0.5,
        "duration_days": 30,
        "researcher_key_fingerprint": alice.key_id,
    }
    fields.update(overrides)
    return StudyProposal(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    root = tmp_path_factory.mktemp("preview")
    ca = make_ca(root / "ca")
    cdir = make_coordinator(root, ca, operators=("operator",))
    operator = client_tls(ca, "operator", root / "clients")
    coordinator = start_coordinator(
        cdir / "coordinator.toml",
        operator,
        log=root / "coord.log",
        env={"GENOGATE_COORDINATOR_FANOUT__SITE_TIMEOUT_MS": "3000"},
    )
    procs: dict[str, Proc] = {}
    sheets: dict[str, Path] = {}
    try:
        base = {
            "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",
            "GENOGATE_NODE_POLICY__PREVIEW_PARTICIPANTS": "true",  # opted in (the default is off)
        }
        policy = {
            "site-a": {},
            "site-b": {
                "GENOGATE_NODE_POLICY__ALLOWED_PURPOSES": "GRU",
                "GENOGATE_NODE_POLICY__ALLOWED_KINDS": "cohort_count",
                "GENOGATE_NODE_POLICY__EPSILON_PER_QUERY_CAP": "0.1",
                "GENOGATE_NODE_POLICY__PREVIEW_PARTICIPANTS": "false",
            },
            "site-c": {},
        }
        for i, site in enumerate((*SITES, "site-d")):
            node = make_node(root / site, site, ca)
            paths, _ = synth_store(node.store, root / "cohort" / site, SPEC, (i % 3, len(SITES)), progress=False)
            sheets[site] = paths["samples"]
            env = {**base, **policy[site]} if site in policy else {}  # site-d: its operator named no coordinator
            procs[site] = start_node(node.config, operator, log=root / f"{site}.log", env=env)
        with CoordinatorClient(coordinator.address, operator) as c:
            for site in (*SITES, "site-d"):
                cert = (root / site / "tls" / "node.pem").read_bytes()
                c.register_node(NodeInfo(site, procs[site].address, fingerprint_sha256(cert), ""))
            alice = Signer.from_pem_file(_key(root / "alice.key"))
            c.register_researcher("alice", "a university", alice.public_raw)
        procs["site-c"].stop()  # registered, then down: the preview must report it, not fail
        profile = write_profile(
            root / "alice.toml", "alice", coordinator.address, ca, root / "clients", root / "alice.key"
        )
        yield Fed(
            root,
            coordinator,
            procs,
            operator,
            client_tls(ca, "coord", root / "clients"),
            client_tls(ca, "alice", root / "clients"),
            alice,
            profile,
            sheets,
        )
    finally:
        for p in procs.values():
            p.stop()
        coordinator.stop()


def _key(path: Path) -> Path:
    if not path.exists():
        write_secret(path, new_identity_key())
    return path


def _consenting(sheet: Path, purpose: str) -> int:
    parsed = duo.parse_purpose(purpose)
    with open(sheet) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return sum(duo.admits(duo.normalise_codes(r["consent"].split(";")), parsed) for r in rows)


def test_each_reachable_site_says_what_its_policy_makes_of_the_study(fed: Fed) -> None:
    out = fed.preview()
    a, b, c = out.sites
    assert (a.site, b.site, c.site) == SITES
    assert a.registered and a.reachable and b.registered and b.reachable
    assert a.genome_build == b.genome_build == out.grant_body.assembly and a.version
    assert a.purpose_accepted and not b.purpose_accepted
    assert "does not accept the purpose HMB" in b.note and "allowed_purposes: GRU" in b.note
    # site-a answers allele frequencies for named variants only, and refuses carrier counts, saying why.
    kinds_a = {k.kind: k for k in a.kinds}
    assert kinds_a[Kind.COHORT_COUNT].allowed and not kinds_a[Kind.COHORT_COUNT].note
    assert kinds_a[Kind.ALLELE_FREQUENCY].allowed and "named variants only" in kinds_a[Kind.ALLELE_FREQUENCY].note
    assert not kinds_a[Kind.CARRIER_COUNT].allowed and kinds_a[Kind.CARRIER_COUNT].refusal == Reason.KIND_REFUSED
    assert "does not publish its site list" in kinds_a[Kind.CARRIER_COUNT].note
    assert a.kinds_refused == (Kind.CARRIER_COUNT,)
    assert set(b.kinds_refused) == {Kind.ALLELE_FREQUENCY, Kind.CARRIER_COUNT}
    # The sites' own caps.
    assert (a.epsilon_per_query_cap, b.epsilon_per_query_cap) == (1.0, 0.1)
    # Participants: site-a's bucket is the decade of its consenting count; site-b publishes none.
    expected = bucket(_consenting(fed.sheets["site-a"], "HMB"))
    assert (a.participants_at_least, a.participants_below) == expected and expected[1] > 0
    assert (b.participants_at_least, b.participants_below) == (0, 0)


def test_problems_are_the_real_ones_and_information_goes_to_the_notes(fed: Fed) -> None:
    out = fed.preview()
    problems = list(out.problems)
    assert any(p.startswith("site-a: refuses carrier_count: carrier-count takes a region") for p in problems)
    assert any(p.startswith("site-b: this node's policy does not accept the purpose HMB") for p in problems)
    assert any(p.startswith("site-b: refuses allele_frequency: this node's policy does not answer") for p in problems)
    assert (
        "site-b: the per-query cap ε 0.5 is above the site's cap of ε 0.1 per query: queries asking more are refused "
        "there" in problems
    )
    assert any(p.startswith("site-c: could not be asked (failed UNAVAILABLE") for p in problems)
    assert len(problems) == 6, problems  # and nothing else: site-a has no other problem
    assert not any("queries" in p and "at eps" in p for p in problems)
    assert any(n.startswith("site-a: allele_frequency: named variants only") for n in out.notes)
    assert any(n.startswith("allele_frequency: 4 queries of 1 variant at eps 0.5") for n in out.notes)


def test_an_unreachable_site_is_reported_and_the_rest_answered(fed: Fed) -> None:
    out = fed.preview(sites=("site-c", "site-a"))
    c, a = out.sites
    assert c.registered and not c.reachable and not c.purpose_accepted and c.kinds == ()
    assert c.note.startswith("failed UNAVAILABLE") and a.reachable


def test_a_node_that_names_no_coordinator_says_what_its_operator_must_set(fed: Fed) -> None:
    out = fed.preview(sites=("site-d",))
    (d,) = out.sites
    assert d.registered and not d.reachable
    assert d.note.startswith("refused NOT_AUTHORIZED: this node answers this only to the coordinator")
    assert "set [grants] coordinator_common_name" in d.note
    assert out.problems == (f"site-d: could not be asked ({d.note})",)


def test_a_study_the_sites_accept_has_no_problems(fed: Fed) -> None:
    out = fed.preview(sites=("site-a",), kinds=(Kind.COHORT_COUNT,), purpose="HMB")
    assert out.problems == ()
    assert out.sites[0].reachable and out.sites[0].purpose_accepted


def test_the_half_width_is_one_number_in_the_answer_the_table_and_the_note(fed: Fed) -> None:
    args = ("--title", "t", "--purpose", "HMB", "--kinds", "allele-frequency,cohort-count", "--sites", "site-a")
    args += ("--epsilon-total", "2", "--epsilon-cap", "0.5", "--days", "30")
    run = subprocess.run(
        [sys.executable, "-m", "genogate.cli", "study", "preview", *args, "--profile", str(fed.profile)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SITE ") and "CI95" in line)
    row = lines[header + 1].split()
    assert row[0] == "site-a"
    shown = row[-1]
    with CoordinatorClient(fed.coordinator.address, fed.alice_tls) as c:
        sdk = c.preview_study(proposal(fed.alice, sites=("site-a",), kinds=(Kind.ALLELE_FREQUENCY, Kind.COHORT_COUNT)))
    assert shown == halfwidth_text(sdk.sites[0].count_ci95_half_width) and shown.startswith("±")
    note = next(line for line in lines if line.strip().startswith("- allele_frequency:"))
    assert f"each count {shown} (95%)" in note
    assert "no problems found" in run.stdout


def _describe(address: str, tls: ClientTLS) -> npb.DescribePolicyResponse:
    request = npb.DescribePolicyRequest(purpose="HMB", kinds=[pb.QUERY_KIND_COHORT_COUNT])
    with NodeClient(address, tls, timeout_s=10) as n:
        try:
            answer: npb.DescribePolicyResponse = n.stub.DescribePolicy(request, timeout=10)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
    return answer


def test_only_the_coordinator_may_ask_a_node(fed: Fed) -> None:
    for tls in (fed.alice_tls, fed.operator):
        with pytest.raises(PermissionDenied) as refused:
            _describe(fed.nodes["site-a"].address, tls)
        assert "only to the federation's coordinator" in refused.value.message
    assert _describe(fed.nodes["site-a"].address, fed.coord_tls).name == "site-a"


def _ledger(site_dir: Path) -> list[str]:
    """Every row of every table of a node's ledger (its charges, stored answers and audit log)."""
    con = sqlite3.connect(f"file:{site_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_a_preview_writes_nothing_to_any_ledger(fed: Fed) -> None:
    before = {site: _ledger(fed.root / site) for site in ("site-a", "site-b")}
    fed.preview()
    _describe(fed.nodes["site-a"].address, fed.coord_tls)
    with pytest.raises(PermissionDenied):
        _describe(fed.nodes["site-a"].address, fed.alice_tls)
    assert {site: _ledger(fed.root / site) for site in ("site-a", "site-b")} == before
    assert any("CREATE TABLE" in line for line in before["site-a"])  # the dump did read the ledger
