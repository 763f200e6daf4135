"""``genogate-coordinator committee key``: the committee's public key in the exact form a node's ``[grants]
committee_keys`` takes, and a fingerprint derivable from it that is the id grants carry ("grant signed by")."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from coordinator.admin import committee_key, init_coordinator
from coordinator.cli import main
from genogate.signing import Signer, key_id
from node.admin import dev_ca_init, dev_ca_issue, init_node
from node.config import load_node_config


def test_committee_key_prints_the_key_nodes_take_and_the_grant_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "coord"
    init_coordinator(d, "coord-1")
    capsys.readouterr()
    signer = Signer.from_pem_file(d / "keys/committee.key")
    config = str(d / "coordinator.toml")

    assert main(["committee", "key", "--config", config, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got == {
        "public_key": signer.public_raw.hex(),
        "fingerprint": signer.key_id,  # what the state stamps on grants and revocation lists
        "coordinator_common_name": "coord-1",
    }
    assert got["fingerprint"] == key_id(bytes.fromhex(got["public_key"]))

    assert main(["committee", "key", "--config", config]) == 0
    text = capsys.readouterr().out
    assert f"committee public key  {signer.public_raw.hex()}\n" in text
    assert f"fingerprint           {signer.key_id}\n" in text
    assert "--coordinator-cn coord-1" in text and "BEGIN" not in text

    # The printed key is what a joining node's init takes, and its config then trusts exactly this committee.
    init_node(
        tmp_path / "site-d",
        "site-d",
        committee_keys=(got["public_key"],),
        coordinator="coord.example.org:50051",
        coordinator_common_name=got["coordinator_common_name"],
    )
    node = load_node_config(tmp_path / "site-d/node.toml", env={})
    assert node.grants.committee_keys == (got["public_key"],)
    assert tomllib.loads((tmp_path / "site-d/node.toml").read_text())["grants"]["committee_keys"] == [got["public_key"]]


def test_the_certificate_names_the_coordinator_once_it_exists(tmp_path: Path) -> None:
    d = tmp_path / "coord"
    init_coordinator(d, "coord-1")
    dev_ca_init(tmp_path / "ca")
    dev_ca_issue(tmp_path / "ca", d / "tls/coordinator.csr", d / "tls/coordinator.pem", server=True, client=True)
    assert committee_key(d / "coordinator.toml", env={}).coordinator_common_name == "coord-1"


def test_committee_key_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["committee", "key", "--config", str(tmp_path / "none.toml")]) == 3
    missing = capsys.readouterr().err
    d = tmp_path / "coord"
    init_coordinator(d)
    (d / "keys/committee.key").write_text("not a key")
    capsys.readouterr()
    assert main(["committee", "key", "--config", str(d / "coordinator.toml")]) == 3
    err = (missing + capsys.readouterr().err).strip().splitlines()
    assert len(err) == 2 and all(line.startswith("genogate-coordinator: error: ") for line in err)
    assert "none.toml" in err[0]
    assert "committee.key" in err[1] and "Ed25519 private key" in err[1]
