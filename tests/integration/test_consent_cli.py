"""``genogate-node consent``: on a node directory made by ``init``, a real DuckDB store held open read-only (as a
serving node holds it), the node's ledger and audit log. Changes are recorded all or nothing, refused for
sample ids the store does not hold (saying how many), audited with who and when in the node's signed log,
shown and listed, with ``--json`` everywhere; ingest of an older sheet keeps them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genogate import audit
from genogate.signing import Signer
from node.cli import main
from node.consent import consent_path
from node.ingest import ingest
from node.store import Store
from tests.nodes import Node, make_ca, make_node

SHEET = "sample_id\tsex\tconsent\n" + "".join(f"P{i}\t{'FM'[i % 2]}\tGRU\n" for i in range(6))
VCF = (
    '##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n##contig=<ID=1>\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"P{i}" for i in range(6)) + "\n"
    "1\t100\t.\tA\tG\t.\t.\t.\tGT\t" + "\t".join("0/1" for _ in range(6)) + "\n"
)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    n = make_node(tmp_path / "site-a", "site-a", make_ca(tmp_path / "ca"))
    (tmp_path / "calls.vcf").write_text(VCF)
    (tmp_path / "sheet.tsv").write_text(SHEET)
    ingest(n.store, [tmp_path / "calls.vcf"], tmp_path / "sheet.tsv", build="GRCh37")
    return n


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def consent(capsys: pytest.CaptureFixture[str], node: Node, action: str, *args: str) -> dict[str, object]:
    code, out, err = cli(capsys, "consent", action, "--config", str(node.config), "--json", *args)
    assert code == 0, err
    doc: dict[str, object] = json.loads(out)
    return doc


def audit_entries(node: Node) -> list[dict[str, object]]:
    rows = audit.read_file(node.dir / "ledger.sqlite")
    key = Signer.from_pem_file(node.dir / "keys" / "identity.key")
    assert audit.check(rows, audit.keys(key.public_raw)).ok  # signed by the node's key, chain intact
    return [json.loads(r.entry) | {"at_ms": r.at_ms} for r in rows]


def test_withdraw_is_audited_shown_listed_and_survives_an_old_sheet(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = Store.open(node.store)  # a serving node's read-only hold on the store: no write lock is needed
    try:
        doc = consent(capsys, node, "withdraw", "--sample", "P1", "--by", "dr-who", "--reason", "form 12")
        assert (doc["status"], doc["action"], doc["changed"], doc["by"]) == ("recorded", "withdraw", 1, "dr-who")
        again = consent(capsys, node, "withdraw", "--sample", "P1")
        assert again["status"] == "unchanged" and again["changed"] == 0 and again["unchanged"] == 1
    finally:
        held.close()
    entries = [e for e in audit_entries(node) if e.get("event") == "consent"]
    assert len(entries) == 1 and entries[0]["by"] == "dr-who" and entries[0]["reason"] == "form 12"
    assert entries[0]["at_ms"] == doc["at_ms"] and entries[0]["batch"] == doc["batch"]
    changes = entries[0]["changes"]
    assert isinstance(changes, list) and changes[0]["codes"] == ["WITHDRAWN"] and changes[0]["previous"] == ["GRU"]
    code, out, _ = cli(capsys, "audit", "verify", "--config", str(node.config))
    assert code == 0 and "intact" in out

    shown = consent(capsys, node, "show", "--sample", "P1")
    assert shown["status"] == "withdrawn" and shown["codes"] == ["WITHDRAWN"] and shown["sheet_codes"] == ["GRU"]
    history = shown["history"]
    assert isinstance(history, list) and [h["by"] for h in history] == ["dr-who"]
    assert consent(capsys, node, "show", "--sample", "P2")["status"] == "consented"
    listed = consent(capsys, node, "list")
    in_force = listed["in_force"]
    assert isinstance(in_force, list) and len(in_force) == 1 and in_force[0]["pseudonym"] == shown["pseudonym"]
    code, out, _ = cli(capsys, "consent", "list", "--config", str(node.config))
    assert code == 0 and "1 participant with a change in force" in out and "dr-who" in out
    code, out, _ = cli(capsys, "status", "--config", str(node.config), "--json")
    section = json.loads(out)["consent"]
    assert (section["ok"], section["in_force"], section["withdrawn"]) == (True, 1, 1)

    # The old sheet, re-ingested: P1 stays withdrawn, and the report says why.
    summary = ingest(node.store, [tmp_path / "calls.vcf"], tmp_path / "sheet.tsv", build="GRCh37")
    assert summary.consent_overrides == 1 and summary.withdrawn == 1
    assert consent(capsys, node, "show", "--sample", "P1")["status"] == "withdrawn"


def test_unknown_sample_ids_refuse_the_whole_command(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        capsys,
        "consent",
        "withdraw",
        "--config",
        str(node.config),
        "--sample",
        "P0",
        "--sample",
        "NOPE",
        "--sample",
        "X",
    )
    assert code == 2 and out == ""
    assert "2 of the 3 sample ids given are not participants of the store" in err and "nothing was changed" in err
    assert "NOPE" not in err  # the count, not the ids
    assert consent(capsys, node, "list")["in_force"] == []
    assert not (node.dir / "ledger.sqlite").exists()  # nothing to audit: the log was not even created


def test_update_from_a_sheet_re_consents_and_is_all_or_nothing(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consent(capsys, node, "withdraw", "--sample", "P0", "--sample", "P3")
    sheet = tmp_path / "new.tsv"
    sheet.write_text(SHEET.replace("P3\tM\tGRU", "P3\tM\tHMB").replace("P5\tM\tGRU", "P5\tM\tWITHDRAWN"))
    # The sheet consents P0 (GRU) and P3 (HMB) again, but a sheet lifts no withdrawal unless told to.
    doc = consent(capsys, node, "update", "--sheet", str(sheet), "--by", "steward")
    changes = doc["changes"]
    assert isinstance(changes, list) and doc["changed"] == 1 and doc["kept_withdrawn"] == 2  # only P5 withdrawn
    assert [tuple(c["codes"]) for c in changes] == [("WITHDRAWN",)]
    assert consent(capsys, node, "show", "--sample", "P0")["status"] == "withdrawn"
    code, out, _ = cli(capsys, "consent", "update", "--config", str(node.config), "--sheet", str(sheet))
    assert code == 0 and "2 withdrawn participants kept withdrawn" in out and "--reconsent" in out
    doc = consent(capsys, node, "update", "--sheet", str(sheet), "--by", "steward", "--reconsent")
    changes = doc["changes"]
    assert isinstance(changes, list) and doc["changed"] == 2 and doc["kept_withdrawn"] == 0
    assert sorted(tuple(c["codes"]) for c in changes) == [("GRU",), ("HMB",)]  # P0 back to GRU, P3 to HMB
    assert consent(capsys, node, "show", "--sample", "P0")["status"] == "consented"
    one = consent(capsys, node, "update", "--sample", "P4", "--codes", "hmb;npu")
    assert one["changed"] == 1 and one["changes"][0]["codes"] == ["HMB", "NPU"]  # type: ignore[index]
    assert len(consent(capsys, node, "list", "--history")["changes"]) == 6  # type: ignore[arg-type]

    strangers = tmp_path / "strangers.tsv"
    strangers.write_text("sample_id\tsex\tconsent\nP98\tF\tGRU\nP99\tM\tGRU\n")
    code, _, err = cli(capsys, "consent", "update", "--config", str(node.config), "--sheet", str(strangers))
    assert code == 2 and "none of the 2 sample ids" in err
    nocol = tmp_path / "nocol.tsv"
    nocol.write_text("sample_id\tsex\nP0\tF\n")
    code, _, err = cli(capsys, "consent", "update", "--config", str(node.config), "--sheet", str(nocol))
    assert code == 4 and "no consent column" in err
    code, _, err = cli(capsys, "consent", "update", "--config", str(node.config), "--sample", "P0", "--codes", "XYZ")
    assert code == 2 and "--codes" in err
    assert len(consent(capsys, node, "list", "--history")["changes"]) == 6  # type: ignore[arg-type]
    assert consent_path(node.store).exists()
    entries = [e for e in audit_entries(node) if e.get("event") == "consent"]
    assert [e["action"] for e in entries] == ["withdraw", "update", "update", "update"]


def test_every_consent_command_has_help_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("withdraw", "update", "show", "list"):
        with pytest.raises(SystemExit) as done:
            main(["consent", action, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "--json" in text and "--config" in text and "%" not in text


def test_update_reads_an_institution_sheet_through_the_ingest_mapping(
    node: Node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sheet an institution exports (its own column names, spellings, more participants than the store
    holds) updates consent through the same ``--sheet-columns`` mapping ingest takes; rows for samples the
    store does not hold are skipped and counted, as ingest counts them."""
    export = tmp_path / "export.csv"
    rows = ["sample.id,Sex,Consent.Codes,Site"]
    rows += [f"P{i},{'female' if i % 2 == 0 else 'male'},{'hmb' if i == 2 else 'GRU'},north" for i in range(6)]
    rows += ["Q1,female,GRU,south", "Q2,male,GRU,south"]
    export.write_text("\n".join(rows) + "\n")
    mapping = "sample_id=sample.id,sex=Sex,consent=Consent.Codes"
    doc = consent(capsys, node, "update", "--sheet", str(export), "--sheet-columns", mapping)
    assert doc["changed"] == 1 and doc["sheet_rows_not_in_store"] == 2
    assert doc["changes"][0]["codes"] == ["HMB"]  # type: ignore[index]
    code, out, _ = cli(
        capsys, "consent", "update", "--config", str(node.config), "--sheet", str(export), "--sheet-columns", mapping
    )
    assert code == 0 and "2 sheet rows for samples the store does not hold: skipped" in out
    code, _, err = cli(capsys, "consent", "update", "--config", str(node.config), "--sheet", str(export))
    assert code != 0 and "sample_id" in err  # without the mapping the export's header is not ours
    code, _, err = cli(
        capsys, "consent", "update", "--config", str(node.config), "--sample", "P1", "--codes", "GRU",
        "--sheet-columns", mapping,
    )  # fmt: skip
    assert code == 2 and "go with --sheet" in err
