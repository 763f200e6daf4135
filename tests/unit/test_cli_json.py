"""``--json`` of the operators' local commands (``genogate-node init``, ``dev-ca``, ``synth``;
``genogate-coordinator init``, ``committee add``): one JSON object on stdout with a lower-case ``status``
word, run in-process on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator import cli as coordinator_cli
from node import cli as node_cli


def _json(main: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(argv) == 0  # type: ignore[operator]
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def test_node_init_and_dev_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = _json(node_cli.main, ["dev-ca", "init", "--dir", str(tmp_path / "ca"), "--json"], capsys)
    assert ca["status"] == "created"
    assert {Path(str(f["path"])).name for f in ca["created"]} == {"ca.key", "ca.pem"}  # type: ignore[attr-defined,index]
    node = _json(node_cli.main, ["init", "--dir", str(tmp_path / "n"), "--name", "site-a", "--json"], capsys)
    assert node["status"] == "created" and any(
        str(f["path"]).endswith("node.toml")
        for f in node["created"]  # type: ignore[attr-defined]
    )
    argv = ["dev-ca", "issue", "--ca", str(tmp_path / "ca"), "--csr", str(tmp_path / "n/tls/node.csr")]
    issued = _json(node_cli.main, [*argv, "--out", str(tmp_path / "n/tls/node.pem"), "--server", "--json"], capsys)
    assert issued["status"] == "created" and (tmp_path / "n/tls/node.pem").is_file()
    client = ["dev-ca", "client", "--ca", str(tmp_path / "ca"), "--name", "op", "--out-dir", str(tmp_path / "p")]
    assert _json(node_cli.main, [*client, "--json"], capsys)["status"] == "created"


def test_synth_json_lists_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "--samples", "20", "--variants", "50", "--out", str(tmp_path), "--json"]
    doc = _json(node_cli.main, argv, capsys)
    assert doc["status"] == "written" and doc["ingest"] is None
    assert set(doc["files"]) == {"samples", "truth", "vcf"}  # type: ignore[arg-type]


def test_coordinator_init_and_committee_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(coordinator_cli.main, ["init", "--dir", str(tmp_path / "c"), "--json"], capsys)
    assert doc["status"] == "created"
    config = str(tmp_path / "c" / "coordinator.toml")
    add = ["committee", "add", "--config", config, "--name", "m1", "--public-key", "11" * 32, "--json"]
    first = _json(coordinator_cli.main, add, capsys)
    assert first["status"] == "added" and any("m1" in str(n) for n in first["notes"])  # type: ignore[attr-defined]
    assert _json(coordinator_cli.main, add, capsys)["status"] == "unchanged"
