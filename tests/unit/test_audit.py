"""The hash-chained, signed audit log (``genogate.audit``): appends chain and verify; an edited, removed or
reordered entry, a forged signature and an unknown key are each reported at the position they break."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import audit
from genogate.errors import StoreError
from genogate.signing import Signer


@pytest.fixture
def log(tmp_path: Path) -> tuple[audit.AuditLog, Signer]:
    signer = Signer(Ed25519PrivateKey.generate())
    a = audit.AuditLog(tmp_path / "audit.sqlite", signer)
    for i in range(5):
        a.append({"event": "query", "query_id": f"q{i}", "epsilon": "0.5"}, now_ms=1000 + i)
    return a, signer


def test_a_fresh_chain_verifies_and_reports_its_head(log: tuple[audit.AuditLog, Signer]) -> None:
    a, signer = log
    rows = a.rows()
    report = audit.check(rows, audit.keys(signer.public_raw))
    assert report.ok and report.entries == 5 and report.head_seq == 5 and report.head_sha256 == rows[-1].sha256.hex()
    assert [json.loads(r.entry)["query_id"] for r in rows] == [f"q{i}" for i in range(5)]
    # export and re-import round-trips byte for byte
    again = [audit.Row.from_json(d) for d in audit.entries_json(rows)]
    assert again == rows and audit.check(again, audit.keys(signer.public_raw)).ok
    a.close()


def test_edits_removals_reorderings_and_forgeries_are_found_where_they_are(log: tuple[audit.AuditLog, Signer]) -> None:
    a, signer = log
    rows = a.rows()
    keys = audit.keys(signer.public_raw)
    edited = list(rows)
    edited[2] = dataclasses.replace(rows[2], entry=rows[2].entry.replace("0.5", "0.0"))
    assert any("position 3" in p and "edited" in p for p in audit.check(edited, keys).problems)
    removed = rows[:1] + rows[2:]
    assert any("position 2" in p for p in audit.check(removed, keys).problems)
    reordered = [rows[0], rows[2], rows[1], *rows[3:]]
    assert any("position 2" in p for p in audit.check(reordered, keys).problems)
    forged = list(rows)
    forged[4] = dataclasses.replace(rows[4], signature=bytes(64))
    assert audit.check(forged, keys).problems == ["entry at position 5 (stored as #5): bad signature"]
    other = Signer(Ed25519PrivateKey.generate())
    assert all("unknown key" in p for p in audit.check(rows, audit.keys(other.public_raw)).problems)
    # an attacker who rewrites the entry and recomputes its hash still cannot sign it
    fake = dataclasses.replace(rows[1], entry=rows[1].entry.replace("q1", "qX"))
    fake = dataclasses.replace(fake, sha256=audit._digest(fake.prev_sha256, fake.seq, fake.at_ms, fake.entry))
    problems = audit.check([rows[0], fake, *rows[2:]], keys).problems
    assert any("position 2" in p and "bad signature" in p for p in problems)
    a.close()


def test_the_table_refuses_updates_and_deletes(log: tuple[audit.AuditLog, Signer]) -> None:
    import sqlite3

    a, _ = log
    path = a.path
    a.close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="never changes"):
        conn.execute("UPDATE audit SET entry = '{}' WHERE seq = 1")
    conn.close()


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such audit log"):
        audit.read_file(tmp_path / "absent.sqlite")
    (tmp_path / "x.txt").write_text("not sqlite")
    with pytest.raises(StoreError, match="not a genogate audit log"):
        audit.AuditLog(tmp_path / "x.txt", Signer(Ed25519PrivateKey.generate()))
