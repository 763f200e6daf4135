"""A node's consent store: every consent change made while the store serves, beside the genotype store.

A participant decides: a withdrawal (or any other change of their consent codes) is recorded here by
``genogate-node consent`` (``node.consent_cli``) without the DuckDB store being written, and the serving node
applies it at its next query (``node.consent_view``). The store's own ``samples.consent`` column is what the
sample sheet said at the last ingest; a participant's **latest change here overrides it**, and ingest applies
the overrides to any sheet it loads (``apply_overrides``), so re-ingesting an old sheet never brings back a
withdrawn participant. Re-consent is itself an explicit, audited change (``consent update``).

The file is SQLite in WAL mode (``genogate.sqlitedb``), ``<store stem>.consent.sqlite`` beside the store
(``consent_path``): readers (the node, ingest) never block the one writer (a ``consent`` command), and a
command's changes commit in one transaction (all or nothing). ``changes`` is append-only (triggers refuse
updates and deletes); a participant is named by their keyed-hash pseudonym only (``node.ingest.pseudonym``),
like in the genotype store: the file holds no institution sample id.

Cheap change detection: ``ConsentStore.version`` is SQLite's ``PRAGMA data_version`` on the store's own
kept connection, which changes exactly when another connection has committed (a few microseconds).

Threading: a ``ConsentStore`` owns one connection, used under its own lock by any thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.ingest.sheet import Participant

from genogate.errors import StoreError
from genogate.sqlitedb import open_database, read_only, statements, transaction

APPLICATION_ID = 0x4747434E  # "GGCN"
SCHEMA_VERSION = 1
ACTIONS = ("withdraw", "update")

SCHEMA = """
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY,  -- 1, 2, 3, ... in the order recorded
    batch     TEXT    NOT NULL,     -- one command's changes share it (and its audit entry names it)
    at_ms     INTEGER NOT NULL,
    pseudonym TEXT    NOT NULL,     -- the participant (keyed hash of the sheet's sample id)
    action    TEXT    NOT NULL CHECK (action IN ('withdraw', 'update')),
    codes     TEXT    NOT NULL,     -- the new consent codes, ';'-joined (WITHDRAWN for a withdrawal)
    previous  TEXT    NOT NULL,     -- the codes in force before (';'-joined)
    by_whom   TEXT    NOT NULL,
    reason    TEXT    NOT NULL
) STRICT;
CREATE INDEX changes_by_pseudonym ON changes (pseudonym, seq);
CREATE TRIGGER changes_keep BEFORE DELETE ON changes BEGIN SELECT RAISE(ABORT, 'consent changes are kept'); END;
CREATE TRIGGER changes_fixed BEFORE UPDATE ON changes BEGIN SELECT RAISE(ABORT, 'a consent change never changes'); END;
"""

_LATEST = (
    "SELECT c.pseudonym, c.codes FROM changes c JOIN (SELECT pseudonym, max(seq) AS seq FROM changes "
    "GROUP BY pseudonym) m ON m.seq = c.seq ORDER BY c.pseudonym"
)

_COLUMNS = "seq, batch, at_ms, pseudonym, action, codes, previous, by_whom, reason"


def consent_path(store: Path) -> Path:
    """Where a genotype store's consent store lives: ``<stem>.consent.sqlite`` beside it."""
    store = Path(store)
    return store.with_name(f"{store.stem}.consent.sqlite")


def codes_text(codes: Sequence[str]) -> str:
    return ";".join(codes)


def codes_of(text: str) -> tuple[str, ...]:
    return tuple(c for c in text.split(";") if c)


@dataclass(frozen=True)
class Change:
    """One participant's consent change, as recorded."""

    pseudonym: str
    action: str  # withdraw or update
    codes: tuple[str, ...]
    previous: tuple[str, ...]
    by: str
    reason: str
    at_ms: int = 0
    seq: int = 0
    batch: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "batch": self.batch,
            "at_ms": self.at_ms,
            "pseudonym": self.pseudonym,
            "action": self.action,
            "codes": list(self.codes),
            "previous": list(self.previous),
            "by": self.by,
            "reason": self.reason,
        }


def _change(row: tuple[Any, ...]) -> Change:
    seq, batch, at_ms, pseudonym, action, codes, previous, by, reason = row
    return Change(str(pseudonym), str(action), codes_of(codes), codes_of(previous), str(by), str(reason),
                  int(at_ms), int(seq), str(batch))  # fmt: skip


