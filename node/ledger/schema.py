"""The ledger file's schema: tables, indexes, the triggers that make it append-only, and the migrations from
earlier schema versions (run by ``genogate.sqlitedb.open_database`` when a ledger is opened). Every row the
ledger writes goes into a table declared here; the SQL that writes them is in ``node.ledger.ledger``."""

from __future__ import annotations

from genogate import audit
from genogate.sqlitedb import statements
from node.ledger.amounts import DAY_MS

APPLICATION_ID = 0x47474C44  # "GGLD" in the SQLite header: marks a genogate ledger
SCHEMA_VERSION = 5

_RECHARGES = """
CREATE TABLE recharges (                -- a charge paid again: its result may have been lost in a machine crash
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    charge_id     INTEGER NOT NULL REFERENCES charges (charge_id),
    query_id      TEXT    NOT NULL,     -- the query id whose retry paid
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units   INTEGER NOT NULL CHECK (delta_units >= 0),
    charged_ms    INTEGER NOT NULL
) STRICT;
CREATE TRIGGER recharges_keep BEFORE DELETE ON recharges
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER recharges_fixed BEFORE UPDATE ON recharges
    BEGIN SELECT RAISE(ABORT, 'a charge never changes'); END;
"""

_CHARGES = """
CREATE TABLE charges (
    charge_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id         TEXT    NOT NULL,
    canonical_sha256 TEXT    NOT NULL,
    query_id         TEXT    NOT NULL,  -- the query id that made (and paid for) the charge
    epsilon_units    INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units      INTEGER NOT NULL CHECK (delta_units >= 0),
    charged_ms       INTEGER NOT NULL,
    result           BLOB,              -- NULL until the first complete()
    completed_ms     INTEGER,
    researcher       TEXT    NOT NULL,  -- who paid: key fingerprint or 'cn:<name>'; '' before v4
    epoch            INTEGER NOT NULL CHECK (epoch >= 0),  -- consent epoch; 0 before v4
    UNIQUE (study_id, canonical_sha256, epoch)
) STRICT;
"""
_CHARGE_TRIGGERS = """
CREATE TRIGGER charges_keep BEFORE DELETE ON charges
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER charges_fixed BEFORE UPDATE OF
    charge_id, study_id, canonical_sha256, query_id, epsilon_units, delta_units, charged_ms, researcher, epoch
    ON charges BEGIN SELECT RAISE(ABORT, 'a charge never changes'); END;
CREATE TRIGGER charges_result_once BEFORE UPDATE OF result, completed_ms ON charges
    WHEN OLD.result IS NOT NULL BEGIN SELECT RAISE(ABORT, 'a stored result is never replaced'); END;
"""
_NODE_WIDE = """
CREATE TABLE researcher_days (          -- ε charged per researcher per UTC day, kept in the charging transaction
    researcher    TEXT    NOT NULL,
    day           INTEGER NOT NULL,     -- charged_ms // 86400000
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    PRIMARY KEY (researcher, day)
) STRICT, WITHOUT ROWID;
CREATE TABLE node_days (                -- ε charged at this node per UTC day, everyone together
    day           INTEGER PRIMARY KEY,
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0)
) STRICT;
CREATE TABLE epochs (                   -- consent epochs: one per uninterrupted span of one cohort
    epoch         INTEGER PRIMARY KEY CHECK (epoch >= 1),
    cohort_sha256 TEXT    NOT NULL,
    first_seen_ms INTEGER NOT NULL
) STRICT;
CREATE TRIGGER researcher_days_keep BEFORE DELETE ON researcher_days
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER researcher_days_grow BEFORE UPDATE ON researcher_days
    WHEN NEW.researcher IS NOT OLD.researcher OR NEW.day IS NOT OLD.day OR NEW.epsilon_units < OLD.epsilon_units
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
CREATE TRIGGER node_days_keep BEFORE DELETE ON node_days
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER node_days_grow BEFORE UPDATE ON node_days
    WHEN NEW.day IS NOT OLD.day OR NEW.epsilon_units < OLD.epsilon_units
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
CREATE TRIGGER epochs_keep BEFORE DELETE ON epochs
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER epochs_fixed BEFORE UPDATE ON epochs
    BEGIN SELECT RAISE(ABORT, 'an epoch never changes'); END;
"""
# The nonces of accepted signed queries (``node.nonces``), recorded in the transaction that charges (or refuses)
# the query: not part of the budget record, so pruned (DELETE) once older than two timestamp windows; the
# horizon they were pruned to is the meta key 'nonce_horizon_ms'.
_NONCES = """
CREATE TABLE nonces (
    nonce          BLOB    PRIMARY KEY,
    payload_sha256 TEXT    NOT NULL,
    timestamp_ms   INTEGER NOT NULL,    -- the signed envelope's timestamp
    seen_ms        INTEGER NOT NULL,
    caller         TEXT    NOT NULL     -- certificate common name that first sent it
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_by_time ON nonces (timestamp_ms);
"""
_CHARGE_COLUMNS = (
    "charge_id, study_id, canonical_sha256, query_id, epsilon_units, delta_units, charged_ms, result, completed_ms"
)
# Every ε paid (charges and recharges) with who paid it and when: what the per-day totals must sum to.
PAID = (
    "SELECT c.researcher AS researcher, c.charged_ms AS charged_ms, c.epsilon_units AS epsilon_units FROM charges c"
    " UNION ALL SELECT r.researcher, r.charged_ms, r.epsilon_units FROM recharges r"
)

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
{CHARGES}
CREATE TABLE queries (                  -- every query id seen: the charging one and zero-cost replays
    study_id       TEXT    NOT NULL,
    query_id       TEXT    NOT NULL,
    payload_sha256 TEXT    NOT NULL,
    charge_id      INTEGER NOT NULL REFERENCES charges (charge_id),
    received_ms    INTEGER NOT NULL,
    caller         TEXT    NOT NULL DEFAULT '',  -- certificate common name that first sent it ('' before v4)
    PRIMARY KEY (study_id, query_id)
) STRICT;
CREATE TABLE spent (                    -- running totals per study, kept in the charging transaction
    study_id      TEXT    PRIMARY KEY,
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units >= 0),
    delta_units   INTEGER NOT NULL CHECK (delta_units >= 0),
    answered      INTEGER NOT NULL DEFAULT 0 CHECK (answered >= 0)  -- query ids with a stored result
) STRICT;
CREATE INDEX queries_by_charge ON queries (charge_id);
{RECHARGES}
ALTER TABLE recharges ADD COLUMN researcher TEXT NOT NULL DEFAULT '';
{NODE_WIDE}
{AUDIT}
{NONCES}
{CHARGE_TRIGGERS}
CREATE TRIGGER queries_keep BEFORE DELETE ON queries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER queries_fixed BEFORE UPDATE ON queries
    BEGIN SELECT RAISE(ABORT, 'a recorded query never changes'); END;
