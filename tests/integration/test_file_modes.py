"""A node's and a coordinator's state is the operator's alone whatever the umask (issue 13, item 9): the
store, ledger (budgets, released values, audit log), nonce store, coordinator state and every side file
SQLite and DuckDB write are 0600, the directories 0700, even when started from a shell with umask 0."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.signing import Signer
from tests.conftest import ROOT
from tests.integration.conftest import NEW_RECORDS, sheet_text, vcf_text
from tests.nodes import client_tls, make_ca, make_coordinator, make_node
from tests.processes import start_coordinator, start_node

PUBLIC = {  # configuration and certificates, written by init with their own modes
    *("node.toml", "coordinator.toml", "studies.toml", "committee.toml"),
    *("node.pem", "ca.pem", "node.csr", "coordinator.pem", "coordinator.csr"),
}


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def private_files(directory: Path) -> dict[str, int]:
    """Every file under ``directory`` but the public configuration and certificates, with its mode."""
    return {
        str(p.relative_to(directory)): mode(p) for p in directory.rglob("*") if p.is_file() and p.name not in PUBLIC
    }


def test_node_and_coordinator_state_is_private_under_umask_0(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    operator = client_tls(ca, "operator", tmp_path / "clients")
    with umask(0):
        node = make_node(tmp_path / "site-a", "site-a", ca, client=True)
        (tmp_path / "c.vcf").write_text(vcf_text(NEW_RECORDS))
        (tmp_path / "s.tsv").write_text(sheet_text())
        done = subprocess.run(
            [sys.executable, "-m", "node.cli", "ingest", "--store", str(node.store), "--vcf", str(tmp_path / "c.vcf"),
             "--samples", str(tmp_path / "s.tsv")],
            capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        committee = Signer(Ed25519PrivateKey.generate())
        env = {"GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee.public_raw.hex()}  # grants on: a nonce store
        proc = start_node(node.config, operator, log=tmp_path / "node.log", env=env)
        proc.stop()
        cdir = make_coordinator(tmp_path, ca, operators=("operator",))
        coordinator = start_coordinator(cdir / "coordinator.toml", operator, log=tmp_path / "coord.log")
        coordinator.stop()
    for directory in (node.dir, cdir):
        assert mode(directory) == 0o700, directory
        files = private_files(directory)
        assert any(name.endswith(".sqlite") for name in files), files
        assert {name: m for name, m in files.items() if m & 0o077} == {}, directory
    assert mode(node.store) == 0o600 and "ledger.sqlite" in private_files(node.dir)
    assert "nonces.sqlite" not in private_files(node.dir)  # the nonces are in the ledger (schema 5)
