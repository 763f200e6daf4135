"""Federated queries end to end: a coordinator and three nodes, each a real process on loopback with mTLS,
holding disjoint thirds of the 1126-sample 1000 Genomes subset (chr22).

The researcher asks through the coordinator (the SDK and the ``genogate`` command); the coordinator fans
out with the committee's grant and combines. Checked here: combined estimates are unbiased and their 95%
intervals cover the pooled truth at their stated rate over many distinct queries; a slow site (a real
node process with an injected delay, ``tests.faulty_node``) is reported timed_out without holding the
others; a dropped response is retried with the same bytes and charged once; the audit logs verify and
reconcile, and an edited, removed or reordered entry is found; a stopped site is reported and the others
still answer.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.client import Client, QueryResult
from genogate.coordclient import CoordinatorClient
from genogate.errors import InvalidArgument, Reason
from genogate.nodeclient import ClientTLS, NodeClient
from genogate.query import Kind, Variant
from genogate.results import ReleaseBody
from genogate.signing import Signer
from genogate.studies import NodeInfo, ReviewDecision, Study, StudyProposal, StudyState
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from node.freq import allele_counts
from node.ingest import ingest
from node.store import Store
from node.variant_index import VariantIndex
from tests.conftest import ROOT, SUBSET, require_shared, write_subset_sheet
from tests.nodes import client_tls, make_ca, make_coordinator, make_node, write_profile
from tests.processes import Proc, start_coordinator, start_server
from tests.stats import max_misses
from tests.terms import filler

SITES = ("site-a", "site-b", "site-c")
FAULTY = "site-c"  # runs under tests.faulty_node; its faults are off until a test turns them on
VCF = SUBSET / "1KG_phase3_subset_chr22.vcf.gz"
EPS = 0.5


@dataclass
class Fed:
    root: Path
    coordinator: Proc
    nodes: dict[str, Proc]
    operator: ClientTLS
    alice_tls: ClientTLS
    alice: Signer
    study: Study
    profile: Path
    faults: Path
    sheet: list[dict[str, str]]
    truth: Path  # a store of all 1126 samples: the pooled truth

    def client(self) -> Client:
        return Client(self.coordinator.address, self.alice_tls, self.alice, timeout_s=120)

    def coord(self) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator.address, self.operator)


def _bcftools() -> str:
    path = shutil.which("bcftools")
    if path is None:
        pytest.skip("bcftools is not installed (.ci/run installs it)")
    return path


def _slice(vcf: Path, samples: list[str], out: Path) -> Path:
    listing = out.with_suffix(".samples")
    listing.write_text("\n".join(samples) + "\n")
    subprocess.run([_bcftools(), "view", "-S", str(listing), "-Oz", "-o", str(out), str(vcf)], check=True)
    return out


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    require_shared()
    _bcftools()
    root = tmp_path_factory.mktemp("federated")
    ca = make_ca(root / "ca")
    committee = [Signer(Ed25519PrivateKey.generate()) for _ in range(2)]
    members = [(f"member{i}", m.public_raw) for i, m in enumerate(committee)]
    cdir = make_coordinator(root, ca, operators=("operator",), members=members)
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key")
    operator = client_tls(ca, "operator", root / "clients")
    coordinator = start_coordinator(
        cdir / "coordinator.toml",
        operator,
        log=root / "coord.log",
        env={"GENOGATE_COORDINATOR_FANOUT__SITE_TIMEOUT_MS": "20000"},
    )
    sheet_path = write_subset_sheet(root / "sheet.tsv")
    lines = sheet_path.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    sheet = [dict(zip(header.split("\t"), r.split("\t"), strict=True)) for r in rows]
    truth = root / "truth.duckdb"
    ingest(truth, [VCF], sheet_path)
    faults = root / "faults.json"
    faults.write_text("{}")
    procs: dict[str, Proc] = {}
    try:
        for i, site in enumerate(SITES):
            part = rows[i::3]  # disjoint thirds
            (root / f"{site}.tsv").write_text("\n".join([header, *part]) + "\n")
            vcf = _slice(VCF, [r.split("\t")[0] for r in part], root / f"{site}.vcf.gz")
            node = make_node(root / site, site, ca, client=True)
            ingest(node.store, [vcf], root / f"{site}.tsv")
            env = {
                "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee_key.public_raw.hex(),
                "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator.address,
                "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",  # make_coordinator's name
                "GENOGATE_NODE_GRANTS__REVOCATION_REFRESH_SECONDS": "1",
                "GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT": "0",
                "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "1000",
                "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "1000",
                "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "100000",
                "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000",
                "GENOGATE_TEST_FAULTS": str(faults),
            }
            module = "tests.faulty_node" if site == FAULTY else "node.cli"
            procs[site] = start_server(module, node.config, operator, log=root / f"{site}.log", env=env)
        alice = Signer.from_pem_file(_key_file(root / "alice.key"))
        alice_tls = client_tls(ca, "alice", root / "clients")
        with CoordinatorClient(coordinator.address, operator) as c:
            for site in SITES:
                cert = (root / site / "tls" / "node.pem").read_bytes()
                c.register_node(
                    NodeInfo(
                        name=site,
                        endpoint=procs[site].address,
                        cert_sha256=fingerprint_sha256(cert),
                        genome_build="GRCh37",
                    )
                )
            c.register_researcher("alice", "a university", alice.public_raw)
            proposal = StudyProposal(
                title="pooled allele frequencies",
                purpose="HMB",
                kinds=(Kind.COHORT_COUNT, Kind.ALLELE_FREQUENCY, Kind.CASE_CONTROL),
                sites=tuple(SITES),
                epsilon_total_per_site=500,
                epsilon_per_query_cap=1,
                duration_days=30,
                researcher_key_fingerprint=alice.key_id,
                per_site_breakdown=True,
            )
            study = c.propose(proposal, alice)
            for member in committee:
                study = c.review(study, ReviewDecision.APPROVE, "ok", member)
        assert study.state == StudyState.APPROVED
        profile = root / "alice.toml"
        write_profile(profile, "alice", coordinator.address, ca, root / "clients", root / "alice.key")
        yield Fed(root, coordinator, procs, operator, alice_tls, alice, study, profile, faults, sheet, truth)
    finally:
        for p in procs.values():
            p.stop()
        coordinator.stop()


def _key_file(path: Path) -> Path:
    write_secret(path, new_identity_key())
    return path


def _truth_af(fed: Fed, variants: list[Variant]) -> tuple[np.ndarray, np.ndarray]:
    store = Store.open(fed.truth, read_only=True)
    try:
        vids = VariantIndex(store).lookup(variants)
        classes = store.class_counts(vids, np.ones(store.n_samples, dtype=bool))
    finally:
        store.close()
    return allele_counts(classes)


def test_combined_estimates_are_unbiased_and_cover_the_pooled_truth(fed: Fed) -> None:
    """Distinct queries (so no answer comes from a node's same-question cache): 120 cohort counts and 60
    allele frequencies. False-failure rates: each coverage bound below 1e-7 (binomial tail at exactly 95%;
    the intervals are exact quantiles of the summed noise, so they cover at least that); the bias check
    |z| < 5.5 on a sum of 120 independent noise terms, about 4e-8."""
    ancestries = sorted({r["ancestry"] for r in fed.sheet})
    with fed.client() as gg:
        count_misses, z_num, z_var, n_counts = 0, 0.0, 0.0, 120
        for i in range(n_counts):
            anc = ancestries[i % len(ancestries)]
            truth = sum(1 for r in fed.sheet if r["ancestry"] == anc)
            # a clause no participant satisfies makes each query distinct without changing its truth
            r = gg.cohort_count(fed.study.study_id, where=f"ancestry={anc} or {filler(i)}", epsilon=EPS)
            assert [s.status for s in r.sites] == ["answered"] * 3, r
            c = r.value("count")
            assert math.isclose(c.estimate, sum(s_body(r, s).result.count.estimate for s in SITES))
            count_misses += not (c.ci95_low <= truth <= c.ci95_high)
            z_num += c.estimate - truth
            z_var += c.noise_stddev**2
        assert count_misses <= max_misses(n_counts), f"{count_misses} of {n_counts} count intervals missed"
        assert abs(z_num / math.sqrt(z_var)) < 5.5

        store = Store.open(fed.truth, read_only=True)
        rows = store.con.execute(
            "SELECT chrom, pos, ref, alt FROM variants WHERE n_het + n_hom_alt > 20 ORDER BY vid LIMIT 60"
        ).fetchall()
        store.close()
        variants = [Variant(c, p, ref, alt) for c, p, ref, alt in rows]
        ac, an = _truth_af(fed, variants)
        misses = {"allele_count": 0, "allele_number": 0, "allele_frequency": 0}
        for v, t_ac, t_an in zip(variants, ac, an, strict=True):
            r = gg.allele_frequency(fed.study.study_id, [v], epsilon=EPS)
            name = f"{v.chrom}-{v.pos}-{v.ref}-{v.alt}"
            truths = {"allele_count": t_ac, "allele_number": t_an, "allele_frequency": t_ac / t_an}
            for quantity, t in truths.items():
                e = r.value(quantity, name)
                misses[quantity] += not (e.ci95_low <= t <= e.ci95_high)
        for quantity, m in misses.items():
            assert m <= max_misses(len(variants)), f"{m} of {len(variants)} {quantity} intervals missed"


def s_body(r: QueryResult, site: str) -> ReleaseBody:
    """A site's node-signed release (the study grants a per-site breakdown)."""
    body = next(s.release for s in r.sites if s.site == site)
    assert body is not None, f"no release from {site}"
    return body


def test_a_slow_site_times_out_without_holding_the_others(fed: Fed) -> None:
    fed.faults.write_text(json.dumps({"delay_s": 30}))
    try:
        with fed.client() as gg:
            r = gg.cohort_count(fed.study.study_id, where="sex=F", epsilon=EPS, site_timeout_ms=3000)
    finally:
        fed.faults.write_text("{}")
    status = {s.site: s for s in r.sites}
    assert status[FAULTY].status == "timed_out" and status[FAULTY].reason == "DEADLINE_EXCEEDED"
    assert {status[s].status for s in SITES if s != FAULTY} == {"answered"}
    # the others' outcomes were in long before the slow site's deadline
    assert all(status[s].latency_ms < status[FAULTY].latency_ms for s in SITES if s != FAULTY)
    assert r.value("count").estimate == sum(s_body(r, s).result.count.estimate for s in SITES if s != FAULTY)


def test_a_dropped_response_is_retried_with_the_same_query_and_charged_once(fed: Fed) -> None:
    with fed.coord() as c:
        before = {s.site: s.budget.epsilon_spent for s in c.study_budget(fed.study.study_id)}
    fed.faults.write_text(json.dumps({"drop_next": 1}))
    with fed.client() as gg:
        r = gg.cohort_count(fed.study.study_id, where="sex=M", epsilon=EPS)
    assert json.loads(fed.faults.read_text())["drop_next"] == 0  # the node did answer the first attempt
    status = {s.site: s for s in r.sites}
    assert status[FAULTY].status == "answered" and status[FAULTY].attempts == 2
    with fed.coord() as c:
        after = {s.site: s.budget.epsilon_spent for s in c.study_budget(fed.study.study_id)}
    assert all(math.isclose(after[s] - before[s], EPS) for s in SITES), (before, after)


def _run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def _genogate(fed: Fed, *args: str) -> subprocess.CompletedProcess[str]:
    """``genogate COMMAND ... --profile alice.toml --study ID`` as a researcher runs it."""
    return _run("genogate.cli", *args, "--profile", str(fed.profile), "--study", fed.study.study_id)


def test_the_researcher_cli_prints_intervals_and_site_status(fed: Fed) -> None:
    where_epsilon = ("--where", "ancestry in (EUR,AFR)", "--epsilon", "0.5")
    out = _genogate(fed, "query", "allele-frequency", "--variant", "22-16050075-A-G", *where_epsilon, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["study_id"] == fed.study.study_id and doc["query_id"]
    assert {s["site"]: s["status"] for s in doc["sites"]} == dict.fromkeys(SITES, "answered")
    assert all(s["epsilon_charged"] == 0.5 for s in doc["sites"])
    quantities = {v["quantity"] for v in doc["values"]}
    assert quantities == {"allele_count", "allele_number", "allele_frequency"}
    assert all({"estimate", "ci95_low", "ci95_high", "noise_stddev"} <= v.keys() for v in doc["values"])
    table = _genogate(fed, "query", "cohort-count", "--where", "sex=F and ancestry=EUR", "--epsilon", "0.5")
    assert table.returncode == 0, table.stderr
    assert "95% interval" in table.stdout and "sites (3 of 3 answered)" in table.stdout
    budget = _genogate(fed, "budget")
    assert budget.returncode == 0 and all(site in budget.stdout for site in SITES), budget.stderr
    # --json says the sites' status in the query JSON's words, not the proto enum's names
    budget_doc = json.loads(_genogate(fed, "budget", "--json").stdout)
    assert {s["site"]: s["status"] for s in budget_doc["sites"]} == dict.fromkeys(SITES, "answered")
    bad = _genogate(fed, "query", "cohort-count", "--where", "sex=Q", "--epsilon", "0.5")
    assert bad.returncode == 2 and "sex" in bad.stderr


def test_audit_logs_verify_reconcile_and_reveal_tampering(fed: Fed, tmp_path: Path) -> None:
    node_cfg = str(fed.root / "site-a" / "node.toml")
    ok = _run("node.cli", "audit", "verify", "--config", node_cfg)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    export = _run("node.cli", "audit", "export", "--config", node_cfg, "--json")
    assert export.returncode == 0
    (tmp_path / "site-a.json").write_text(export.stdout)
    entries = json.loads(export.stdout)["entries"]
    assert {e["entry"]["decision"] for e in entries} >= {"charged", "answered"}
    coord_cfg = str(fed.root / "coord" / "coordinator.toml")
    rec = _run(
        "coordinator.cli",
        "audit",
        "reconcile",
        "--config",
        coord_cfg,
        "--site",
        "site-a",
        "--node-export",
        str(tmp_path / "site-a.json"),
    )
    assert rec.returncode == 0 and "reconciled" in rec.stdout, rec.stdout + rec.stderr
    assert _run("coordinator.cli", "audit", "verify", "--config", coord_cfg).returncode == 0
    # The logs hold digests, not values (issue 16): the node's export prints each result beside its entry, the
    # coordinator's receipts are digests and a signature, and reconcile shows the values, each site's and,
    # given every site, the combined answer recomputed from them (matching its recorded digest).
    answered = [e for e in entries if e["entry"]["decision"] == "answered"]
    assert answered and all("result" in e and "result" not in e["entry"] for e in answered)
    coord_export = json.loads(_run("coordinator.cli", "audit", "export", "--config", coord_cfg).stdout)
    runs = [e["entry"] for e in coord_export["entries"] if e["entry"]["event"] == "run_query"]
    receipts = [s["receipt"] for run in runs for s in run["sites"] if "receipt" in s]
    assert runs and receipts and all("payload" not in r and len(r["payload_sha256"]) == 64 for r in receipts)
    assert "node's ledger" in coord_export["note"]
    pairs = []
    for site in SITES:
        out = _run("node.cli", "audit", "export", "--config", str(fed.root / site / "node.toml"))
        (tmp_path / f"{site}.json").write_text(out.stdout)
        pairs += ["--site", site, "--node-export", str(tmp_path / f"{site}.json")]
    shown = _run("coordinator.cli", "audit", "reconcile", "--config", coord_cfg, *pairs, "--values", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    values = json.loads(shown.stdout)["values"]
    assert {v["site"] for v in values if "site" in v} == set(SITES) and all(
        "result" in v for v in values if "site" in v
    )
    combined = [v for v in values if "combined" in v]
    assert combined and all(v["matches_recorded_digest"] for v in combined), [
        (v["coordinator_entry"], v["matches_recorded_digest"], v["combined"]) for v in combined
    ]

    def tampered(change: str) -> subprocess.CompletedProcess[str]:
        copy = tmp_path / f"audit-{abs(hash(change))}.sqlite"
        src = sqlite3.connect(fed.root / "coord" / "audit.sqlite")
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.executescript("DROP TRIGGER audit_keep; DROP TRIGGER audit_fixed;" + change)
        dst.commit()
        dst.close()
        return _run(
            "coordinator.cli",
            "audit",
            "verify",
            "--config",
            coord_cfg,
            env={"GENOGATE_COORDINATOR_AUDIT__PATH": str(copy)},
        )

    # The first query's entry (registrations and study events come before it): one site's status edited.
    with sqlite3.connect(fed.root / "coord" / "audit.sqlite") as db:
        (seq,) = db.execute("SELECT min(seq) FROM audit WHERE entry LIKE '%\"answered\"%'").fetchone()
    edited = tampered(f"UPDATE audit SET entry = replace(entry, '\"answered\"', '\"refused\"') WHERE seq = {seq};")
    assert edited.returncode == 1 and f"position {seq}" in edited.stdout and "edited" in edited.stdout
    removed = tampered("DELETE FROM audit WHERE seq = 2;")
    assert removed.returncode == 1 and "position 2" in removed.stdout
    reordered = tampered(
        "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;"
        "UPDATE audit SET seq = 3 WHERE seq = -1;"
    )
    assert reordered.returncode == 1 and "position 2" in reordered.stdout


def test_a_label_no_site_publishes_is_refused_before_fan_out(fed: Fed) -> None:
    """``ancestry=ZZZ`` is refused by the coordinator from the sites' published labels (GetNodeInfo), before
    any site spends anything; labels compare in any case, so ``eur`` and ``EUR`` are one question."""
    for site, proc in fed.nodes.items():
        with NodeClient(proc.address, fed.operator) as nc:
            info = nc.info()
        labels = {ls.attribute: list(ls.labels) for ls in info.labels}
        assert labels == {"ancestry": ["AFR", "AMR", "EAS", "EUR", "SAS"], "sex": ["F", "M", "U"]}, site
        assert {o.name: o.release for o in info.ontologies}["HPO"] == "2025-11-24"
    with fed.coord() as c:
        before = {s.site: s.budget.epsilon_spent for s in c.study_budget(fed.study.study_id)}
    with fed.client() as gg:
        with pytest.raises(InvalidArgument) as info:
            gg.cohort_count(fed.study.study_id, where="sex=F or not ancestry in (EUR, zzz)", epsilon=EPS)
        assert info.value.reason is Reason.UNKNOWN_LABEL
        assert "ZZZ" in info.value.message and "AFR, AMR, EAS, EUR, SAS" in info.value.message
        with fed.coord() as c:
            assert {s.site: s.budget.epsilon_spent for s in c.study_budget(fed.study.study_id)} == before
        lower = gg.cohort_count(fed.study.study_id, where="ancestry=eur and sex=F", epsilon=EPS)
        upper = gg.cohort_count(fed.study.study_id, where="sex=F and ancestry=EUR", epsilon=EPS)
    assert [s.status for s in lower.sites] == [s.status for s in upper.sites] == ["answered"] * 3
    assert all(s.from_store for s in upper.sites)  # the same canonical question at every site
    assert upper.value("count").estimate == lower.value("count").estimate


def test_the_coordinator_logs_a_refused_query_and_no_answered_one(fed: Fed) -> None:
    """Per-query logging is off the hot path: at the coordinator's default level (info), an answered query
    adds no line to its log; a refused one still adds its line, with the reason."""
    start = fed.coordinator.log.stat().st_size
    with fed.client() as gg:
        answered = gg.cohort_count(fed.study.study_id, where="sex=M and ancestry=AFR", epsilon=EPS)
        with pytest.raises(InvalidArgument):
            gg.cohort_count(fed.study.study_id, where="ancestry=QQQ", epsilon=EPS)
    assert [s.status for s in answered.sites] == ["answered"] * 3
    added = fed.coordinator.log.read_bytes()[start:].decode().splitlines()
    runs = [json.loads(line) for line in added if '"RunQuery"' in line]
    assert [(r["level"], r["outcome"], r["reason"]) for r in runs] == [("info", "invalid_argument", "UNKNOWN_LABEL")]


def test_a_stopped_site_is_reported_and_the_others_still_answer(fed: Fed) -> None:
    fed.nodes["site-b"].stop()
    with fed.client() as gg:
        r = gg.cohort_count(fed.study.study_id, where="ancestry=EAS", epsilon=EPS, site_timeout_ms=5000)
    status = {s.site: s for s in r.sites}
    assert status["site-b"].status in ("failed", "timed_out") and status["site-b"].reason in (
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
    )
    if status["site-b"].status == "failed":  # says where and what to check, not gRPC's raw words
        assert "node site-b at 127.0.0.1:" in status["site-b"].message, status["site-b"].message
        assert "failed to connect to all addresses" not in status["site-b"].message
    assert status["site-a"].status == status["site-c"].status == "answered"
    assert r.value("count").estimate == sum(s_body(r, s).result.count.estimate for s in ("site-a", "site-c"))
