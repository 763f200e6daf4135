"""The federation under faults, with real processes: a coordinator and three nodes on fixed loopback ports
(so a restarted server keeps its registered endpoint), each node holding a third of one synthetic cohort.

* a node killed with SIGKILL mid-workload and restarted loses no ledger or audit entry and never
  under-charges (its ledger reconciles with every receipt the coordinator saw, and checks out);
* the coordinator killed mid-workload and restarted keeps its studies and its history;
* a node whose disk fills up answers STORAGE_FULL (nothing half-written) and recovers once there is room;
  a node whose store file is unreadable refuses to start, naming the file and why;
* 50 researchers, each with their own study, query concurrently for 60 seconds: every call completes,
  the only refusals are budget refusals of the studies given a small budget, and no site's ledger spends
  beyond any study's cap.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from genogate.client import Client
from genogate.coordclient import CoordinatorClient
from genogate.errors import DeadlineExceeded, Unavailable
from genogate.nodeclient import ClientTLS
from genogate.query import Kind
from genogate.signing import Signer
from genogate.sqlitedb import read_only
from genogate.studies import NodeInfo, ReviewDecision, StudyProposal, StudyState
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from node.ingest.synth_spec import SynthSpec
from node.ledger import Ledger, read_spent
from node.synth_cli import synth_store
from tests.disks import mount_tmpfs
from tests.nodes import client_tls, make_ca, make_coordinator, make_node
from tests.processes import ROOT, Proc, start_coordinator, start_node
from tests.terms import filler as distinct

SITES = ("site-a", "site-b", "site-c")
SPEC = SynthSpec(samples=1500, variants=1500, seed=3)
EPS = 0.05
pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Fed:
    root: Path
    ca: Path
    operator: ClientTLS
    committee: list[Signer]
    coord_dir: Path
    coord_env: dict[str, str]
    coordinator: Proc | None = None
    nodes: dict[str, Proc] = field(default_factory=dict)
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)
    node_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.coord_env["GENOGATE_COORDINATOR_SERVER__LISTEN"]

    def start_coordinator(self) -> None:
        self.coordinator = start_coordinator(
            self.coord_dir / "coordinator.toml", self.operator, log=self.root / "coord.log", env=self.coord_env
        )

    def start_node(self, site: str) -> None:
        d = self.node_dirs[site]
        self.nodes[site] = start_node(
            d / "node.toml", self.operator, log=self.root / f"{site}.log", env=self.node_env[site]
        )

    def researcher(self, name: str, *, epsilon_total: float, sites: tuple[str, ...] = SITES) -> tuple[Client, str]:
        """A new researcher with their own approved study; returns their SDK client and the study id."""
        signer = Signer.from_pem_file(_key(self.root / "keys" / f"{name}.ed25519"))
        tls = client_tls(self.ca, name, self.root / "clients")
        with CoordinatorClient(self.address, self.operator) as c:
            c.register_researcher(name, "a university", signer.public_raw)
            study = c.propose(
                StudyProposal(
                    title=f"study of {name}",
                    purpose="HMB",
                    kinds=(Kind.COHORT_COUNT, Kind.ALLELE_FREQUENCY),
                    sites=tuple(sites),
                    epsilon_total_per_site=epsilon_total,
                    epsilon_per_query_cap=min(1.0, epsilon_total),
                    duration_days=30,
                    researcher_key_fingerprint=signer.key_id,
                ),
                signer,
            )
            for member in self.committee:
                study = c.review(study, ReviewDecision.APPROVE, "ok", member)
        assert study.state == StudyState.APPROVED
        return Client(self.address, tls, signer, timeout_s=120), study.study_id

    def stop(self) -> None:
        for p in self.nodes.values():
            p.stop()
        if self.coordinator is not None:
            self.coordinator.stop()


def _key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        write_secret(path, new_identity_key())
    return path


def _build(root: Path, *, node_parent: dict[str, Path] | None = None) -> Fed:
    ca = make_ca(root / "ca")
    committee = [Signer.from_pem_file(_key(root / "keys" / f"member-{i}.ed25519")) for i in (1, 2)]
    cdir = make_coordinator(
        root, ca, operators=("operator",), members=[(f"m{i}", m.public_raw) for i, m in enumerate(committee)]
    )
    coord_env = {
        "GENOGATE_COORDINATOR_SERVER__LISTEN": f"127.0.0.1:{_free_port()}",
        "GENOGATE_COORDINATOR_FANOUT__SITE_TIMEOUT_MS": "5000",
        "GENOGATE_COORDINATOR_SERVER__MAX_WORKERS": "16",
    }
    fed = Fed(root, ca, client_tls(ca, "operator", root / "clients"), committee, cdir, coord_env)
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key").public_raw.hex()
    for i, site in enumerate(SITES):
        d = (node_parent or {}).get(site, root) / site
        node = make_node(d, site, ca, client=True)
        synth_store(node.store, root / "cohort" / site, SPEC, (i, len(SITES)), progress=False)
        fed.node_dirs[site] = d
        fed.node_env[site] = {
            "GENOGATE_NODE_SERVER__LISTEN": f"127.0.0.1:{_free_port()}",
            "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee_key,
            "GENOGATE_NODE_GRANTS__COORDINATOR": coord_env["GENOGATE_COORDINATOR_SERVER__LISTEN"],
            "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",  # make_coordinator's name
            "GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT": "0",
            "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "1000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "1000",
            "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "100000",
            "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000",
        }
    fed.start_coordinator()
    for site in SITES:
        fed.start_node(site)
    with CoordinatorClient(fed.address, fed.operator) as c:
        for site in SITES:
            cert = (fed.node_dirs[site] / "tls" / "node.pem").read_bytes()
            endpoint = fed.node_env[site]["GENOGATE_NODE_SERVER__LISTEN"]
            c.register_node(
                NodeInfo(name=site, endpoint=endpoint, cert_sha256=fingerprint_sha256(cert), genome_build="GRCh38")
            )
    return fed


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    f = _build(tmp_path)
    try:
        yield f
    finally:
        f.stop()


@dataclass
class Workload:
    """Researchers asking distinct cohort counts in a loop until stopped; what each call returned."""

    clients: list[tuple[Client, str]]
    ok: list[tuple[str, str, dict[str, tuple[str, str]]]] = field(default_factory=list)  # study, query id, sites
    errors: list[BaseException] = field(default_factory=list)
    unavailable: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, *, tolerate_unavailable: bool = False) -> None:
        for n, (client, study) in enumerate(self.clients):
            t = threading.Thread(target=self._loop, args=(n, client, study, tolerate_unavailable), daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, n: int, client: Client, study: str, tolerate_unavailable: bool) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                r = client.cohort_count(study, where=f"sex=F or {distinct(n * 100 + i)}", epsilon=EPS)
            except (Unavailable, DeadlineExceeded) as exc:
                with self._lock:
                    if tolerate_unavailable:
                        self.unavailable += 1
                    else:
                        self.errors.append(exc)
                time.sleep(0.2)
                continue
            except BaseException as exc:  # noqa: BLE001 - recorded and asserted on by the test
                with self._lock:
                    self.errors.append(exc)
                return
            with self._lock:
                self.ok.append((study, r.query_id, {s.site: (s.status, s.reason) for s in r.sites}))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=180)
        for client, _ in self.clients:
            client.close()


def _cli(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def _charged(ledger: Path, study: str) -> int:
    """Charges a node's ledger holds for a study (each is one paid draw)."""
    return int(read_only(ledger, "ledger", "SELECT count(*) FROM charges WHERE study_id = ?", (study,))[0][0])


