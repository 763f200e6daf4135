"""The coordinator state file's schema (``coordinator.state.sqlite``): the registry (nodes, researchers,
committee), studies with their signed proposals and grants, reviews, revocations and the revocation epoch,
and query history; the triggers that keep reviews, revocations and history append-only, proposals and
grants write-once, the epoch growing, and study states to the lifecycle's transitions.
"""

APPLICATION_ID = 0x4747434F  # "GGCO" in the SQLite header: marks a genogate coordinator state file
SCHEMA_VERSION = 3

# nodes: the pin is cert_sha256 or ca_sha256 (exactly one non-empty); version counts the registration's changes.
# A removed node's row is deleted (its registration, changes and removal are in the audit log).
SCHEMA = """
CREATE TABLE nodes (name TEXT PRIMARY KEY, endpoint TEXT NOT NULL, cert_sha256 TEXT NOT NULL,
    genome_build TEXT NOT NULL, registered_ms INTEGER NOT NULL, ca_sha256 TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 1, updated_ms INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE researchers (key_fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, affiliation TEXT NOT NULL,
    public_key BLOB NOT NULL CHECK (length(public_key) = 32), registered_ms INTEGER NOT NULL) STRICT;
CREATE TABLE committee (key_id TEXT PRIMARY KEY, name TEXT NOT NULL,
    public_key BLOB NOT NULL CHECK (length(public_key) = 32), added_ms INTEGER NOT NULL) STRICT;
CREATE TABLE studies (
    study_id TEXT PRIMARY KEY,
    proposal BLOB NOT NULL,                -- SignedProposal.payload, exactly as signed
    researcher_signature BLOB NOT NULL,
    proposal_sha256 BLOB NOT NULL UNIQUE,
    researcher_key_fingerprint TEXT NOT NULL REFERENCES researchers (key_fingerprint),
    state TEXT NOT NULL CHECK (state IN ('PROPOSED', 'APPROVED', 'REJECTED', 'REVOKED', 'EXPIRED')),
    approvals_required INTEGER NOT NULL CHECK (approvals_required >= 1),
    grant_payload BLOB, grant_signature BLOB, grant_key_id TEXT, not_after_ms INTEGER,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    CHECK (state IN ('PROPOSED', 'REJECTED') OR grant_payload IS NOT NULL)
) STRICT;
CREATE INDEX studies_expiry ON studies (state, not_after_ms);
CREATE TABLE reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id TEXT NOT NULL REFERENCES studies (study_id),
    reviewer_key_id TEXT NOT NULL REFERENCES committee (key_id),
    decision INTEGER NOT NULL CHECK (decision IN (1, 2, 3)),
    payload BLOB NOT NULL, signature BLOB NOT NULL, received_ms INTEGER NOT NULL,
    UNIQUE (study_id, reviewer_key_id, decision)
) STRICT;
CREATE UNIQUE INDEX reviews_one_vote ON reviews (study_id, reviewer_key_id) WHERE decision IN (1, 2);
CREATE TABLE revocations (study_id TEXT PRIMARY KEY REFERENCES studies (study_id),
    epoch INTEGER NOT NULL UNIQUE, revoked_ms INTEGER NOT NULL) STRICT;
CREATE TABLE epoch (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL) STRICT;
INSERT INTO epoch VALUES (1, 0);
CREATE TABLE queries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, query_id TEXT NOT NULL,
    study_id TEXT NOT NULL REFERENCES studies (study_id), kind INTEGER NOT NULL,
    epsilon TEXT NOT NULL, sites TEXT NOT NULL, outcomes TEXT NOT NULL, created_ms INTEGER NOT NULL,
    audit_seq INTEGER NOT NULL DEFAULT 0  -- the run's entry in the audit log (0: recorded before v3)
) STRICT;
CREATE INDEX queries_study ON queries (study_id, seq);
CREATE INDEX queries_audit ON queries (audit_seq);
CREATE TRIGGER epoch_keep BEFORE DELETE ON epoch BEGIN SELECT RAISE(ABORT, 'the epoch is kept'); END;
CREATE TRIGGER epoch_grows BEFORE UPDATE ON epoch WHEN NEW.id IS NOT OLD.id OR NEW.value < OLD.value
    BEGIN SELECT RAISE(ABORT, 'the revocation epoch never decreases'); END;
CREATE TRIGGER studies_keep BEFORE DELETE ON studies BEGIN SELECT RAISE(ABORT, 'studies are kept'); END;
CREATE TRIGGER studies_fixed BEFORE UPDATE OF study_id, proposal, researcher_signature, proposal_sha256,
    researcher_key_fingerprint, approvals_required, created_ms ON studies
    BEGIN SELECT RAISE(ABORT, 'a proposal never changes'); END;
CREATE TRIGGER studies_grant_once BEFORE UPDATE OF grant_payload, grant_signature, grant_key_id, not_after_ms
    ON studies WHEN OLD.grant_payload IS NOT NULL BEGIN SELECT RAISE(ABORT, 'a grant never changes'); END;
CREATE TRIGGER studies_transition BEFORE UPDATE OF state ON studies WHEN NOT (NEW.state = OLD.state
    OR (OLD.state = 'PROPOSED' AND NEW.state IN ('APPROVED', 'REJECTED'))
    OR (OLD.state = 'APPROVED' AND NEW.state IN ('REVOKED', 'EXPIRED')))
    BEGIN SELECT RAISE(ABORT, 'illegal study state transition'); END;
""" + "".join(
    f"CREATE TRIGGER {t}_keep BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, '{t}: append-only'); END;\n"
    f"CREATE TRIGGER {t}_fixed BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, '{t}: append-only'); END;\n"
    for t in ("reviews", "revocations", "queries")
)

MIGRATIONS = {
    # 1 -> 2: node registrations gain a CA pin, a version and the time of their last change (issue 15).
    1: [
        "ALTER TABLE nodes ADD COLUMN ca_sha256 TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE nodes ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE nodes ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0",
        "UPDATE nodes SET updated_ms = registered_ms",
    ],
    # 2 -> 3: each query run names its audit entry, so runs whose history row a crash lost can be restored
    # from the audit log (the history row is committed without an fsync; the audit entry with one).
    2: [
        "ALTER TABLE queries ADD COLUMN audit_seq INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX queries_audit ON queries (audit_seq)",
    ],
}
