"""How the coordinator records a federated query run: one audit entry of bounded size, and the study's history
row, for one fsync.

The entry (``run_query_entry``, ``"format": 2``) holds who asked, the study, the request's SHA-256, the query,
and per site its outcome and, for a release, the receipt as ``genogate.receipt.digest`` makes it: the SHA-256
of the signed payload and of its result, the node's signature and key id, and the payload's small header,
never the released values. The values are held once, by the node that signed them (its ledger keeps every
result it released; ``genogate-node audit export`` prints them beside its entries), and ``genogate-coordinator
audit reconcile`` checks each of them against these digests and the signature, and shows them (``--values``).
The combined answer is recorded as ``combined_sha256`` (the SHA-256 of the deterministic ``CombinedResult``
bytes) and not kept: it is recomputed, being a deterministic function of the sites' releases (their values
from the nodes' exports, ``coordinator.combine``). A query's variant list longer than ``MAX_LISTED_VARIANTS``
is recorded as its count and SHA-256 (``query_record``: the researcher's signed envelope has the list, and
every release lists its variants too). So an entry is ~0.6 KB plus ~0.8 KB per site whatever the number of
variants (a 1,000-variant query at 3 sites: a 2.9 KB entry, ~4.2 KB of audit file with SQLite's pages, against
~0.5-0.9 MiB with the values inline; 20 KB holds up to ~24 sites).

Durability, at most one fsync per run, shared by concurrent runs: the entry is appended with a synced commit
(the audit log is the record of the run), and then, under the audit log's lock so rows follow entries in order,
the history row is committed through the state's ``synchronous=NORMAL`` connection (no fsync). Runs recorded
at the same moment share the entry's commit (``genogate.groupcommit``: the entries that queue while a commit is
syncing are linked in the order they queued, inserted in one transaction and synced once; each run gets its own
position, and its history row is written once that commit is durable, in the order of the positions). A run's
answer is returned to the researcher only after its entry is durable. If the shared commit fails, every run in
it fails with ``StoreError`` and none of their entries is written. A process crash loses neither; a machine
crash can lose history rows committed since the state's last synced commit or checkpoint, and only the latest
ones: ``recover_history`` (at start-up) re-records every format-2 run entry after the last one the history
names. (A history row that failed to commit, the run's error returned to the researcher, is restored too,
unless a later run's row committed after it: recovery starts after the last recorded entry, so that start-up
reads only the tail of the log.) Putting both in one transaction (ATTACH) would not save the second sync: in
WAL mode each attached file commits and syncs its own WAL (and the commit is atomic per file only). Measured
with strace over 50 runs one at a time: 1.08 fdatasync per recorded run, against 2.08 before (the 0.08:
checkpoints); with 8 concurrent clients the runs share their syncs (``bench/ab_relay.py --fsyncs``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from google.protobuf.json_format import MessageToDict

from coordinator.fanout import SiteResult
from coordinator.state import CoordinatorState
from genogate import receipt
from genogate.audit import AuditLog, Report, Row
from genogate.errors import GenogateError
from genogate.query import Kind
from genogate.reconcile import reconcile
from genogate.wire.v1 import common_pb2 as pb

log = logging.getLogger(__name__)

FORMAT = 2
"""The run entry's layout: 2, digests of the releases; entries without ``format`` (1) hold them inline."""

MAX_LISTED_VARIANTS = 64
"""Longest variant list an entry spells out; a longer one is recorded as its count and SHA-256."""


def query_record(query: pb.Query) -> dict[str, Any]:
    """The query as the entry records it (protobuf JSON form), a ``variants`` list longer than
    ``MAX_LISTED_VARIANTS`` as ``{"count": n, "sha256": ...}``: the SHA-256 of its variants as lines
    ``chrom:pos:ref:alt`` (each ending in a newline), in the query's order. The long list is never turned into
    JSON (protobuf's JSON conversion of 1,000 variants takes tens of milliseconds)."""
    kind = query.WhichOneof("kind")
    summaries: dict[str, dict[str, Any]] = {}
    if kind is not None:
        sub = getattr(query, kind)
        # Every kind's variant list is its repeated ``variants`` field (one variant is ``variant``).
        long = [
            n
            for n in ("variants",)
            if n in sub.DESCRIPTOR.fields_by_name and len(getattr(sub, n)) > MAX_LISTED_VARIANTS
        ]
        if long:
            copy = pb.Query()
            copy.CopyFrom(query)
            query, sub = copy, getattr(copy, kind)
            for name in long:
                listed = "".join(f"{v.chrom}:{v.pos}:{v.ref}:{v.alt}\n" for v in getattr(sub, name))
                summaries[name] = {
                    "count": len(getattr(sub, name)),
                    "sha256": hashlib.sha256(listed.encode()).hexdigest(),
                }
                sub.ClearField(name)
    out = MessageToDict(query, preserving_proto_field_name=True)
    if kind is not None and summaries:
        out.setdefault(kind, {}).update(summaries)
    return out


