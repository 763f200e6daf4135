"""The node as a real process: ready file + health check, graceful SIGTERM, and a SIGKILL mid-stream after
which every answered query is still charged and answered again identically at no new cost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from genogate.errors import GenogateError
from genogate.filter import parse_filter
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import NodeClient, envelope
from genogate.results import ReleaseBody
from node.ingest import ingest
from node.ledger import Ledger
from tests.conftest import SUBSET, require_shared, write_subset_sheet
from tests.nodes import client_tls, make_ca, make_node, study_toml
from tests.processes import running_node, start_node
from tests.terms import filler

EPS = 0.01
LOCAL = {"GENOGATE_NODE_STUDIES__LOCAL": "true"}  # these tests use the local trusted-studies file


@pytest.fixture
def node_setup(tmp_path: Path) -> tuple[Path, object]:
    require_shared()
    ca = make_ca(tmp_path / "ca")
    node = make_node(tmp_path / "site-a", "site-a", ca)
    ingest(node.store, [SUBSET / "1KG_phase3_subset_chr22.vcf.gz"], write_subset_sheet(tmp_path / "sheet.tsv"))
    (node.dir / "studies.toml").write_text(study_toml("S1", epsilon_total="100", cap="1"))
    return node.config, client_tls(ca, "alice", tmp_path / "alice")


def test_sigterm_stops_gracefully_and_removes_the_ready_file(node_setup: tuple[Path, object], tmp_path: Path) -> None:
    config, tls = node_setup
    proc = start_node(config, tls, log=tmp_path / "node.log", env=LOCAL)  # type: ignore[arg-type]
    try:
        with NodeClient(proc.address, tls) as c:  # type: ignore[arg-type]
            assert c.info().name == "site-a"
    finally:
        code = proc.stop()
    assert code == 0
    assert not (config.parent / "ready.json").exists()
    log = (tmp_path / "node.log").read_text()
    assert '"msg": "stopping"' in log and "HP:" not in log


def test_sigkill_mid_stream_loses_no_charge(node_setup: tuple[Path, object], tmp_path: Path) -> None:
    config, tls = node_setup
    answered: list[tuple[bytes, ReleaseBody]] = []
    stop = threading.Event()
    proc = start_node(config, tls, log=tmp_path / "node.log", env=LOCAL)  # type: ignore[arg-type]

    def stream(worker: int) -> None:
        with NodeClient(proc.address, tls, timeout_s=5) as c:  # type: ignore[arg-type]
            i = 0
            while not stop.is_set():
                env = envelope(CohortCount(parse_filter(filler(worker * 2000 + i))), study_id="S1", epsilon=EPS)
                payload = env.SerializeToString(deterministic=True)
                try:
                    _, body = c.send(payload)
                except GenogateError:
                    return  # the node died under us
                answered.append((payload, body))
                i += 1

    workers = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
    for t in workers:
        t.start()
    try:
        deadline = threading.Event()
        for _ in range(600):  # wait (bounded) until a good number of queries were answered
            if len(answered) >= 60:
                break
            deadline.wait(0.05)
        assert len(answered) >= 60, "the node answered too few queries before the kill"
        proc.kill()
    finally:
        stop.set()
        for t in workers:
            t.join(timeout=30)
        proc.stop()

    # Every answered query's charge is in the ledger; at most the in-flight ones (4 workers) more.
    with Ledger(config.parent / "ledger.sqlite") as ledger:
        ledger.check()
        spent = ledger.budget(
            "S1", __import__("decimal").Decimal("100"), __import__("decimal").Decimal("1e-5")
        ).epsilon_spent
    n = len(answered)
    assert n * EPS - 1e-9 <= float(spent) <= (n + 4) * EPS + 1e-9

    with running_node(config, tls, log=tmp_path / "node2.log", env=LOCAL) as proc2:  # type: ignore[arg-type]
        with NodeClient(proc2.address, tls) as c:  # type: ignore[arg-type]
            before = c.budget("S1").epsilon_spent
            for payload, body in answered[:: max(1, n // 10)]:
                _, again = c.send(payload)  # a retry after the restart: the same stored answer, no new charge
                assert again.result == body.result and again.query_id == body.query_id
            assert c.budget("S1").epsilon_spent == before
