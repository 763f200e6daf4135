"""A real federation for the attacks: a development CA, a coordinator with a two-member committee, node
processes with mTLS, and a researcher whose studies are proposed and approved into committee-signed grants.

Built from the project's own helpers (``tests.nodes``, ``tests.processes``), as the end-to-end tests build
theirs. Queries go straight to a node (``send``, with the grant and the researcher's signature, as the
coordinator relays them; studies here grant the per-site breakdown) or through the coordinator (``client``).

Node policy: the shipped defaults, except where an experiment needs many independent trials at one node (a
"trial" stands for one study of its own): ``lab_policy`` raises the caps above the study (and the rate
limit) for such nodes. Only settings the node actually has are set, so the lab runs against whatever the
node's policy offers at this commit.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import envelope
from genogate.client import Client
from genogate.coordclient import CoordinatorClient
from genogate.errors import GenogateError, Reason
from genogate.nodeclient import ClientTLS, NodeClient
from genogate.query import Kind, Query
from genogate.results import ReleaseBody
from genogate.signing import Signer
from genogate.studies import NodeInfo, ReviewDecision, Study, StudyProposal, StudyState
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from node.config import PolicySettings
from tests.nodes import client_tls, make_ca, make_coordinator, make_node
from tests.processes import Proc, start_coordinator, start_node

ALL_KINDS = (
    Kind.COHORT_COUNT,
    Kind.ALLELE_FREQUENCY,
    Kind.GENOTYPE_COUNTS,
    Kind.CASE_CONTROL,
)
POLICY_FIELDS = {f.name: f for f in dataclasses.fields(PolicySettings)}
# ε: the ledger's largest amount, far above the sum of every lab study's budget at one node (at most ~6e4), so
# neither a node nor the coordinator's review of a proposal against a site's caps refuses an experiment's trial.
LAB_CAP = "1000000"


def shipped(setting: str) -> object:
    """The default of a ``[policy]`` setting at this commit (None if the node has no such setting)."""
    f = POLICY_FIELDS.get(setting)
    return None if f is None else f.default


def lab_policy() -> dict[str, str]:
    """Environment overrides for a node that hosts many trials: every cap above the study, the study cap and
    the request rates raised (those the node has)."""
    want = {
        "epsilon_per_study_cap": LAB_CAP,
        "epsilon_per_researcher_cap": LAB_CAP,
        "epsilon_per_node_cap": LAB_CAP,
        "delta_per_study_cap": "0.5",
        "delta_per_researcher_cap": "0.5",
        "delta_per_node_cap": "0.5",
        "rate_limit_per_study_per_minute": "100000000",
        "rate_limit_per_researcher_per_minute": "100000000",
        "rate_limit_per_node_per_minute": "100000000",
    }
    return {f"GENOGATE_NODE_POLICY__{k.upper()}": v for k, v in want.items() if k in POLICY_FIELDS}


@dataclass
class Lab:
    root: Path
    ca: Path
    coordinator: Proc
    operator: ClientTLS
    researcher_tls: ClientTLS
    researcher: Signer
    committee: list[Signer]
    committee_key: Signer
    nodes: dict[str, Proc] = field(default_factory=dict)
    _clients: dict[str, NodeClient] = field(default_factory=dict)
    _studies: int = 0

    def add_node(self, name: str, store: Path, *, build: str, env: dict[str, str] | None = None) -> Proc:
        """A node process serving a copy of ``store`` (its own ledger), registered with the coordinator."""
        node = make_node(self.root / name, name, self.ca, client=True)
        shutil.copy(store, node.store)
        full = {
            "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": self.committee_key.public_raw.hex(),
            "GENOGATE_NODE_GRANTS__COORDINATOR": self.coordinator.address,
            "GENOGATE_NODE_GRANTS__REVOCATION_REFRESH_SECONDS": "1",
            "GENOGATE_NODE_LOG__LEVEL": "warning",
            **(env or {}),
        }
        proc = start_node(node.config, self.operator, log=self.root / f"{name}.log", env=full, timeout=180)
        self.nodes[name] = proc
        with CoordinatorClient(self.coordinator.address, self.operator) as c:
            cert = (node.dir / "tls" / "node.pem").read_bytes()
            c.register_node(
                NodeInfo(name=name, endpoint=proc.address, cert_sha256=fingerprint_sha256(cert), genome_build=build)
            )
        return proc

    def study(self, sites: Sequence[str], *, epsilon_total: float, epsilon_cap: float, title: str = "attack") -> Study:
        """A study over ``sites``, proposed by the researcher and approved by both committee members."""
        self._studies += 1
        proposal = StudyProposal(
            title=f"{title} #{self._studies}",  # the coordinator keeps one study per identical proposal
            purpose="HMB",
            kinds=ALL_KINDS,
            sites=tuple(sites),
            epsilon_total_per_site=epsilon_total,
            epsilon_per_query_cap=epsilon_cap,
            duration_days=30,
            researcher_key_fingerprint=self.researcher.key_id,
            per_site_breakdown=True,
        )
        with CoordinatorClient(self.coordinator.address, self.operator) as c:
            study = c.propose(proposal, self.researcher)
            for member in self.committee:
                study = c.review(study, ReviewDecision.APPROVE, "attack harness", member)
        if study.state != StudyState.APPROVED:
            raise RuntimeError(f"study not approved: {study}")
        return study

    def node(self, site: str) -> NodeClient:
        if site not in self._clients:
            self._clients[site] = NodeClient(self.nodes[site].address, self.researcher_tls, timeout_s=120)
        return self._clients[site]

    def send(self, site: str, study: Study, query: Query, epsilon: float) -> ReleaseBody:
        """One query straight to ``site`` under the study's grant, signed by the researcher. A node that has
        not yet fetched a revocation list newer than the grant refuses it for a moment: waited out here."""
        deadline = time.monotonic() + 30
        while True:
            payload, signature = envelope.sign(
                envelope.build(query, study_id=study.study_id, epsilon=epsilon), self.researcher
            )
            try:
                return self.node(site).send(payload, signature, grant=study.grant)[1]
            except GenogateError as exc:
                if exc.reason != Reason.REVOCATION_UNCONFIRMED or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def client(self) -> Client:
        return Client(self.coordinator.address, self.researcher_tls, self.researcher, timeout_s=300)

    def stop_node(self, site: str) -> None:
        client = self._clients.pop(site, None)
        if client is not None:
            client.close()
        self.nodes.pop(site).stop()

    def close(self) -> None:
        for site in list(self.nodes):
            self.stop_node(site)
        self.coordinator.stop()


@contextmanager
def lab(root: Path) -> Iterator[Lab]:
    """A running coordinator and committee (no nodes yet) under ``root``; everything stops on exit."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    ca = make_ca(root / "ca")
    committee = [Signer(Ed25519PrivateKey.generate()) for _ in range(2)]
    cdir = make_coordinator(
        root, ca, operators=("operator",), members=[(f"m{i}", m.public_raw) for i, m in enumerate(committee)]
    )
    operator = client_tls(ca, "operator", root / "clients")
    coordinator = start_coordinator(
        cdir / "coordinator.toml",
        operator,
        log=root / "coordinator.log",
        env={"GENOGATE_COORDINATOR_FANOUT__SITE_TIMEOUT_MS": "60000", "GENOGATE_COORDINATOR_LOG__LEVEL": "warning"},
    )
    write_secret(root / "alice.key", new_identity_key())
    alice = Signer.from_pem_file(root / "alice.key")
    the_lab = Lab(
        root=root,
        ca=ca,
        coordinator=coordinator,
        operator=operator,
        researcher_tls=client_tls(ca, "alice", root / "clients"),
        researcher=alice,
        committee=committee,
        committee_key=Signer.from_pem_file(cdir / "keys" / "committee.key"),
    )
    try:
        with CoordinatorClient(coordinator.address, operator) as c:
            c.register_researcher("alice", "attack harness", alice.public_raw)
        yield the_lab
    finally:
        the_lab.close()