def run_query_entry(
    *,
    caller: str,
    researcher_key: str,
    payload: bytes,
    env: pb.QueryEnvelope,
    kind: str,
    epsilon: Decimal,
    ordered: Sequence[SiteResult],
    status: Callable[[int], str],
    combined: pb.CombinedResult | None,
) -> dict[str, Any]:
    """The audit entry of one run (see the module docstring); ``status`` labels a site's wire status."""
    return {
        "event": "run_query",
        "format": FORMAT,
        "caller": caller,
        "researcher_key": researcher_key,
        "study": env.study_id,
        "query_id": env.query_id,
        "kind": kind,
        "epsilon": str(epsilon),
        "envelope_sha256": hashlib.sha256(payload).hexdigest(),
        "query": query_record(env.query),
        "sites": [
            {
                "site": r.site,
                "status": status(r.status),
                "reason": r.reason.name,
                "attempts": r.attempts,
                **(
                    {"receipt": receipt.digest(r.release.payload, r.release.node_signature, r.release.node_key_id)}
                    if r.release is not None
                    else {}
                ),
            }
            for r in ordered
        ],
        "combined_sha256": None
        if combined is None
        else hashlib.sha256(combined.SerializeToString(deterministic=True)).hexdigest(),
    }


def _history(state: CoordinatorState, entry: Mapping[str, Any], audit_seq: int, created_ms: int | None) -> None:
    """The history row of a run entry."""
    state.record_query(
        entry["query_id"],
        entry["study"],
        Kind.parse(entry["kind"]),
        Decimal(entry["epsilon"]),
        [s["site"] for s in entry["sites"]],
        {s["site"]: s["status"] for s in entry["sites"]},
        audit_seq=audit_seq,
        created_ms=created_ms,
    )


def record_run(state: CoordinatorState, audit: AuditLog, entry: Mapping[str, Any], *, now_ms: int) -> int:
    """Append the run's entry (synced), then its history row (not synced); returns the entry's position."""
    return audit.append(entry, now_ms=now_ms, then=lambda seq: _history(state, entry, seq, None))


def recover_history(state: CoordinatorState, audit: AuditLog) -> int:
    """Re-record the history rows of format-2 run entries after the last one the history names (rows a machine
    crash lost); returns how many. An entry whose row cannot be recorded is logged and skipped."""
    import json

    restored = 0
    for row in audit.rows(after=state.last_audit_seq(), where={"event": "run_query", "format": FORMAT}):
        try:
            _history(state, json.loads(row.entry), row.seq, row.at_ms)
        except (GenogateError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
            log.error(
                "cannot restore a query's history row from the audit log", extra={"seq": row.seq, "error": str(exc)}
            )
            continue
        restored += 1
    if restored:
        log.warning("restored query history rows from the audit log", extra={"rows": restored})
    return restored


def reconcile_sites(
    entries: Sequence[Row], exports: Sequence[tuple[str, Mapping[str, Any]]], *, values: bool = False
) -> Report:
    """``genogate.reconcile.reconcile`` for each (site, node export), in one report (problems prefixed with
    the site when there are several). With ``values``, every run whose answering sites' releases all
    reconciled gets its combined answer recomputed from them (``coordinator.combine``, in the order recorded)
    and shown, saying whether it matches the recorded ``combined_sha256`` (a coordinator that combines
    differently, e.g. a later version with wider intervals, gives other bytes from the same verified releases:
    that is not a problem of the logs, which are checked release by release)."""
    import json

    from coordinator.combine import combine_results
    from genogate.kinds import combined_to_pb, result_from_pb

    report = Report()
    releases: dict[tuple[int, str], pb.ReleaseBody] = {}
    for site, export in exports:
        one = reconcile(entries, site, export, values=values, releases=releases)
        prefix = f"{site}: " if len(exports) > 1 else ""
        report.problems += [prefix + p for p in one.problems]
        report.entries += one.entries
        report.values += one.values
    if not values:
        return report
    for row in entries:
        entry = json.loads(row.entry)
        if entry.get("format") != FORMAT or entry.get("combined_sha256") is None:
            continue
        answered = [s["site"] for s in entry["sites"] if s["status"] == "answered" and "receipt" in s]
        if not answered or any((row.seq, site) not in releases for site in answered):
            continue
        try:
            combined = combine_results([result_from_pb(releases[(row.seq, site)].result) for site in answered])
        except ValueError as exc:
            report.problems.append(f"coordinator entry #{row.seq}: the releases cannot be combined ({exc})")
            continue
        wire = pb.CombinedResult() if combined is None else combined_to_pb(combined)
        digest = hashlib.sha256(wire.SerializeToString(deterministic=True)).hexdigest()
        report.values.append(
            {
                "coordinator_entry": row.seq,
                "query_id": entry.get("query_id"),
                "sites": answered,
                "combined": MessageToDict(wire, preserving_proto_field_name=True),
                "matches_recorded_digest": digest == entry["combined_sha256"],
            }
        )
    return report
