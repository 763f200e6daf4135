"""The node's query nonces (step 11 of ``node.grants``), kept in the ledger file (table ``nonces``, schema in
``node.ledger.schema``): the nonce of every accepted query with its payload hash and the certificate common
name that first sent it, so a replay is refused across restarts and a retry of the same signed envelope by
its sender passes.

One synced commit per query: ``NonceStore.check`` decides the nonce (a read, no write) where ``node.grants``
checks it, and returns a ``NonceClaim``; the service hands the claim to the ledger, which records the nonce
in the same transaction as the query's charge (``Ledger.begin``) or, for a query refused after the check,
as its refusal's audit entry (``Ledger.record``). Nothing is weakened by this:

- a nonce is on disk before any answer to its query leaves the node: the charge that pays for the answer
  commits with it, synced (``synchronous=FULL``), and the answer is computed only after that commit; the
  retry of a stored answer needs no new nonce (it carries the same one, already recorded);
- after a power failure either both the charge and its nonce are on disk, or neither is, and then nothing
  was answered (a replay is then the first sending);
- two sendings of one nonce that both pass ``check`` before either commits meet in the ledger's write
  transaction, which checks the nonce again under SQLite's write lock: one is recorded, the other refused
  (REPLAYED_NONCE, or joined as a retry when it is the same payload from the same caller), before the
  store is touched.

Refusals keep their order: ``check`` refuses a replay at step 11, before the rate windows, the caps and the
charge. The two checks the gate makes after the verifier (``OpenedEnvelope.check_ids`` and the node's purpose
rule, ``node.policy.Gate.authorise``) refuse without recording the nonce: both are decided from the signed
bytes and the node's configuration alone, so the same bytes are refused the same way again, from anyone.

``NonceStore.check_and_record`` checks and records at once (its own synced commit on the ledger): for callers
that verify a query without charging one.

``[grants] nonce_store`` (before ledger schema version 5 the nonces were in that separate file, synced on its own) is
an import source only: if the file exists when the node starts, its nonces not yet pruned are copied into the
ledger (idempotent; the file is left as it is and may be deleted).

Threading: ``check`` reads on a connection of its own (guarded by a lock), so a check never waits for the
ledger's group commit to sync; writes go through the ledger's group commit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from genogate.errors import ConfigError, InvalidArgument, Reason, StoreError, Unauthenticated
from genogate.sqlitedb import reopen
from node.ledger import Ledger

log = logging.getLogger("genogate.node")

MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 256
LEGACY_APPLICATION_ID = 0x47474E43  # "GGNC": the separate nonce store used before ledger schema 5
_HORIZON = "nonce_horizon_ms"  # the ledger's meta key: nonces stamped before it were pruned, and are refused


def _horizon(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_HORIZON,)).fetchone()
    return 0 if row is None else int(row[0])


@dataclass(frozen=True, slots=True)
class NonceClaim:
    """A nonce that passed ``NonceStore.check``, to be recorded in the ledger transaction that decides its
    query (``Ledger.begin``: ``record``; ``Ledger.record``, a refusal: ``keep``)."""

    nonce: bytes
    payload_sha256: str
    timestamp_ms: int
    now_ms: int
    caller: str
    window_ms: int

    def decide(self, conn: sqlite3.Connection) -> bool:
        """Whether the nonce is new; an idempotent retry (same payload, same caller) is not; anything else
        raises: stamped before the horizon (STALE_TIMESTAMP), or used for another payload or by another
        caller (REPLAYED_NONCE)."""
        horizon = _horizon(conn)
        if self.timestamp_ms < horizon:
            raise Unauthenticated(
                f"timestamp {self.timestamp_ms} precedes the nonce horizon {horizon}",
                reason=Reason.STALE_TIMESTAMP,
                message="the query timestamp is outside the accepted window",
            )
        row = conn.execute("SELECT payload_sha256, caller FROM nonces WHERE nonce = ?", (self.nonce,)).fetchone()
        if row is None:
            return True
        if row[1] != self.caller:
            raise Unauthenticated(
                f"nonce {self.nonce.hex()} was first sent by {row[1]!r}, now by {self.caller!r}",
                reason=Reason.REPLAYED_NONCE,
                message="the query nonce was already used",
            )
        if row[0] != self.payload_sha256:
            raise Unauthenticated(
                f"nonce {self.nonce.hex()} was used for another payload",
                reason=Reason.REPLAYED_NONCE,
                message="the query nonce was already used",
            )
        return False

    def record(self, conn: sqlite3.Connection) -> None:
        """Check again (under the write lock) and record the nonce; prune, in batches, nonces stamped more
        than two windows before the node's clock, moving the horizon up to there."""
        if self.decide(conn):
            self._insert(conn, "INSERT")

    def keep(self, conn: sqlite3.Connection) -> None:
        """Record the nonce of a refused query unless the nonce is already known (never raises a refusal:
        the query is refused already)."""
        self._insert(conn, "INSERT OR IGNORE")

    def _insert(self, conn: sqlite3.Connection, verb: str) -> None:
        conn.execute(
            f"{verb} INTO nonces VALUES (?, ?, ?, ?, ?)",
            (self.nonce, self.payload_sha256, self.timestamp_ms, self.now_ms, self.caller),
        )
        cutoff, horizon = self.now_ms - 2 * self.window_ms, _horizon(conn)
        if cutoff - horizon >= max(1, self.window_ms // 4):  # prune in batches, not every query
            conn.execute("DELETE FROM nonces WHERE timestamp_ms < ?", (cutoff,))
            _set_horizon(conn, cutoff)


def _set_horizon(conn: sqlite3.Connection, horizon: int) -> None:
    conn.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        " WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER)",
        (_HORIZON, str(horizon)),
    )


