"""A withdrawal reaches the next answer (issue 13, item 4), with real node processes, a real DuckDB store
re-ingested with the participant's consent withdrawn, real OpenDP noise and one ledger across restarts.

Sixty participants; thirty of them withdraw. The first answer counts sixty, the answer after the
withdrawal (a new query id, the same question) is a new, charged release in a new consent epoch that
counts thirty, and asking again in that epoch is the stored release at no cost. Noise is discrete Laplace
of scale 1 (ε = 1, sensitivity 1): each "within 15 of the truth" check fails with probability
2·e^-16/(1 + e^-1) < 1e-7, so the test's false-failure rate is below 1e-6.
"""

from __future__ import annotations

from pathlib import Path

from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import NodeClient, envelope
from node.ingest import ingest
from node.ledger import Ledger
from tests.nodes import client_tls, make_ca, make_node, study_toml
from tests.processes import running_node

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


def test_after_a_withdrawal_the_same_question_is_a_new_charged_release_without_the_participant(
    tmp_path: Path,
) -> None:
    ca = make_ca(tmp_path / "ca")
    node = make_node(tmp_path / "site-a", "site-a", ca)
    vcf = _vcf(tmp_path / "calls.vcf")
    ingest(node.store, [vcf], _sheet(tmp_path / "before.tsv", 0), build="GRCh37")
    (node.dir / "studies.toml").write_text(study_toml("S1", purpose="GRU", epsilon_total="4", cap="1"))
    tls = client_tls(ca, "alice", tmp_path / "clients")
    question = CohortCount()

    with (
        running_node(node.config, tls, log=tmp_path / "node1.log", env=ENV) as proc,
        NodeClient(proc.address, tls) as c,
    ):
        first_env = envelope(question, study_id="S1", epsilon=1.0, query_id="q-before")
        _, first = c.send(first_env)
    assert first.epsilon_charged == 1.0 and not first.from_store and first.consent_epoch == 1
    assert abs(first.result.count.estimate - N) <= SLACK

    # Thirty participants withdraw: the operator re-ingests the sheet, then restarts the node.
    summary = ingest(node.store, [vcf], _sheet(tmp_path / "after.tsv", WITHDRAWN), build="GRCh37")
    assert summary.sheet_updated

    with (
        running_node(node.config, tls, log=tmp_path / "node2.log", env=ENV) as proc,
        NodeClient(proc.address, tls) as c,
    ):
        _, second = c.send(envelope(question, study_id="S1", epsilon=1.0, query_id="q-after"))
        _, third = c.send(envelope(question, study_id="S1", epsilon=1.0, query_id="q-again"))
        _, retry = c.send(first_env)  # the first query id's own retry keeps its first answer
        budget = c.budget("S1")
    # A new, charged release in a new epoch, computed without the withdrawn participants.
    assert second.epsilon_charged == 1.0 and not second.from_store and second.consent_epoch == 2
    assert abs(second.result.count.estimate - (N - WITHDRAWN)) <= SLACK
    # Asked again in the new epoch: the stored release, at no cost.
    assert third.from_store and third.cached_query_id == "q-after" and third.result == second.result
    assert (third.epsilon_charged, third.original_epsilon_charged, third.consent_epoch) == (0.0, 1.0, 2)
    # The retry says it is of the old epoch, and costs nothing.
    assert retry.result == first.result and retry.consent_epoch == 1 and retry.epsilon_charged == 0
    assert budget.epsilon_spent == 2.0 and budget.consent_epoch == 2

    # The same cohort again after another restart: the same epoch, the stored release still answers.
    with (
        running_node(node.config, tls, log=tmp_path / "node3.log", env=ENV) as proc,
        NodeClient(proc.address, tls) as c,
    ):
        _, fourth = c.send(envelope(question, study_id="S1", epsilon=1.0, query_id="q-later"))
    assert fourth.from_store and fourth.consent_epoch == 2 and fourth.result == second.result
    with Ledger(node.dir / "ledger.sqlite") as ledger:
        ledger.check()
