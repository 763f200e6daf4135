"""A withdrawal takes effect live (issue 15, item 3), with a real node process that serves throughout, the real
``genogate-node consent`` command in a process of its own, a real DuckDB store, real mTLS, real OpenDP noise
and one ledger across a restart.

Sixty participants; thirty of them withdraw while the node serves. The first answer counts sixty; the answer
after the withdrawal (a new query id, the same question, the same node process) is a new, charged release in
a new consent epoch that counts thirty, and asking again in that epoch is the stored release at no cost. The
change is in the node's audit log with who and when; an unknown sample id is refused by the command; and a
re-ingest of the old sheet (all sixty consenting) does not bring the thirty back: the node restarted on it is
still in the same epoch. Noise is discrete Laplace of scale 1 (ε = 1, sensitivity 1): each "within 15 of the
truth" check fails with probability 2·e^-16/(1 + e^-1) < 1e-7, so the test's false-failure rate is below 1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genogate import audit
from genogate.errors import StoreError
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import NodeClient, envelope
from genogate.signing import Signer
from node.ingest import ingest
from node.ledger import Ledger
from tests.nodes import client_tls, make_ca, make_node, study_toml
from tests.processes import ROOT, running_node

N, WITHDRAWN, SLACK = 60, 30, 15
ENV = {"GENOGATE_NODE_STUDIES__LOCAL": "true", "GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT": "0"}


def _sheet(path: Path, withdrawn: int) -> Path:
    rows = ["sample_id\tsex\tbirth_year\tancestry\tphenotypes\tconsent"]
    for i in range(N):
        consent = "WITHDRAWN" if i < withdrawn else "GRU"
        rows.append(f"P{i}\t{'FM'[i % 2]}\t{1950 + i}\tEUR\t\t{consent}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _vcf(path: Path) -> Path:
    header = "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
    samples = "\t".join(f"P{i}" for i in range(N))
    calls = "\t".join("0/1" if i % 3 == 0 else "0/0" for i in range(N))
    path.write_text(
        '##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n##contig=<ID=1>\n'
        f"{header}\t{samples}\n1\t100\t.\tA\tG\t.\t.\t.\tGT\t{calls}\n"
    )
    return path


def _consent(*args: str) -> subprocess.CompletedProcess[str]:
    """``genogate-node consent ...`` in a process of its own, as an operator runs it beside the node."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "node.cli", "consent", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_withdrawal_takes_effect_at_the_next_query_with_the_node_up(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    node = make_node(tmp_path / "site-a", "site-a", ca)
    vcf = _vcf(tmp_path / "calls.vcf")
    before = _sheet(tmp_path / "before.tsv", 0)
    ingest(node.store, [vcf], before, build="GRCh37")
    (node.dir / "studies.toml").write_text(study_toml("S1", purpose="GRU", epsilon_total="4", cap="1"))
    tls = client_tls(ca, "alice", tmp_path / "clients")
    question = CohortCount()
    config = str(node.config)
    samples = [a for i in range(WITHDRAWN) for a in ("--sample", f"P{i}")]

    with (
        running_node(node.config, tls, log=tmp_path / "node1.log", env=ENV) as proc,
        NodeClient(proc.address, tls) as c,
    ):
        first_env = envelope(question, study_id="S1", epsilon=1.0, query_id="q-before")
        _, first = c.send(first_env)
        # Re-loading the sheet while the node serves is refused, naming the command that works instead.
        with pytest.raises(StoreError, match="genogate-node consent withdraw"):
            ingest(node.store, [vcf], _sheet(tmp_path / "after.tsv", WITHDRAWN), build="GRCh37")

        refused = _consent("withdraw", "--config", config, "--sample", "P1", "--sample", "NOT-A-SAMPLE")
        assert refused.returncode == 2 and "1 of the 2 sample ids" in refused.stderr, refused.stderr
        done = _consent("withdraw", "--config", config, *samples, "--by", "dpo", "--reason", "letters", "--json")
        assert done.returncode == 0, done.stderr
        recorded = json.loads(done.stdout)
        assert (recorded["status"], recorded["changed"], recorded["by"]) == ("recorded", WITHDRAWN, "dpo")

        _, second = c.send(envelope(question, study_id="S1", epsilon=1.0, query_id="q-after"))
        _, third = c.send(envelope(question, study_id="S1", epsilon=1.0, query_id="q-again"))
        _, retry = c.send(first_env)  # the first query id's own retry keeps its first answer
        budget = c.budget("S1")
        assert proc.popen.poll() is None  # the same node process served every query
    assert first.epsilon_charged == 1.0 and not first.from_store and first.consent_epoch == 1
    assert abs(first.result.count.estimate - N) <= SLACK
    # A new, charged release in a new epoch, computed without the withdrawn participants.
    assert second.epsilon_charged == 1.0 and not second.from_store and second.consent_epoch == 2
    assert abs(second.result.count.estimate - (N - WITHDRAWN)) <= SLACK
    # Asked again in the new epoch: the stored release, at no cost.
    assert third.from_store and third.cached_query_id == "q-after" and third.result == second.result
    assert (third.epsilon_charged, third.original_epsilon_charged, third.consent_epoch) == (0.0, 1.0, 2)
    # The retry says it is of the old epoch, and costs nothing.
    assert retry.result == first.result and retry.consent_epoch == 1 and retry.epsilon_charged == 0
    assert budget.epsilon_spent == 2.0 and budget.consent_epoch == 2

    # The audit log: the command's entry (who, when, what) and the node's own when it applied the change.
    rows = audit.read_file(node.dir / "ledger.sqlite")
    key = Signer.from_pem_file(node.dir / "keys" / "identity.key")
    assert audit.check(rows, audit.keys(key.public_raw)).ok
    entries = [(r.at_ms, json.loads(r.entry)) for r in rows]
    change = [(at, e) for at, e in entries if e.get("event") == "consent"]
    assert len(change) == 1 and change[0][0] == recorded["at_ms"]
    assert change[0][1]["by"] == "dpo" and change[0][1]["reason"] == "letters" and len(change[0][1]["changes"]) == 30
    applied = [e for _, e in entries if e.get("event") == "consent_epoch"]
    assert [(e["previous_epoch"], e["epoch"], e["overridden"]) for e in applied] == [(1, 2, WITHDRAWN)]

    # The operator re-ingests the old sheet (everyone consenting): the recorded withdrawals still hold.
    summary = ingest(node.store, [vcf], before, build="GRCh37")
    assert summary.consent_overrides == WITHDRAWN and summary.withdrawn == WITHDRAWN
    with (
        running_node(node.config, tls, log=tmp_path / "node2.log", env=ENV) as proc,
        NodeClient(proc.address, tls) as c,
    ):
        _, fourth = c.send(envelope(question, study_id="S1", epsilon=1.0, query_id="q-later"))
    assert fourth.from_store and fourth.consent_epoch == 2 and fourth.result == second.result
    with Ledger(node.dir / "ledger.sqlite") as ledger:
        ledger.check()