class NonceStore:
    """The nonces of accepted queries, in the ledger's file (see the module docstring).

    Entries whose signed timestamp is more than ``2 * window_ms`` behind the node's clock are pruned. The
    store remembers how far it pruned and refuses (STALE_TIMESTAMP) any query stamped before that point, so
    a node clock that steps backwards can never readmit a pruned nonce.
    """

    def __init__(self, ledger: Ledger, window_ms: int, *, legacy: Path | None = None) -> None:
        """Nonces in ``ledger``'s file; ``legacy``: a separate nonce store of earlier versions to import."""
        if window_ms <= 0:
            raise ConfigError("the nonce window must be positive")
        self.window_ms = window_ms
        self._ledger = ledger
        self._lock = threading.Lock()
        if legacy is not None and Path(legacy).exists():
            self._import(Path(legacy))
        self._conn: sqlite3.Connection | None = reopen(
            ledger.path, what="ledger", synchronous="NORMAL", foreign_keys=False
        )

    def check(self, nonce: bytes, payload_sha256: str, timestamp_ms: int, now_ms: int, caller: str) -> NonceClaim:
        """Decide a nonce without recording it: refuse a nonce used for another payload or by another caller
        (REPLAYED_NONCE) or stamped before the horizon (STALE_TIMESTAMP); accept a new one, or the same
        payload from the same caller (a retry of the same signed envelope by whoever sent it)."""
        if not caller:
            raise ValueError("caller must be the certificate common name of the sender")
        if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
            raise InvalidArgument(
                f"nonce of {len(nonce)} bytes",
                message=f"the query nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes",
            )
        if len(payload_sha256) != 64:
            raise ValueError("payload_sha256 must be a hex SHA-256")
        claim = NonceClaim(nonce, payload_sha256, timestamp_ms, now_ms, caller, self.window_ms)
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self._ledger.path}: the nonce store is closed")
            try:
                claim.decide(self._conn)  # one read snapshot: SQLite's implicit transaction per statement
            except sqlite3.Error as exc:
                raise StoreError(f"{self._ledger.path}: cannot read the nonces: {exc}") from exc
        return claim

    def check_and_record(self, nonce: bytes, payload_sha256: str, timestamp_ms: int, now_ms: int, caller: str) -> None:
        """``check``, then record the nonce in a synced commit of its own (a query verified outside a charge)."""
        claim = self.check(nonce, payload_sha256, timestamp_ms, now_ms, caller)
        self._ledger.write(claim.record, "recording a nonce")

    def _import(self, path: Path) -> None:
        """Copy the nonces of a separate nonce store of earlier versions (read only) into the ledger: those
        stamped at or after both stores' horizons, and the later horizon. Idempotent."""
        try:
            conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the nonce store to import: {exc}") from None
        try:
            app_id, version = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version"))
            if app_id != LEGACY_APPLICATION_ID or version not in (1, 2):
                raise StoreError(f"{path}: not a genogate nonce store of version 1 or 2; nothing imported")
            row = conn.execute("SELECT value FROM meta WHERE key = 'pruned_before_ms'").fetchone()
            if row is None:
                raise StoreError(
                    f"{path}: the nonce store has no pruning horizon (meta pruned_before_ms); nothing imported"
                )
            horizon = int(row[0])
            caller = "caller" if version == 2 else "''"  # version 1 recorded no caller: '' matches none
            rows = conn.execute(
                f"SELECT nonce, payload_sha256, timestamp_ms, seen_ms, {caller} FROM nonces WHERE timestamp_ms >= ?",
                (horizon,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the nonce store to import: {exc}") from None
        finally:
            conn.close()

        def op(db: sqlite3.Connection) -> int:
            _set_horizon(db, horizon)
            floor = _horizon(db)
            return sum(
                db.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?, ?, ?, ?)", row).rowcount
                for row in rows
                if row[2] >= floor
            )

        added = self._ledger.write(op, "importing nonces")
        log.warning(
            "imported the nonces of the separate nonce store into the ledger; [grants] nonce_store is deprecated"
            " and the file may be deleted",
            extra={"file": str(path), "imported": added},
        )

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"{self._ledger.path}: the nonce store is closed")
            return int(self._conn.execute("SELECT count(*) FROM nonces").fetchone()[0])

    def close(self) -> None:
        """Close the read connection (the ledger is its owner's to close)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
