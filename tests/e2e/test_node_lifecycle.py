"""A node's registration over its life (issue 15, item 2), with real processes on loopback and mutual TLS: a
coordinator and two nodes, changed only through ``genogate nodes register/update/remove`` as an operator runs
them, while the coordinator process keeps running throughout.

site-a is pinned by its CA: it renews its certificate (new key, same name, same CA) and comes back on a new
port; ``nodes update --endpoint`` alone makes the next federated query reach it. site-b is pinned by its
certificate: after its renewal the coordinator refuses it (BAD_SIGNATURE) until ``nodes update --cert`` names
the new one. Removing site-b is refused while the approved study names it; forced, it is no longer listed or
asked, the study's queries report it refused (NOT_FOUND) while site-a answers, and the name registers again.
Only operators may change the registry; every change is in the coordinator's audit log, whose chain verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import load_coordinator_config
from genogate import audit, tls
from genogate.client import Client, QueryResult
from genogate.coordclient import CoordinatorClient
from genogate.errors import PermissionDenied, Reason
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import ClientTLS
from genogate.query import Kind
from genogate.signing import Signer
from genogate.studies import NodeUpdate, ReviewDecision, Study, StudyProposal, StudyState
from node.ingest import ingest
from tests.integration.conftest import BASE_RECORDS, sheet_text, vcf_text
from tests.nodes import client_tls, make_ca, make_coordinator, make_node, write_profile
from tests.processes import ROOT, Proc, start_coordinator, start_node

SITES = ("site-a", "site-b")


@dataclass
class Fed:
    root: Path
    ca: Path
    coordinator: Proc
    cdir: Path
    nodes: dict[str, Proc]
    env: dict[str, str]
    operator: ClientTLS
    operator_profile: Path
    alice_tls: ClientTLS
    alice: Signer
    committee: list[Signer]

    def genogate(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "genogate.cli", "--profile", str(self.operator_profile), *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)

    def json(self, *args: str) -> Any:
        out = self.genogate("--json", *args)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def restart(self, site: str, *, renew: bool) -> str:
        """Stop ``site``, optionally renew its certificate (new key, same name, same CA), start it again on a
        new port (the node's default ``listen`` port 0); returns its new address."""
        old = self.nodes.pop(site)
        old.stop()
        if renew:
            d = self.root / site / "tls"
            key = tls.new_key()
            csr = tls.new_csr(key, site, [site, "localhost", "127.0.0.1"])
            ca_key, ca_cert = (self.ca / "ca.key").read_bytes(), (self.ca / "ca.pem").read_bytes()
            cert = tls.issue(ca_key, ca_cert, csr, server=True, client=True, days=30)
            tls.write_secret(d / "node.key", key, overwrite=True)
            tls.write_file(d / "node.pem", cert, overwrite=True)
        config = self.root / site / "node.toml"
        self.nodes[site] = start_node(config, self.operator, log=self.root / f"{site}.log", env=self.env)
        assert self.nodes[site].address != old.address
        return self.nodes[site].address

    def ask(self, study: Study) -> QueryResult:
        with Client(self.coordinator.address, self.alice_tls, self.alice, timeout_s=60) as client:
            return client.run(study.study_id, CohortCount(), epsilon=0.5, site_timeout_ms=4_000)


def _status(result: QueryResult) -> dict[str, tuple[str, str]]:
    return {s.site: (s.status, s.reason) for s in result.sites}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    root = tmp_path_factory.mktemp("lifecycle")
    ca = make_ca(root / "ca")
    committee = [Signer(Ed25519PrivateKey.generate()) for _ in range(2)]
    cdir = make_coordinator(
        root, ca, operators=("operator",), members=[(f"m{i}", m.public_raw) for i, m in enumerate(committee)]
    )
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key")
    operator = client_tls(ca, "operator", root / "clients")
    alice_tls = client_tls(ca, "alice", root / "clients")
    coordinator = start_coordinator(cdir / "coordinator.toml", operator, log=root / "coord.log")
    env = {
        "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee_key.public_raw.hex(),
        "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator.address,
        "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",
        "GENOGATE_NODE_POLICY__ALLOWED_PURPOSES": "GRU,HMB",
        "GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT": "0",
    }
    (root / "in.vcf").write_text(vcf_text(BASE_RECORDS))
    (root / "sheet.tsv").write_text(sheet_text())
    procs: dict[str, Proc] = {}
    try:
        for site in SITES:
            node = make_node(root / site, site, ca, client=True)
            ingest(node.store, [root / "in.vcf"], root / "sheet.tsv")
            procs[site] = start_node(node.config, operator, log=root / f"{site}.log", env=env)
        signing_key = root / "operator.key"
        tls.write_secret(signing_key, tls.new_identity_key())
        profile = write_profile(
            root / "operator.toml", "operator", coordinator.address, ca, root / "clients", signing_key
        )
        alice = Signer(Ed25519PrivateKey.generate())
        yield Fed(root, ca, coordinator, cdir, procs, env, operator, profile, alice_tls, alice, committee)
        with CoordinatorClient(coordinator.address, operator) as c:
            c.list_nodes()  # the coordinator still serves at the end
    finally:
        for p in procs.values():
            p.stop()
        coordinator.stop()


def _approve(fed: Fed) -> Study:
    with CoordinatorClient(fed.coordinator.address, fed.operator) as c:
        c.register_researcher("alice", "a university", fed.alice.public_raw)
        proposal = StudyProposal(
            title="node lifecycle",
            purpose="HMB",
            kinds=(Kind.COHORT_COUNT,),
            sites=SITES,
            epsilon_total_per_site=100,
            epsilon_per_query_cap=1,
            duration_days=30,
            researcher_key_fingerprint=fed.alice.key_id,
        )
        study = c.propose(proposal, fed.alice)
        for member in fed.committee:
            study = c.review(study, ReviewDecision.APPROVE, "ok", member)
    assert study.state == StudyState.APPROVED
    return study


def test_a_node_moves_renews_and_leaves_without_a_coordinator_restart(fed: Fed) -> None:
    pid = fed.coordinator.popen.pid
    ca_sha = tls.fingerprint_sha256((fed.ca / "ca.pem").read_bytes())
    a = fed.json(
        "nodes",
        "register",
        "--name",
        "site-a",
        "--endpoint",
        fed.nodes["site-a"].address,
        "--ca",
        str(fed.ca / "ca.pem"),
    )
    assert a["node"] == {**a["node"], "ca_sha256": ca_sha, "version": 1, "genome_build": "GRCh37"}
    assert "cert_sha256" not in a["node"]
    b_cert = fed.root / "site-b" / "tls" / "node.pem"
    fed.json("nodes", "register", "--name", "site-b", "--endpoint", fed.nodes["site-b"].address, "--cert", str(b_cert))
    study = _approve(fed)
    assert _status(fed.ask(study)) == {"site-a": ("answered", ""), "site-b": ("answered", "")}

    # site-a renews its certificate and comes back on another port: one endpoint update, no pin change.
    old_a = fed.nodes["site-a"].address
    new_a = fed.restart("site-a", renew=True)
    assert fed.ask(study).sites[0].status != "answered"  # the registry still names the old port
    doc = fed.json("nodes", "update", "site-a", "--endpoint", new_a)
    assert doc["before"]["endpoint"] == old_a and doc["node"]["endpoint"] == new_a
    assert doc["node"]["version"] == 2 and doc["node"]["ca_sha256"] == ca_sha
    assert _status(fed.ask(study))["site-a"] == ("answered", "")

    # site-b is pinned by its certificate: after a renewal it is refused until the new certificate is named.
    new_b = fed.restart("site-b", renew=True)
    fed.json("nodes", "update", "site-b", "--endpoint", new_b)
    assert _status(fed.ask(study))["site-b"] == ("refused", "BAD_SIGNATURE")
    doc = fed.json("nodes", "update", "site-b", "--cert", str(b_cert), "--from-node")
    assert doc["node"]["cert_sha256"] == tls.fingerprint_sha256(b_cert.read_bytes())
    assert doc["node"]["version"] == 3
    assert _status(fed.ask(study)) == {"site-a": ("answered", ""), "site-b": ("answered", "")}
    same = fed.genogate("nodes", "update", "site-b", "--endpoint", new_b)  # no change: said, nothing stepped
    assert same.returncode == 0 and "nothing changed (version 3)" in same.stdout, same.stdout + same.stderr

    # Removal: refused while the approved study names the site, then forced.
    refused = fed.genogate("nodes", "remove", "site-b")
    assert refused.returncode != 0 and study.study_id in refused.stderr and "--force" in refused.stderr
    doc = fed.json("nodes", "remove", "site-b", "--force")
    assert doc["study_ids"] == [study.study_id] and doc["node"]["endpoint"] == new_b
    listed = fed.json("nodes", "list")
    assert [n["name"] for n in listed["nodes"]] == ["site-a"]
    result = fed.ask(study)
    assert _status(result) == {"site-a": ("answered", ""), "site-b": ("refused", "NOT_FOUND")}
    assert result.combined is not None  # the remaining site's answer is combined
    text = fed.genogate("nodes", "update", "site-b", "--endpoint", new_b)
    assert text.returncode != 0 and "no node named 'site-b' is registered" in text.stderr

    # The removed name registers again, afresh.
    doc = fed.json("nodes", "register", "--name", "site-b", "--endpoint", new_b, "--cert", str(b_cert))
    assert doc["node"]["version"] == 1
    assert _status(fed.ask(study)) == {"site-a": ("answered", ""), "site-b": ("answered", "")}
    assert fed.coordinator.popen.pid == pid and fed.coordinator.popen.poll() is None

    # Every change is in the coordinator's audit log, by the operator, old -> new; the chain verifies.
    config = load_coordinator_config(fed.cdir / "coordinator.toml", env={})
    path = config.audit.path if config.audit.path.is_absolute() else fed.cdir / config.audit.path
    rows = audit.read_file(path)
    key = Signer.from_pem_file(fed.cdir / "keys" / "committee.key")
    assert audit.check(rows, audit.keys(key.public_raw)).ok
    entries = [json.loads(r.entry) for r in rows]
    changes = [(e["event"], e["node"]) for e in entries if e["event"] != "run_query"]
    assert changes == [
        ("register_node", "site-a"),
        ("register_node", "site-b"),
        ("update_node", "site-a"),
        ("update_node", "site-b"),
        ("update_node", "site-b"),
        ("remove_node", "site-b"),
        ("register_node", "site-b"),
    ]
    moved = next(e for e in entries if e["event"] == "update_node")
    assert moved["caller"] == "operator" and moved["changed"] == {"endpoint": [old_a, new_a]} and moved["version"] == 2
    removed = next(e for e in entries if e["event"] == "remove_node")
    assert removed["forced"] is True and removed["studies"] == [study.study_id]


def test_only_operators_may_update_or_remove_nodes(fed: Fed) -> None:
    with CoordinatorClient(fed.coordinator.address, fed.operator) as c:
        if not c.list_nodes():  # run alone: register a site to try to change
            fed.json(
                "nodes",
                "register",
                "--name",
                "site-a",
                "--endpoint",
                fed.nodes["site-a"].address,
                "--ca",
                str(fed.ca / "ca.pem"),
            )
        before = c.list_nodes()
    assert before
    with CoordinatorClient(fed.coordinator.address, fed.alice_tls) as alice:
        for call in (
            lambda: alice.update_node(NodeUpdate(before[0].name, endpoint="127.0.0.1:1")),
            lambda: alice.remove_node(before[0].name, force=True),
        ):
            with pytest.raises(PermissionDenied) as exc:
                call()
            assert exc.value.reason == Reason.NOT_AUTHORIZED
        assert alice.list_nodes() == before


def test_a_node_that_replaces_its_identity_key_is_believed_under_its_new_key(fed: Fed) -> None:
    """site-a replaces its Ed25519 identity key and restarts at the same endpoint, so the coordinator's
    channel (and the receipt key it cached) survives: the next release, signed under the new key, is checked
    again under the key the node now publishes and answered, with no registry change and no coordinator
    restart. A release that fails under both keys stays BAD_SIGNATURE (tests/e2e/test_faults.py)."""
    pid = fed.coordinator.popen.pid
    with CoordinatorClient(fed.coordinator.address, fed.operator) as c:
        names = {n.name for n in c.list_nodes()}
    if "site-a" not in names:  # run alone
        fed.json("nodes", "register", "--name", "site-a", "--endpoint", fed.nodes["site-a"].address, "--ca",
                 str(fed.ca / "ca.pem"))  # fmt: skip
    with CoordinatorClient(fed.coordinator.address, fed.operator) as c:
        c.register_researcher("alice", "a university", fed.alice.public_raw)  # idempotent
        proposal = StudyProposal(
            title="identity key replacement",
            purpose="HMB",
            kinds=(Kind.COHORT_COUNT,),
            sites=("site-a",),
            epsilon_total_per_site=100,
            epsilon_per_query_cap=1,
            duration_days=30,
            researcher_key_fingerprint=fed.alice.key_id,
        )
        study = c.propose(proposal, fed.alice)
        for member in fed.committee:
            study = c.review(study, ReviewDecision.APPROVE, "ok", member)
    assert _status(fed.ask(study)) == {"site-a": ("answered", "")}  # the channel caches the old key

    old = fed.nodes.pop("site-a")
    address = old.address
    old.stop()
    key_file = fed.root / "site-a" / "keys" / "identity.key"
    before = key_file.read_bytes()
    tls.write_secret(key_file, tls.new_identity_key(), overwrite=True)
    assert key_file.read_bytes() != before
    env = {**fed.env, "GENOGATE_NODE_SERVER__LISTEN": address}
    fed.nodes["site-a"] = start_node(fed.root / "site-a" / "node.toml", fed.operator, log=fed.root / "a2.log", env=env)
    assert fed.nodes["site-a"].address == address

    assert _status(fed.ask(study)) == {"site-a": ("answered", "")}
    assert fed.coordinator.popen.pid == pid
