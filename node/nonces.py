"""The node's store of query nonces (step 11 of ``node.grants``): one SQLite file recording the nonce of every
accepted query with its payload hash and the certificate common name that first sent it, so a replay is
refused across restarts and a retry of the same signed envelope by its sender passes.

Threading: a ``NonceStore`` owns one ``sqlite3`` connection guarded by a lock held for each whole transaction
(the ledger's model); nonces that queue up while a transaction commits are recorded together in the next one,
each in its own savepoint, and share its fsync (the ledger's group commit, ``genogate.groupcommit``: each caller
returns only once the COMMIT holding its nonce has). Across processes SQLite's write lock serialises
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from genogate.errors import ConfigError, InvalidArgument, Reason, Unauthenticated
from genogate.groupcommit import GroupCommit
from genogate.sqlitedb import open_database, transaction

MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 256
_APPLICATION_ID = 0x47474E43  # "GGNC": a genogate nonce store
_SCHEMA_VERSION = 2
# caller: the certificate common name that first sent the nonce ('' for nonces recorded by version 1, which
# no caller matches: a retry of such a query, within minutes of the upgrade, is refused).
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT",
    "CREATE TABLE nonces (nonce BLOB PRIMARY KEY, payload_sha256 TEXT NOT NULL,"
    " timestamp_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL, caller TEXT NOT NULL DEFAULT '') STRICT, WITHOUT ROWID",
    "CREATE INDEX nonces_by_time ON nonces (timestamp_ms)",
    "INSERT INTO meta VALUES ('pruned_before_ms', 0)",
)
_MIGRATIONS = {1: ["ALTER TABLE nonces ADD COLUMN caller TEXT NOT NULL DEFAULT ''"]}


class NonceStore:
    """Nonces of accepted queries, in one SQLite file (WAL, ``synchronous=FULL``: a nonce is on disk before
    the query is answered, so a restart cannot reopen a replay window).

    Entries whose signed timestamp is more than ``2 * window_ms`` behind the node's clock are pruned. The
    store remembers how far it pruned and refuses (STALE_TIMESTAMP) any query stamped before that point, so
    a node clock that steps backwards can never readmit a pruned nonce.
    """

    def __init__(self, path: Path, window_ms: int, *, busy_timeout_s: float = 10.0) -> None:
        if window_ms <= 0:
            raise ConfigError("the nonce window must be positive")
        self.path = Path(path)
        self.window_ms = window_ms
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = open_database(
            self.path,
            what="nonce store",
            application_id=_APPLICATION_ID,
            schema_version=_SCHEMA_VERSION,
            schema=_SCHEMA,
            busy_timeout_s=busy_timeout_s,
            foreign_keys=False,
            migrations=_MIGRATIONS,
        )
        # Nonces recorded by concurrent queries share one transaction and its fsync (``genogate.groupcommit``).
        self._commit = GroupCommit(self.path, self._lock, lambda durable: self._conn, set(), what="nonce store")

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(
            lambda: self._conn, self._lock, what="nonce store", doing="recording a nonce", path=self.path
        )

    def check_and_record(self, nonce: bytes, payload_sha256: str, timestamp_ms: int, now_ms: int, caller: str) -> None:
        """Record a nonce and its ``caller`` (certificate common name) on first sight; accept it again only
        with the same payload hash from the same caller (a retry of the same signed envelope by whoever sent
        it); refuse it with any other payload or from any other caller (REPLAYED_NONCE)."""
        if not caller:
            raise ValueError("caller must be the certificate common name of the sender")
        if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
            raise InvalidArgument(
                f"nonce of {len(nonce)} bytes",
                message=f"the query nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes",
            )
        if len(payload_sha256) != 64:
            raise ValueError("payload_sha256 must be a hex SHA-256")

        def record(conn: sqlite3.Connection) -> None:
            pruned_before = conn.execute("SELECT value FROM meta WHERE key = 'pruned_before_ms'").fetchone()[0]
            if timestamp_ms < pruned_before:
                raise Unauthenticated(
                    f"timestamp {timestamp_ms} precedes the nonce store's horizon {pruned_before}",
                    reason=Reason.STALE_TIMESTAMP,
                    message="the query timestamp is outside the accepted window",
                )
            row = conn.execute("SELECT payload_sha256, caller FROM nonces WHERE nonce = ?", (nonce,)).fetchone()
            if row is not None:
                if row[1] != caller:
                    raise Unauthenticated(
                        f"nonce {nonce.hex()} was first sent by {row[1]!r}, now by {caller!r}",
                        reason=Reason.REPLAYED_NONCE,
                        message="the query nonce was already used",
                    )
                if row[0] != payload_sha256:
                    raise Unauthenticated(
                        f"nonce {nonce.hex()} was used for another payload",
                        reason=Reason.REPLAYED_NONCE,
                        message="the query nonce was already used",
                    )
                return  # an idempotent retry: nothing new to record
            conn.execute(
                "INSERT INTO nonces VALUES (?, ?, ?, ?, ?)", (nonce, payload_sha256, timestamp_ms, now_ms, caller)
            )
            cutoff = now_ms - 2 * self.window_ms
            if cutoff - pruned_before >= max(1, self.window_ms // 4):  # prune in batches, not every query
                conn.execute("DELETE FROM nonces WHERE timestamp_ms < ?", (cutoff,))
                conn.execute("UPDATE meta SET value = ? WHERE key = 'pruned_before_ms'", (cutoff,))

        self._commit.write(record, "recording a nonce", durable=True)

    def __len__(self) -> int:
        with self._transaction() as conn:
            return int(conn.execute("SELECT count(*) FROM nonces").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