def _check_node_books(fed: Fed, site: str, studies: set[str]) -> None:
    """The node's ledger is internally consistent and its audit log verifies; the coordinator's log
    reconciles with it: every release the coordinator received from the site is in the node's log."""
    d = fed.node_dirs[site]
    ledger = Ledger(d / "ledger.sqlite")
    try:
        ledger.check()
    finally:
        ledger.close()
    verify = _cli("node.cli", "audit", "verify", "--config", d / "node.toml", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    export = fed.root / f"{site}.audit.json"
    out = _cli("node.cli", "audit", "export", "--config", d / "node.toml")
    export.write_text(out.stdout)
    rec = _cli(
        "coordinator.cli",
        "audit",
        "reconcile",
        "--config",
        fed.coord_dir / "coordinator.toml",
        "--site",
        site,
        "--node-export",
        export,
    )
    assert rec.returncode == 0, rec.stdout + rec.stderr
    for study in studies:  # spent is exactly what its charges add up to: nothing answered goes unpaid
        spent = {s.study_id: s.epsilon_spent for s in read_spent(d / "ledger.sqlite")}.get(study, Decimal(0))
        assert spent == Decimal(str(EPS)) * _charged(d / "ledger.sqlite", study)


def test_node_killed_mid_workload_restarts_without_losing_or_undercharging(fed: Fed) -> None:
    clients = [fed.researcher(f"r{i}", epsilon_total=100) for i in range(4)]
    studies = {s for _, s in clients}
    work = Workload(clients)
    work.start()
    try:
        time.sleep(3)
        fed.nodes["site-a"].kill()  # SIGKILL, in the middle of queries
        time.sleep(2)
        fed.start_node("site-a")  # same config, same port
        time.sleep(4)
    finally:
        work.stop()
    assert not work.errors, work.errors[:3]
    statuses = Counter(sites["site-a"][0] for _, _, sites in work.ok)
    assert statuses["answered"] > 0 and statuses["failed"] + statuses["timed_out"] > 0, statuses
    for _, _, sites in work.ok:  # the other sites answered throughout
        assert sites["site-b"][0] == "answered" and sites["site-c"][0] == "answered"
    # Every answer the researchers saw from site-a was charged there: at least as many charges as answers.
    answered = Counter(study for study, _, sites in work.ok if sites["site-a"][0] == "answered")
    ledger = fed.node_dirs["site-a"] / "ledger.sqlite"
    for study in studies:
        assert _charged(ledger, study) >= answered[study]
    for site in SITES:
        _check_node_books(fed, site, studies)


def test_coordinator_restarted_mid_workload_keeps_studies_and_history(fed: Fed) -> None:
    clients = [fed.researcher(f"r{i}", epsilon_total=100) for i in range(4)]
    work = Workload(clients)
    work.start(tolerate_unavailable=True)
    try:
        time.sleep(3)
        assert fed.coordinator is not None
        fed.coordinator.kill()  # SIGKILL
        before = len(work.ok)
        time.sleep(1)
        fed.start_coordinator()  # same state file, same port
        time.sleep(4)
    finally:
        work.stop()
    assert not work.errors, work.errors[:3]
    assert before > 0 and len(work.ok) > before  # queries went on after the restart
    with CoordinatorClient(fed.address, fed.operator) as c:
        for _, study in clients:
            assert c.get_study(study).state == StudyState.APPROVED
    history = {
        q for (q,) in read_only(fed.coord_dir / "state.sqlite", "coordinator state", "SELECT query_id FROM queries")
    }
    assert {q for _, q, _ in work.ok} <= history  # every answer a researcher got is in the history
    verify = _cli("coordinator.cli", "audit", "verify", "--config", fed.coord_dir / "coordinator.toml")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_full_disk_answers_storage_full_and_recovers_and_unreadable_store_is_named(tmp_path: Path) -> None:
    small = tmp_path / "small"
    mount_tmpfs(small, "24m")
    fed = None
    try:
        fed = _build(tmp_path / "fed", node_parent={"site-c": small})
        client, study = fed.researcher("alice", epsilon_total=100)
        filler = small / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk, leaving the node's files as they are
            try:
                while True:
                    fh.write(b"\1" * 65536)
            except OSError:
                pass
        seen = Counter()
        for i in range(60):
            r = client.cohort_count(study, where=f"sex=M or {distinct(500 + i)}", epsilon=EPS)
            status = {s.site: (s.status, s.reason) for s in r.sites}
            assert status["site-a"][0] == status["site-b"][0] == "answered"  # the others are unaffected
            seen[status["site-c"]] += 1
            if status["site-c"] != ("answered", ""):
                break
        assert seen[("failed", "STORAGE_FULL")] == 1, seen  # a clear reason, not a generic failure
        log = (fed.root / "site-c.log").read_text()
        assert "cannot write the" in log and "disk may be full" in log and str(small) in log
        filler.unlink()  # the operator makes room: the same node answers again, its books intact
        r = client.cohort_count(study, where=f"sex=M or {distinct(600)}", epsilon=EPS)
        assert {s.site: s.status for s in r.sites}["site-c"] == "answered"
        client.close()
        fed.stop()
        _check_node_books(fed, "site-c", {study})

        # An unreadable store: the node refuses to start and says which file and why; status says so too.
        store = fed.node_dirs["site-a"] / "store.duckdb"
        store.write_bytes(b"this is not a database" * 100)
        with pytest.raises(RuntimeError) as info:
            fed.start_node("site-a")
        assert str(store) in str(info.value) and "cannot open the store" in str(info.value)
        st = _cli("node.cli", "status", "--config", fed.node_dirs["site-a"] / "node.toml", "--json")
        assert st.returncode == 1 and json.loads(st.stdout)["store"]["ok"] is False
    finally:
        if fed is not None:
            fed.stop()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_fifty_researchers_for_a_minute_without_errors_or_overspending(fed: Fed) -> None:
    """45 researchers with ample budgets and 5 whose studies can pay for only 10 queries per site. The
    only refusals allowed are those 5 studies' budget refusals, and no ledger spends past a cap."""
    names = [f"t{i}" for i in range(5)] + [f"a{i}" for i in range(45)]
    clients = [fed.researcher(name, epsilon_total=10 * EPS if name.startswith("t") else 1000) for name in names]
    tight_studies = {study for (_, study), name in zip(clients, names, strict=True) if name.startswith("t")}
    work = Workload(clients)
    work.start()
    try:
        time.sleep(60)
    finally:
        work.stop()
    assert not work.errors, work.errors[:3]
    assert len(work.ok) > 200, len(work.ok)
    refused_tight = 0
    for study, _, sites in work.ok:
        for site, (status, reason) in sites.items():
            if study in tight_studies and (status, reason) == ("refused", "BUDGET_EXHAUSTED"):
                refused_tight += 1
            else:
                assert status == "answered", (study, site, status, reason)
    assert refused_tight > 0  # the small budgets did run out, and were refused cleanly
    for site in SITES:
        spent = {s.study_id: s.epsilon_spent for s in read_spent(fed.node_dirs[site] / "ledger.sqlite")}
        for _, study in clients:
            cap = Decimal(str(10 * EPS)) if study in tight_studies else Decimal(1000)
            assert spent.get(study, Decimal(0)) <= cap
            if study in tight_studies:
                assert spent[study] == cap  # spent to the cap exactly, never past it
        assert "failed on this server" not in (fed.root / f"{site}.log").read_text()


def test_the_sdk_reports_each_sites_budget_as_typed_rows(fed: Fed) -> None:
    """Not a fault, but the same federation: ``Client.budget`` gives each site's own ledger figures, and a
    stopped site is listed with its status instead."""
    client, study = fed.researcher("bea", epsilon_total=1.0)
    with client:
        for i in range(2):
            client.cohort_count(study, where=f"sex=F or {distinct(700 + i)}", epsilon=EPS)
        fed.nodes["site-c"].stop()
        budget = client.budget(study)
    assert [s.site for s in budget.sites] == list(SITES)
    for site in ("site-a", "site-b"):
        b = budget.site(site)
        assert (b.status, b.reason, b.epsilon_cap, b.queries_answered) == ("answered", "", 1.0, 2)
        assert b.epsilon_spent == pytest.approx(2 * EPS) and b.epsilon_remaining == pytest.approx(1 - 2 * EPS)
    down = budget.site("site-c")
    assert down.status in ("failed", "timed_out") and down.epsilon_remaining is None
    assert set(budget.remaining) == {"site-a", "site-b"}
    assert budget.to_json()["sites"][0]["site"] == "site-a"
    assert "site-c" in str(budget) and "answered" in str(budget)
    with pytest.raises(KeyError):
        budget.site("site-z")
