"""Audit entries that scale (issue 16, item 4): the coordinator records each node-signed release as digests, the
signature and a small header (``genogate.receipt``, ``coordinator.record``); a node's entry digests the result
its ledger stores. Real parts throughout: a node ledger with its audit log, releases signed by the node's key as
``node.release`` signs them, the coordinator's SQLite state and audit log; reconcile from the node's export."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.combine import combine_results
from coordinator.fanout import SiteResult
from coordinator.queries import status_label
from coordinator.record import MAX_LISTED_VARIANTS, reconcile_sites, record_run, recover_history, run_query_entry
from genogate import audit, receipt, varint
from genogate.audit import AuditLog
from genogate.kinds import combined_to_pb, result_from_pb
from genogate.reconcile import reconcile
from genogate.signing import Signer
from genogate.wire.v1 import common_pb2 as pb
from node import release
from node.ledger import Answered, Ledger
from node.ledger.inspection import read_results
from tests.coordstate import World, approved, open_world, sqlite_opener

SITES = ("site-a", "site-b", "site-c")
VARIANTS = 1000


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path, sqlite_opener) as w:
        yield w


def _variants(n: int) -> list[pb.Variant]:
    return [pb.Variant(chrom=str(1 + i % 22), pos=10_000 + 7919 * i, ref="A", alt="G") for i in range(n)]


def _result(n: int, site: int) -> bytes:
    """An allele-frequency result as a node stores and releases it (fixed values: no draw is tested here)."""

    def value(v: int) -> pb.NoisyValue:
        return pb.NoisyValue(
            estimate=v, noise_scale=2.0, ci95_low=v - 6.0, ci95_high=v + 6.0, mechanism=1, noise_stddev=2.8
        )

    counts = [
        pb.AlleleCounts(variant=v, allele_count=value(37 * i % 500 + site), allele_number=value(20_000 - i))
        for i, v in enumerate(_variants(n))
    ]
    result = pb.QueryResult(allele_frequency=pb.AlleleFrequencyResult(variants=counts))
    return result.SerializeToString(deterministic=True)


@dataclass
class Node:
    """One site: its ledger (with its audit log) and its signing key."""

    site: str
    ledger: Ledger
    signer: Signer
    path: Path

    def release(self, study: str, query_id: str, payload: bytes, result: bytes) -> pb.Release:
        """Charge, store the result and sign the release, as ``node.service`` does, writing the same audit
        entries (the ledger adds the decision and the result's digest)."""
        entry = {"event": "query", "study": study, "query_id": query_id, "caller": "coordinator"}
        begun = self.ledger.begin(
            study_id=study,
            query_id=query_id,
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            canonical_sha256=hashlib.sha256(payload + b"canonical").hexdigest(),
            epsilon=Decimal("0.5"),
            delta=Decimal(0),
            epsilon_cap=Decimal(100),
            delta_cap=Decimal(0),
            now_ms=1_700_000_000_000,
            researcher="r",
            audit=entry,
        )
        assert not isinstance(begun, Answered)
        stored = self.ledger.complete(begun.charge_id, result, audit=entry)
        body = release.release_body(
            query_id=query_id,
            study_id=study,
            site=self.site,
            query_sha256=hashlib.sha256(payload).digest(),
            result=stored,
            charged=(Decimal("0.5"), Decimal(0)),
            from_store=False,
            begun=begun,
            budget_after=pb.BudgetStatus(study_id=study, site=self.site, epsilon_cap=100, epsilon_spent=0.5),
            released_unix_ms=1_700_000_000_123,
        )
        return release.sign(body, self.signer)

    def export(self) -> dict[str, object]:
        """What ``genogate-node audit export`` prints: the entries, the results beside them, the key."""
        return {
            "public_keys": {self.signer.key_id: self.signer.public_raw.hex()},
            "entries": audit.entries_json(self.ledger.audit_rows(), read_results(self.path)),
        }


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    out = {}
    for site in SITES:
        signer = Signer(Ed25519PrivateKey.generate())
        path = tmp_path / f"{site}.ledger.sqlite"
        out[site] = Node(site, Ledger(path, audit_signer=signer), signer, path)
    yield out
    for n in out.values():
        n.ledger.close()


def _run(
    w: World,
    log: AuditLog,
    nodes: dict[str, Node],
    study: str,
    query_id: str,
    n: int = VARIANTS,
    combine: bool = False,
) -> tuple[int, dict[str, bytes]]:
    """One federated run of an n-variant allele-frequency query answered by every site, recorded as
    ``FederatedQueries._record`` records it (``combine``: with the combination ``FederatedQueries.run``
    makes; else an empty one); returns the entry's position and each site's result."""
    env = pb.QueryEnvelope(query_id=query_id, study_id=study, epsilon=0.5)
    env.query.allele_frequency.variants.extend(_variants(n))
    payload = env.SerializeToString(deterministic=True)
    results = {site: _result(n, i) for i, site in enumerate(nodes)}
    ordered = []
    for site, node in nodes.items():
        signed = node.release(study, query_id, payload, results[site])
        body = pb.ReleaseBody.FromString(signed.payload)
        ordered.append(SiteResult(site, pb.SITE_STATUS_ANSWERED, release=signed, body=body, attempts=1))
    entry = run_query_entry(
        caller="researcher",
        researcher_key="f" * 64,
        payload=payload,
        env=env,
        kind="allele_frequency",
        epsilon=Decimal("0.5"),
        ordered=ordered,
        status=status_label,
        combined=_combined(ordered) if combine else pb.CombinedResult(),
    )
    return record_run(w.state, log, entry, now_ms=1_700_000_000_500), results


def _combined(ordered: list[SiteResult]) -> pb.CombinedResult:
    """What ``FederatedQueries.run`` combines and sends (the answering sites, in order)."""
    combined = combine_results([result_from_pb(r.body.result) for r in ordered if r.body is not None])
    assert combined is not None
    return combined_to_pb(combined)


def _audit_log(w: World) -> AuditLog:
    return AuditLog(w.where / "audit.sqlite", Signer(Ed25519PrivateKey.generate()))


def _file_bytes(path: Path) -> int:
    """The audit file's size with everything checkpointed into it (the WAL emptied)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = Path(f"{path}-wal")
    return os.path.getsize(path) + (os.path.getsize(wal) if wal.exists() else 0)


def test_a_1000_variant_run_adds_at_most_20_kb_to_the_audit_file(world: World, nodes: dict[str, Node]) -> None:
    study = approved(world).study_id
    log = _audit_log(world)
    _run(world, log, nodes, study, "warm-up")  # the file's first pages
    before = _file_bytes(log.path)
    runs = 5
    for i in range(runs):
        _run(world, log, nodes, study, f"q-{i}")
    growth = (_file_bytes(log.path) - before) / runs
    assert growth <= 20 * 1024, f"{growth:.0f} bytes per 1,000-variant query"
    # What makes it small: no release payload and no variant list in the entry, only their digests.
    entry = json.loads(log.rows()[-1].entry)
    listed = "".join(f"{v.chrom}:{v.pos}:{v.ref}:{v.alt}\n" for v in _variants(VARIANTS)).encode()
    assert entry["format"] == 2 and entry["query"]["allele_frequency"]["variants"] == {
        "count": VARIANTS,
        "sha256": hashlib.sha256(listed).hexdigest(),
    }
    for s in entry["sites"]:
        assert set(s["receipt"]) == {"payload_sha256", "result_sha256", "header", "signature", "key_id"}
    assert len(log.rows()[-1].entry) < 4 * 1024
    # A short variant list is spelled out.
    _run(world, log, nodes, study, "short", n=MAX_LISTED_VARIANTS)
    short = json.loads(log.rows()[-1].entry)["query"]["allele_frequency"]["variants"]
    assert isinstance(short, list) and len(short) == MAX_LISTED_VARIANTS
    # Every run is in the study's history, naming its entry.
    assert [h.query_id for h in world.state.history(study)][-2:] == ["q-4", "short"]
    assert world.state.last_audit_seq() == log.rows()[-1].seq
    log.close()


def test_reconcile_checks_each_body_from_the_node_export_and_shows_the_values(
    world: World, nodes: dict[str, Node]
) -> None:
    study = approved(world).study_id
    log = _audit_log(world)
    seq, results = _run(world, log, nodes, study, "q-1", n=50)
    rows = log.rows()
    assert audit.check(rows, audit.keys(log._signer.public_raw)).ok
    for site, node in nodes.items():
        export = node.export()
        # The node's own entries digest the result; the export carries it beside them, outside the chain.
        answered = [e for e in export["entries"] if e["entry"].get("decision") == "answered"]  # type: ignore[index, union-attr]
        assert answered and all("result" not in e["entry"] and "result" in e for e in answered)
        assert all(len(row.entry) < 1024 for row in node.ledger.audit_rows())  # a digest whatever the result
        report = reconcile(rows, site, export, values=True)
        assert report.ok and report.entries == 1, report.problems
        (shown,) = report.values
        assert shown["coordinator_entry"] == seq and shown["site"] == site and shown["query_id"] == "q-1"
        got = pb.QueryResult()
        got.ParseFromString(results[site])
        assert len(shown["result"]["allele_frequency"]["variants"]) == 50
        assert shown["result"]["allele_frequency"]["variants"][3]["allele_count"]["estimate"] == str(
            got.allele_frequency.variants[3].allele_count.estimate
        )
    # An edited body in the node's export: found, naming the node's entry and the coordinator's entry.
    export = nodes["site-a"].export()
    for e in export["entries"]:  # type: ignore[union-attr]
        if "result" in e:
            body = bytearray(base64.b64decode(e["result"]))
            body[-1] ^= 1
            e["result"] = base64.b64encode(bytes(body)).decode()
    report = reconcile(rows, "site-a", export)
    assert not report.ok and report.entries == 0
    assert any(p.startswith("node log: entry #") and "does not match" in p for p in report.problems)
    assert any(f"coordinator entry #{seq} (query 'q-1')" in p and "no release body" in p for p in report.problems)
    # A body the export does not carry at all.
    export = nodes["site-b"].export()
    for e in export["entries"]:  # type: ignore[union-attr]
        e.pop("result", None)
    report = reconcile(rows, "site-b", export)
    assert not report.ok and any(f"coordinator entry #{seq}" in p for p in report.problems)
    log.close()


@pytest.mark.parametrize(
    "field, value",
    [("header", 7), ("header", None), ("signature", 12), ("signature", "not base64!"), ("key_id", [1])],
)
def test_a_malformed_receipt_in_the_coordinator_log_is_a_problem_not_a_crash(
    world: World, nodes: dict[str, Node], field: str, value: object
) -> None:
    study = approved(world).study_id
    log = _audit_log(world)
    _run(world, log, nodes, study, "q-1", n=3)
    rows = log.rows()
    log.close()
    edited = []
    for row in rows:
        entry = json.loads(row.entry)
        for site in entry.get("sites", []):
            if "receipt" in site:
                site["receipt"][field] = value
        edited.append(dataclasses.replace(row, entry=json.dumps(entry)))
    report = reconcile(edited, "site-a", nodes["site-a"].export())
    assert not report.ok and report.entries == 0
    assert any("coordinator entry #" in p for p in report.problems), report.problems


def test_reconciling_every_answering_site_recomputes_the_combined_answer(world: World, nodes: dict[str, Node]) -> None:
    """The combined answer is kept as a digest; given every answering site's export, reconcile --values
    recombines the verified releases and shows it, matching the recorded digest."""
    study = approved(world).study_id
    log = _audit_log(world)
    seq, _ = _run(world, log, nodes, study, "q-1", n=20, combine=True)
    rows = log.rows()
    entry = json.loads(rows[-1].entry)
    exports = [(site, node.export()) for site, node in nodes.items()]
    report = reconcile_sites(rows, exports, values=True)
    assert report.ok and report.entries == 3, report.problems
    (combined,) = [v for v in report.values if "combined" in v]
    assert combined["coordinator_entry"] == seq and combined["sites"] == list(SITES)
    assert combined["matches_recorded_digest"] is True
    wire = pb.CombinedResult()
    json_format.ParseDict(combined["combined"], wire)
    assert hashlib.sha256(wire.SerializeToString(deterministic=True)).hexdigest() == entry["combined_sha256"]
    assert len(combined["combined"]["allele_frequency"]["variants"]) == 20
    # Without one answering site's export there is nothing to recombine, and no value claims otherwise.
    partial = reconcile_sites(rows, exports[:2], values=True)
    assert partial.ok and partial.entries == 2 and not [v for v in partial.values if "combined" in v]
    # Several sites' problems are told apart by site.
    broken = [(site, {**export, "public_keys": {}}) for site, export in exports]
    bad = reconcile_sites(rows, broken)
    assert {p.split(":")[0] for p in bad.problems} == set(SITES)
    log.close()


def test_an_entry_whose_digest_was_edited_breaks_the_chain(world: World, nodes: dict[str, Node]) -> None:
    """The chain and its signatures cover the digests: changing one is an edit like any other."""
    study = approved(world).study_id
    log = _audit_log(world)
    _run(world, log, nodes, study, "q-1", n=3)
    rows = log.rows()
    d = rows[-1].to_json()
    receipt_ = d["entry"]["sites"][0]["receipt"]
    receipt_["payload_sha256"] = "0" * 64
    edited = [*rows[:-1], audit.Row.from_json(d)]
    report = audit.check(edited, audit.keys(log._signer.public_raw))
    assert not report.ok and "edited" in report.problems[0]
    log.close()


def test_old_inline_entries_still_check_and_reconcile(world: World, nodes: dict[str, Node], tmp_path: Path) -> None:
    """A v1 coordinator entry (the whole signed payload inline) and a node entry holding its result inline, as
    they were written before: the chain checks and reconcile matches them, beside v2 entries."""
    study = approved(world).study_id
    log = _audit_log(world)
    node = nodes["site-a"]
    env_payload = b"old envelope"
    signed = node.release(study, "old-1", env_payload, _result(20, 0))
    log.append(  # the v1 layout, as coordinator.queries wrote it before issue 16
        {
            "event": "run_query",
            "study": study,
            "query_id": "old-1",
            "sites": [
                {
                    "site": "site-a",
                    "status": "answered",
                    "receipt": {
                        "payload": audit.b64(signed.payload),
                        "signature": audit.b64(signed.node_signature),
                        "key_id": signed.node_key_id,
                    },
                }
            ],
            "combined": {"allele_frequency": {}},
        }
    )
    seq, _ = _run(world, log, nodes, study, "new-1", n=5)
    rows = log.rows()
    assert audit.check(rows, audit.keys(log._signer.public_raw)).ok
    report = reconcile(rows, "site-a", node.export(), values=True)
    assert report.ok and report.entries == 2 and [v["query_id"] for v in report.values] == ["old-1", "new-1"]
    # A node log written before: each result inline in its entry (nothing beside the entries).
    old_log = AuditLog(tmp_path / "old-node-audit.sqlite", node.signer)
    bodies = read_results(node.path)
    for r in node.ledger.audit_rows():
        e = json.loads(r.entry)
        if "result_sha256" in e:
            e["result"] = audit.b64(bodies[e["result_sha256"]])
        old_log.append(e)
    old_export = {
        "public_keys": {node.signer.key_id: node.signer.public_raw.hex()},
        "entries": audit.entries_json(old_log.rows()),
    }
    assert all("result" not in e for e in old_export["entries"])  # type: ignore[attr-defined]
    report = reconcile(rows, "site-a", old_export)
    assert report.ok and report.entries == 2, report.problems
    old_log.close()
    log.close()


def test_receipt_digest_puts_the_result_back_byte_for_byte_or_keeps_the_payload() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    body = pb.ReleaseBody(query_id="q", study_id="s", site="a", query_sha256=b"x" * 32, released_unix_ms=5)
    body.result.ParseFromString(_result(30, 1))
    body.budget_after.epsilon_spent = 0.25
    payload = body.SerializeToString(deterministic=True)
    d = receipt.digest(payload, signer.sign("genogate.v1.ReleaseBody", payload), signer.key_id)
    assert "payload" not in d and d["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    header, result = receipt.split(payload)
    assert hashlib.sha256(result).hexdigest() == d["result_sha256"] and result == _result(30, 1)
    assert len(header) < 200 and receipt.rebuild(header, result) == payload
    assert receipt.payload_of(d, result) == payload
    with pytest.raises(ValueError):
        receipt.payload_of(d, result[:-1])
    # Bytes not in deterministic field order (the result last) cannot be put back as they were: kept inline.
    odd = header + _wire_result(result)
    kept = receipt.digest(odd, b"sig", "k")
    assert kept["payload"] == audit.b64(odd) and "payload_sha256" not in kept


@settings(max_examples=300, deadline=None)
@given(
    query_id=st.text(max_size=40),
    site=st.text(max_size=20),
    charged=st.floats(allow_nan=False),
    released=st.integers(0, 2**62),
    variants=st.integers(0, 40),
    with_result=st.booleans(),
    with_budget=st.booleans(),
    epoch=st.integers(0, 2**63),
)
def test_any_release_body_is_recorded_and_put_back_byte_for_byte(
    query_id: str,
    site: str,
    charged: float,
    released: int,
    variants: int,
    with_result: bool,
    with_budget: bool,
    epoch: int,
) -> None:
    """Whatever fields a body sets (a result or none, empty strings, zeros left out), the recorded form gives
    the signed bytes back from the result's bytes alone, or keeps the payload inline (no result field)."""
    body = pb.ReleaseBody(
        query_id=query_id, site=site, epsilon_charged=charged, released_unix_ms=released, consent_epoch=epoch
    )
    if with_result:
        body.result.ParseFromString(_result(variants, 2))
    if with_budget:
        body.budget_after.epsilon_spent = charged
    payload = body.SerializeToString(deterministic=True)
    d = receipt.digest(payload, b"s" * 64, "k")
    if not with_result:
        assert d["payload"] == audit.b64(payload)
        return
    result = body.result.SerializeToString(deterministic=True)
    assert d["result_sha256"] == hashlib.sha256(result).hexdigest()
    assert receipt.payload_of(d, result) == payload


def _wire_result(result: bytes) -> bytes:
    """The result field on the wire (field 5, length-delimited)."""
    return bytes([5 << 3 | 2]) + varint.encode(len(result)) + result


def test_history_rows_a_crash_lost_are_restored_from_the_audit_log(world: World, nodes: dict[str, Node]) -> None:
    study = approved(world).study_id
    log = _audit_log(world)
    # A run recorded before issue 16 (its history row written with it, then): never recorded twice.
    v1 = {"event": "run_query", "study": study, "query_id": "v1", "kind": "cohort_count", "epsilon": "0.5"}
    log.append({**v1, "sites": []})
    assert recover_history(world.state, log) == 0
    _run(world, log, nodes, study, "kept", n=2)
    # Two runs whose history rows were lost (appended to the audit log alone, as a machine crash would leave
    # them: the entry's commit synced, the row's not), and a node registration entry, which has no row.
    base = json.loads(log.rows()[-1].entry)
    for qid in ("lost-1", "lost-2"):
        log.append({**base, "query_id": qid}, now_ms=1_700_000_009_000)
    log.append({"event": "register_node", "node": "site-d"})
    assert [h.query_id for h in world.state.history(study)] == ["kept"]
    assert recover_history(world.state, log) == 2
    history = world.state.history(study)
    assert [h.query_id for h in history] == ["kept", "lost-1", "lost-2"]
    assert history[1].created_ms == 1_700_000_009_000 and history[1].outcomes == dict.fromkeys(SITES, "answered")
    assert recover_history(world.state, log) == 0  # nothing twice
    log.close()