CREATE TRIGGER spent_keep BEFORE DELETE ON spent
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER spent_grows BEFORE UPDATE ON spent
    WHEN NEW.study_id IS NOT OLD.study_id OR NEW.epsilon_units < OLD.epsilon_units
      OR NEW.delta_units < OLD.delta_units OR NEW.answered < OLD.answered
    BEGIN SELECT RAISE(ABORT, 'spent budget never decreases'); END;
"""
for _name, _text in (
    ("{AUDIT}", audit.SCHEMA),
    ("{RECHARGES}", _RECHARGES),
    ("{CHARGES}", _CHARGES),
    ("{CHARGE_TRIGGERS}", _CHARGE_TRIGGERS),
    ("{NODE_WIDE}", _NODE_WIDE),
    ("{NONCES}", _NONCES),
):
    SCHEMA = SCHEMA.replace(_name, _text.strip())

# Version 1 counted answered query ids with a join on every budget read and had no audit log; version 2
# synced every result and had no recharges.
MIGRATIONS = {
    1: [
        "ALTER TABLE spent ADD COLUMN answered INTEGER NOT NULL DEFAULT 0 CHECK (answered >= 0)",
        "CREATE INDEX queries_by_charge ON queries (charge_id)",
        "DROP TRIGGER spent_grows",
        *[t for t in statements(SCHEMA) if t.startswith("CREATE TRIGGER spent_grows")],
        "UPDATE spent SET answered = (SELECT count(*) FROM queries q JOIN charges c ON c.charge_id = q.charge_id"
        " WHERE q.study_id = spent.study_id AND c.result IS NOT NULL)",
        *statements(audit.SCHEMA),
    ],
    2: list(statements(_RECHARGES)),
    # Version 3 had one charge per (study, canonical query) whatever the consent epoch, no researcher, caller
    # or node-wide totals. The charges table is rebuilt for its new unique key (foreign keys checked at
    # COMMIT); old charges keep their ids, belong to epoch 0 and to researcher '' (the node cap only).
    3: [
        "PRAGMA defer_foreign_keys = ON",
        "CREATE TEMP TABLE charges_v3 AS SELECT * FROM charges",
        "DROP TABLE charges",
        *statements(_CHARGES),
        f"INSERT INTO charges ({_CHARGE_COLUMNS}, researcher, epoch) SELECT {_CHARGE_COLUMNS}, '', 0 FROM charges_v3",
        "DROP TABLE charges_v3",
        *statements(_CHARGE_TRIGGERS),
        "ALTER TABLE queries ADD COLUMN caller TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE recharges ADD COLUMN researcher TEXT NOT NULL DEFAULT ''",
        *statements(_NODE_WIDE),
        f"INSERT INTO researcher_days SELECT researcher, charged_ms / {DAY_MS}, sum(epsilon_units) FROM ({PAID})"
        " GROUP BY 1, 2",
        f"INSERT INTO node_days SELECT charged_ms / {DAY_MS}, sum(epsilon_units) FROM ({PAID}) GROUP BY 1",
    ],
    # Version 4 kept no nonces: the node kept them in a separate file, synced on its own (``[grants]
    # nonce_store``, imported by ``node.nonces.NonceStore`` when present).
    4: list(statements(_NONCES)),
}
