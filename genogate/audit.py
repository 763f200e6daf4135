"""The tamper-evident audit log both services keep: append-only, hash-chained, every entry signed.

An entry is a small JSON object (who asked, the study, the query, the decision, ε charged, and digests of
what was released) stored with its position and time. Released values are not in the entries: a node's entry
records the SHA-256 of the result its ledger stores (``charges.result``, shown beside the entry by ``audit
export``), and the coordinator's records each site's receipt as digests, the node's signature and the
release's small header (``genogate.receipt``), so an entry is a few kilobytes whatever the number of variants.

Entry ``n`` is chained to entry ``n - 1``::

    sha256_n = SHA-256("genogate.v1.AuditEntry" 0x00 || sha256_{n-1} || n (8 bytes) || at_ms (8 bytes) || json_n)

with 32 zero bytes before the first entry, and ``sha256_n`` is signed (Ed25519, domain-separated) by the
service's key. ``verify`` recomputes the chain and checks every signature, so an edited entry (its hash or
signature no longer matches), a removed one (a gap, and the next entry's link breaks) and a reordered one
(positions are hashed, so links break) are each found and reported with the position where the chain
breaks. What a chain cannot show by itself is a cut tail: ``verify`` reports the head (last position and
hash) for an auditor to compare with one noted earlier, and the coordinator's log, which holds the digest and
signature of each node's receipt, can be reconciled against a node's exported log, which holds the bodies
(``genogate.reconcile``).

The table lives in a SQLite file the caller owns (a node's ledger, the coordinator's audit file) and is
appended inside the caller's transaction, so an entry and the change it records commit together. Triggers
refuse updates and deletes through SQLite; deliberate edits of the file are what the chain is for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genogate.errors import GenogateError, StoreError
from genogate.groupcommit import GroupCommit
from genogate.signing import Signer, key_id, verify
from genogate.sqlitedb import read_only
from genogate.words import plural

DOMAIN = "genogate.v1.AuditEntry"
_GENESIS = bytes(32)

SCHEMA = """
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,  -- 1, 2, 3, ... without gaps
    at_ms      INTEGER NOT NULL,
    entry      TEXT    NOT NULL,     -- canonical JSON (sorted keys, no spaces)
    prev_sha256 BLOB   NOT NULL,
    sha256     BLOB    NOT NULL,
    signature  BLOB    NOT NULL,
    key_id     TEXT    NOT NULL
) STRICT;
CREATE TRIGGER audit_keep BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_fixed BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'an audit entry never changes'); END;
"""


def canonical_json(entry: Mapping[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _digest(prev: bytes, seq: int, at_ms: int, entry: str) -> bytes:
    h = hashlib.sha256()
    h.update(DOMAIN.encode() + b"\x00")
    h.update(prev)
    h.update(seq.to_bytes(8, "big", signed=True))
    h.update(at_ms.to_bytes(8, "big", signed=True))
    h.update(entry.encode())
    return h.digest()


def append(conn: sqlite3.Connection, signer: Signer, entry: Mapping[str, Any], at_ms: int) -> int:
    """Append one entry inside the caller's open transaction; returns its position."""
    return append_text(conn, signer, canonical_json(entry), at_ms)