class ConsentStore:
    """The consent store at ``path`` (created if absent); see the module docstring."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_database(
            self.path,
            what="consent store",
            application_id=APPLICATION_ID,
            schema_version=SCHEMA_VERSION,
            schema=statements(SCHEMA),
            busy_timeout_s=busy_timeout_s,
            foreign_keys=False,
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the consent store is closed")
        return self._conn

    def version(self) -> int:
        """Changes whenever another connection has committed to the file since the last call (cheap)."""
        with self._lock:
            try:
                return int(self._connection().execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot read the consent store: {exc}") from exc

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with transaction(
            self._connection, self._lock, what="consent store", doing="reading", path=self.path, immediate=False
        ) as conn:
            return conn.execute(sql, params).fetchall()

    def overrides(self) -> dict[str, tuple[str, ...]]:
        """Each changed participant's codes in force now (their latest change), by pseudonym."""
        return {str(p): codes_of(c) for p, c in self._read(_LATEST)}

    def history(self, pseudonyms: Sequence[str] | None = None) -> list[Change]:
        """Every change recorded (or those of ``pseudonyms``), oldest first."""
        rows = self._read(f"SELECT {_COLUMNS} FROM changes ORDER BY seq")
        wanted = None if pseudonyms is None else set(pseudonyms)
        return [c for c in map(_change, rows) if wanted is None or c.pseudonym in wanted]

    def latest(self) -> dict[str, Change]:
        """Each changed participant's latest change, by pseudonym."""
        return {c.pseudonym: c for c in self.history()}

    def record(self, changes: Sequence[Change], *, batch: str, at_ms: int, audit: Any = None) -> list[Change]:
        """Record ``changes`` in one transaction (all or none), returning them numbered. ``audit``, if given,
        is called with the numbered changes while the transaction is still open (and holds the write lock):
        if it raises, nothing is recorded, so no change is in force that the audit log does not hold."""
        with transaction(
            self._connection, self._lock, what="consent store", doing="recording consent changes", path=self.path
        ) as conn:
            done = []
            for c in changes:
                if c.action not in ACTIONS:
                    raise ValueError(f"unknown consent action {c.action!r}")
                cur = conn.execute(
                    "INSERT INTO changes (batch, at_ms, pseudonym, action, codes, previous, by_whom, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (batch, at_ms, c.pseudonym, c.action, codes_text(c.codes), codes_text(c.previous), c.by, c.reason),
                )
                seq = int(cur.lastrowid or 0)
                done.append(Change(c.pseudonym, c.action, c.codes, c.previous, c.by, c.reason, at_ms, seq, batch))
            if audit is not None:
                audit(done)
        return done

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ConsentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_overrides(store: Path) -> dict[str, tuple[str, ...]]:
    """The overrides of the consent store beside ``store`` (read-only; none when there is no consent store)."""
    path = consent_path(store)
    if not path.exists():
        return {}
    return {str(p): codes_of(c) for p, c in read_only(path, "consent store", _LATEST)}


def overrides_sha256(overrides: Mapping[str, tuple[str, ...]]) -> str:
    """A digest of a set of overrides (ingest folds it into the sheet's, so a new override is a change)."""
    digest = hashlib.sha256(b"genogate consent overrides v1\n")
    for pseudonym in sorted(overrides):
        digest.update(json.dumps([pseudonym, sorted(overrides[pseudonym])], separators=(",", ":")).encode() + b"\n")
    return digest.hexdigest()


def apply_overrides(store: Path, participants: Mapping[str, Participant]) -> tuple[dict[str, Participant], int]:
    """``participants`` (sheet rows by pseudonym, with a ``consent`` field) with the consent codes in force
    from the consent store beside ``store``, and how many rows that changed (ingest: an older sheet never
    undoes a recorded change)."""
    overrides = read_overrides(store)
    out, applied = dict(participants), 0
    for pseudonym, codes in overrides.items():
        row = out.get(pseudonym)
        if row is not None and tuple(sorted(row.consent)) != tuple(sorted(codes)):
            out[pseudonym] = dataclasses.replace(row, consent=codes)
            applied += 1
    return out, applied
