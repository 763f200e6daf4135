"""Reconciling the coordinator's audit log with one node's: every release the coordinator recorded from the
site must be a release the node signed and logged.

The coordinator's entries hold each receipt as digests (``genogate.receipt``: v2) or, before, inline (v1); the
node's export holds the bodies: the result of every release, beside the entry that digests it (``result``,
joined from its ledger by ``genogate-node audit export``) or, in entries written before, inside it. For each
receipt from the site, the body is taken from the node's export by the digest the coordinator recorded, the
signed payload is rebuilt from it and the receipt's header and must match the recorded payload digest, carry a
valid signature by one of the node's exported keys, and match an entry of the node's log that released the
same result for the same study and query id. A node body that does not match the digest its own entry records
is reported naming the node's entry; a receipt whose body is missing or does not match is reported naming the
coordinator's entry and the query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict

from genogate import receipt as receipts
from genogate.audit import Report, Row, check
from genogate.errors import GenogateError, StoreError
from genogate.signing import verify
from genogate.wire.v1 import common_pb2 as pb

_RELEASED = ("answered", "retry", "replay")


def _node_bodies(rows: Sequence[Mapping[str, Any]], report: Report) -> tuple[set[tuple[Any, ...]], dict[str, bytes]]:
    """From a node's exported entries: (study, query id, result digest) of every release it logged, and each
    result body the export carries whose SHA-256 is its entry's digest (a mismatch is a problem, naming it)."""
    released: set[tuple[Any, ...]] = set()
    bodies: dict[str, bytes] = {}
    for d in rows:
        e = d.get("entry", {})
        if e.get("decision") not in _RELEASED:
            continue
        sha = e.get("result_sha256")
        released.add((e.get("study"), e.get("query_id"), sha))
        text = e.get("result", d.get("result"))
        if text is None:
            continue
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError, ValueError):
            body = None
        if body is None or hashlib.sha256(body).hexdigest() != sha:
            report.problems.append(
                f"node log: entry #{d.get('seq')} (query {e.get('query_id')!r}): its release body does not match "
                "its result_sha256 (edited)"
            )
        elif isinstance(sha, str):
            bodies[sha] = body
    return released, bodies


def reconcile(
    coordinator: Sequence[Row],
    site: str,
    node_export: Mapping[str, Any],
    *,
    values: bool = False,
    releases: dict[tuple[int, str], pb.ReleaseBody] | None = None,
) -> Report:
    """Match every release the coordinator recorded from ``site`` against that node's own exported log (see
    the module docstring). ``report.entries`` counts the receipts matched; with ``values``, ``report.values``
    holds each matched release's values (entry position, query id, site, what it charged, the result).
    ``releases``, given, receives each matched release's body by (coordinator entry position, site)."""
    node_keys = {k: bytes.fromhex(v) for k, v in node_export.get("public_keys", {}).items()}
    exported = list(node_export.get("entries", []))
    report = check([Row.from_json(e) for e in exported], node_keys)
    report.problems = [f"node log: {p}" for p in report.problems]
    released, bodies = _node_bodies(exported, report)
    matched = 0
    for row in coordinator:
        entry = json.loads(row.entry)
        for s in entry.get("sites", []):
            receipt = s.get("receipt")
            if s.get("site") != site or receipt is None:
                continue
            where = f"coordinator entry #{row.seq} (query {entry.get('query_id')!r})"
            digest = receipt.get("result_sha256")
            try:
                payload = receipts.payload_of(receipt, bodies.get(digest) if isinstance(digest, str) else None)
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:  # a malformed entry is a problem
                report.problems.append(
                    f"{where}: {site}'s export holds no release body matching the recorded digest ({exc})"
                )
                continue
            key = node_keys.get(receipt.get("key_id", "")) if isinstance(receipt.get("key_id", ""), str) else None
            try:
                if key is None:
                    raise StoreError("unknown key")
                signature = base64.b64decode(receipt["signature"], validate=True)
                verify(key, "genogate.v1.ReleaseBody", payload, signature)
            except (GenogateError, KeyError, TypeError, ValueError, binascii.Error):
                report.problems.append(f"{where}: the receipt is not signed by {site}'s key")
                continue
            body = pb.ReleaseBody.FromString(payload)
            if isinstance(digest, str):
                result_sha = digest  # v2: payload_of checked that the rebuilt payload is the one digested
            else:
                result_sha = hashlib.sha256(body.result.SerializeToString(deterministic=True)).hexdigest()
            if (body.study_id, body.query_id, result_sha) not in released:
                report.problems.append(f"{where}: {site}'s log holds no entry releasing this result")
                continue
            matched += 1
            if releases is not None:
                releases[(row.seq, site)] = body
            if values:
                report.values.append(
                    {
                        "coordinator_entry": row.seq,
                        "query_id": body.query_id,
                        "study": body.study_id,
                        "site": body.site,
                        "epsilon_charged": body.epsilon_charged,
                        "from_store": body.from_store,
                        "result": MessageToDict(body.result, preserving_proto_field_name=True),
                    }
                )
    report.entries = matched
    return report