def append_text(conn: sqlite3.Connection, signer: Signer, text: str, at_ms: int) -> int:
    """``append`` of an entry already in canonical JSON (``canonical_json``)."""
    last = conn.execute("SELECT seq, sha256 FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, _GENESIS) if last is None else (int(last[0]) + 1, bytes(last[1]))
    digest = _digest(prev, seq, at_ms, text)
    conn.execute(
        "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, at_ms, text, prev, digest, signer.sign(DOMAIN, digest), signer.key_id),
    )
    return seq


@dataclass(frozen=True)
class Row:
    seq: int
    at_ms: int
    entry: str
    prev_sha256: bytes
    sha256: bytes
    signature: bytes
    key_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at_ms": self.at_ms,
            "entry": json.loads(self.entry),
            "prev_sha256": self.prev_sha256.hex(),
            "sha256": self.sha256.hex(),
            "signature": b64(self.signature),
            "key_id": self.key_id,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Row:
        return cls(
            int(d["seq"]),
            int(d["at_ms"]),
            canonical_json(d["entry"]),
            bytes.fromhex(d["prev_sha256"]),
            bytes.fromhex(d["sha256"]),
            base64.b64decode(d["signature"]),
            str(d["key_id"]),
        )


_ROWS_SQL = "SELECT seq, at_ms, entry, prev_sha256, sha256, signature, key_id FROM audit ORDER BY rowid"


def _row(s: int, t: int, e: str, p: bytes, h: bytes, g: bytes, k: str) -> Row:
    return Row(int(s), int(t), str(e), bytes(p), bytes(h), bytes(g), str(k))


def rows(conn: sqlite3.Connection) -> list[Row]:
    """Every entry in stored order (by position)."""
    return [_row(*r) for r in conn.execute(_ROWS_SQL)]


def read_file(path: Path) -> list[Row]:
    """The entries of the audit table in a SQLite file, opened read-only (``StoreError`` if unreadable)."""
    return [_row(*r) for r in read_only(path, "audit log", _ROWS_SQL)]


@dataclass
class Report:
    entries: int = 0
    head_seq: int = 0
    head_sha256: str = ""
    problems: list[str] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    """Released values a reconciliation was asked to show (empty otherwise)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "head_sha256": self.head_sha256,
            "problems": self.problems,
            **({"values": self.values} if self.values else {}),
        }


def check(entries: Sequence[Row], public_keys: Mapping[str, bytes]) -> Report:
    """Recompute the chain and check every signature; each break is reported at the position it appears.

    ``public_keys`` maps key ids to raw Ed25519 public keys allowed to sign entries."""
    report = Report(entries=len(entries))
    prev = _GENESIS
    expected_seq = 1
    for row in entries:
        where = f"entry at position {expected_seq} (stored as #{row.seq})"
        if row.seq != expected_seq:
            report.problems.append(
                f"{where}: expected #{expected_seq}: an entry was removed or the entries were reordered"
            )
        if row.prev_sha256 != prev:
            report.problems.append(f"{where}: does not link to the entry before it (removed, reordered or edited)")
        digest = _digest(row.prev_sha256, row.seq, row.at_ms, row.entry)
        if digest != row.sha256:
            report.problems.append(f"{where}: its content does not match its hash (edited)")
        key = public_keys.get(row.key_id)
        if key is None:
            report.problems.append(f"{where}: signed by an unknown key {row.key_id}")
        else:
            try:
                verify(key, DOMAIN, row.sha256, row.signature)
            except GenogateError:
                report.problems.append(f"{where}: bad signature")
        prev, expected_seq = row.sha256, expected_seq + 1
    if entries:
        report.head_seq, report.head_sha256 = entries[-1].seq, entries[-1].sha256.hex()
    return report


def keys(*raw: bytes) -> dict[str, bytes]:
    """A ``check`` key table from raw public keys."""
    return {key_id(k): k for k in raw}


def entries_json(entries: Iterable[Row], bodies: Mapping[str, bytes] | None = None) -> list[dict[str, Any]]:
    """The entries as JSON; with ``bodies`` (result bytes by their SHA-256: a node's ledger), an entry that
    digests a result without holding it gets that result beside it as ``result`` (base64), outside ``entry``
    and so outside what the chain covers: ``reconcile`` checks it against the digest."""
    out = []
    for r in entries:
        d = r.to_json()
        sha = d["entry"].get("result_sha256") if bodies else None
        if bodies and isinstance(sha, str) and "result" not in d["entry"] and sha in bodies:
            d["result"] = b64(bodies[sha])
        out.append(d)
    return out


def run_command(
    action: str,
    entries: Sequence[Row],
    public_keys: Mapping[str, bytes],
    *,
    as_json: bool,
    bodies: Mapping[str, bytes] | None = None,
    note: str = "",
) -> int:
    """``audit verify`` / ``audit export`` of either service: prints, returns the exit code (1: broken chain).
    An export carries the ``bodies`` given (``entries_json``) and a ``note`` for its reader."""
    if action == "export":
        doc: dict[str, Any] = {"public_keys": {k: v.hex() for k, v in public_keys.items()}}
        if note:
            doc["note"] = note
        doc["entries"] = entries_json(entries, bodies)
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        return 0
    report = check(entries, public_keys)
    return print_report(
        report,
        as_json=as_json,
        ok=f"audit log intact: {plural(report.entries, 'entry')}, head #{report.head_seq} {report.head_sha256}",
        broken=f"audit log BROKEN: {plural(len(report.problems), 'problem')} in {plural(report.entries, 'entry')}",
    )


def print_report(report: Report, *, as_json: bool, ok: str, broken: str) -> int:
    """Print a check or reconciliation (one line when fine, then each problem); the exit code (1: problems)."""
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(ok if report.ok else broken)
        for problem in report.problems:
            print(f"  {problem}")
        for value in report.values:
            print(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return 0 if report.ok else 1


def add_commands(sub: Any, config_help: str) -> Any:
    """The ``audit verify`` and ``audit export`` subcommands (argparse), the same for both services; returns
    the ``audit`` subparsers for a service to add its own actions."""
    au = sub.add_parser("audit", help="verify or export the tamper-evident audit log")
    au_sub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    for action, text in (
        ("verify", "recompute the hash chain and check every signature; exit 1 and say where if broken"),
        ("export", "print every entry as JSON, with the public keys that sign them, for auditors"),
    ):
        a = au_sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        a.add_argument("--config", type=Path, required=True, help=config_help)
        a.add_argument("--json", action="store_true", help="machine-readable output (export is always JSON)")
    return au_sub


class AuditLog:
    """An audit log in a file of its own (the coordinator's). Entries appended concurrently share one
    transaction and one fsync (``genogate.groupcommit``): each caller's entry is linked to the one before it
    in the order they queued, and each caller gets its own position once the batch is durable."""

    APPLICATION_ID = 0x47474155  # "GGAU"

    def __init__(self, path: Path, signer: Signer) -> None:
        from genogate.sqlitedb import open_database, statements

        self.path = Path(path)
        self._signer = signer
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_database(
            self.path,
            what="audit log",
            application_id=self.APPLICATION_ID,
            schema_version=1,
            schema=statements(SCHEMA),
            foreign_keys=False,
        )
        self._commit = GroupCommit(
            self.path,
            self._lock,
            lambda durable: self._conn,
            set(),
            what="audit log",
            error=lambda exc: StoreError(f"{self.path}: cannot write the audit log: {exc}"),
        )

    def append(
        self, entry: Mapping[str, Any], *, now_ms: int | None = None, then: Callable[[int], object] | None = None
    ) -> int:
        """Append ``entry`` durably (its commit is synced); returns its position. ``then(position)`` runs once
        the entry is durable, still under the log's lock, so what it records is recorded in the order of the
        entries (the coordinator's query history: ``coordinator.record``). If ``then`` raises, the entry stays
        and the caller gets that error. Concurrent appends share a transaction and its fsync; if that
        transaction fails (``StoreError``), it fails for each of them and none of their entries is written.
        The entry is made canonical JSON before the log's lock is taken: only linking and signing it wait."""
        at = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        text = canonical_json(entry)
        signer = self._signer
        return self._commit.write(lambda conn: append_text(conn, signer, text, at), "appending", True, then)

    @property
    def waiting(self) -> int:
        """Appends queued for the next batch (what tests watch)."""
        return self._commit.waiting

    def rows(self, *, after: int = 0, where: Mapping[str, str | int] | None = None) -> list[Row]:
        """The entries after position ``after`` (all by default) whose top-level ``where`` keys have the values
        given (matched by SQLite: entries that do not match are never parsed here), oldest first."""
        clauses: list[str] = ["seq > ?"]
        params: list[str | int] = [after]
        for key, value in (where or {}).items():
            if not key.isidentifier():
                raise ValueError(f"not an entry key: {key!r}")
            clauses.append(f"json_extract(entry, '$.{key}') = ?")
            params.append(value)
        sql = _ROWS_SQL.replace("FROM audit", f"FROM audit WHERE {' AND '.join(clauses)}")
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self.path}: the audit log is closed")
            return [_row(*r) for r in self._conn.execute(sql, params)]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
