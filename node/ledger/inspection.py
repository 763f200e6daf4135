"""Read-only inspection of a ledger, for operators and audits: a study's history, the invariant check, and the
spent totals and the released results read from a file the serving node may hold open (``status``, ``audit
export``). Nothing here writes; the
``Ledger`` runs the first two in its own read transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from genogate.sqlitedb import read_only
from node.ledger.amounts import DAY_MS, amount
from node.ledger.outcomes import LedgerEntry, StudySpent
from node.ledger.schema import PAID


def history(conn: sqlite3.Connection, study_id: str) -> list[LedgerEntry]:
    """Every query id recorded under the study, in the order received (for operators and audits)."""
    rows = conn.execute(
        "SELECT q.query_id, q.payload_sha256, c.canonical_sha256, c.charge_id, c.query_id,"
        " c.epsilon_units, c.delta_units, q.received_ms, c.result IS NOT NULL, c.researcher, c.epoch, q.caller"
        " FROM queries q JOIN charges c ON c.charge_id = q.charge_id"
        " WHERE q.study_id = ? ORDER BY q.rowid",
        (study_id,),
    ).fetchall()
    return [
        LedgerEntry(
            query_id=qid,
            payload_sha256=payload,
            canonical_sha256=canon,
            charge_id=cid,
            original_query_id=orig,
            epsilon_charged=amount(eps if orig == qid else 0),
            delta_charged=amount(dlt if orig == qid else 0),
            received_ms=ms,
            answered=bool(done),
            researcher=who,
            epoch=epoch,
            caller=caller,
        )
        for qid, payload, canon, cid, orig, eps, dlt, ms, done, who, epoch, caller in rows
    ]


def problems(conn: sqlite3.Connection) -> list[str]:
    """What is wrong with the file (SQLite integrity check) and the ledger's invariants, read on ``conn`` in the
    caller's read transaction: an empty list if nothing (``Ledger.check`` raises ``StoreError`` with them).

    Invariants: each study's running total equals the sum of its charges; every query row belongs to
    a charge of its own study; every charge is recorded as a query of its own query id; each study's
    answered count equals its query ids whose charge has a stored result; each researcher's and the
    node's per-day totals equal the sums of their charges and recharges of that day; every charge
    belongs to epoch 0 (before version 4) or a registered epoch, and epochs are numbered 1, 2, ... with
    no gap."""
    problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
    problems += [
        f"study {s!r}: total ({e}, {d}) != sum of charges and recharges ({se}, {sd})"
        for s, e, d, se, sd in conn.execute(
            "WITH paid AS (SELECT study_id, epsilon_units, delta_units FROM charges UNION ALL"
            " SELECT c.study_id, r.epsilon_units, r.delta_units FROM recharges r"
            " JOIN charges c ON c.charge_id = r.charge_id),"
            " sums AS (SELECT study_id, sum(epsilon_units) AS e, sum(delta_units) AS d"
            " FROM paid GROUP BY study_id),"
            " ids AS (SELECT study_id FROM sums UNION SELECT study_id FROM spent)"
            " SELECT ids.study_id, s.epsilon_units, s.delta_units, sums.e, sums.d FROM ids"
            " LEFT JOIN spent s USING (study_id) LEFT JOIN sums USING (study_id)"
            " WHERE s.epsilon_units IS NOT sums.e OR s.delta_units IS NOT sums.d"
        )
    ]
    problems += [
        f"query {q!r} of study {s!r} is linked to charge {c} of another study"
        for s, q, c in conn.execute(
            "SELECT q.study_id, q.query_id, q.charge_id FROM queries q"
            " JOIN charges c ON c.charge_id = q.charge_id WHERE c.study_id != q.study_id"
        )
    ]
    problems += [
        f"charge {c} has no query row for its own query id"
        for (c,) in conn.execute(
            "SELECT charge_id FROM charges c WHERE NOT EXISTS (SELECT 1 FROM queries q"
            " WHERE q.study_id = c.study_id AND q.query_id = c.query_id AND q.charge_id = c.charge_id)"
        )
    ]
    problems += [
        f"study {s!r}: answered count {a} != {n} query ids with a stored result"
        for s, a, n in conn.execute(
            "SELECT s.study_id, s.answered, (SELECT count(*) FROM queries q JOIN charges c"
            " ON c.charge_id = q.charge_id WHERE q.study_id = s.study_id AND c.result IS NOT NULL) AS n"
            " FROM spent s WHERE s.answered != n"
        )
    ]
    problems += [
        f"researcher {r!r} day {d}: total {t} != {p} charged"
        for r, d, t, p in conn.execute(
            f"WITH paid AS (SELECT researcher, charged_ms / {DAY_MS} AS day, sum(epsilon_units) AS e"
            f" FROM ({PAID}) GROUP BY 1, 2), keys AS (SELECT researcher, day FROM paid UNION"
            " SELECT researcher, day FROM researcher_days)"
            " SELECT k.researcher, k.day, r.epsilon_units, p.e FROM keys k"
            " LEFT JOIN researcher_days r USING (researcher, day) LEFT JOIN paid p USING (researcher, day)"
            " WHERE r.epsilon_units IS NOT p.e"
        )
    ]
    problems += [
        f"node day {d}: total {t} != {p} charged"
        for d, t, p in conn.execute(
            f"WITH paid AS (SELECT charged_ms / {DAY_MS} AS day, sum(epsilon_units) AS e FROM ({PAID})"
            " GROUP BY 1), keys AS (SELECT day FROM paid UNION SELECT day FROM node_days)"
            " SELECT k.day, n.epsilon_units, p.e FROM keys k LEFT JOIN node_days n USING (day)"
            " LEFT JOIN paid p USING (day) WHERE n.epsilon_units IS NOT p.e"
        )
    ]
    problems += [
        f"charge {c} belongs to epoch {e}, which was never registered"
        for c, e in conn.execute(
            "SELECT charge_id, epoch FROM charges WHERE epoch != 0"
            " AND NOT EXISTS (SELECT 1 FROM epochs WHERE epochs.epoch = charges.epoch)"
        )
    ]
    n_epochs, last = conn.execute("SELECT count(*), coalesce(max(epoch), 0) FROM epochs").fetchone()
    if n_epochs != last:
        problems.append(f"epochs are not numbered 1..{n_epochs} (the last is {last})")
    return problems


def read_spent(path: Path) -> list[StudySpent]:
    """Every study's spent totals, read from a ledger file opened read-only (for ``status``; the serving
    node may hold it open). ``StoreError`` names the file if it is missing or unreadable."""
    rows = read_only(
        path,
        "ledger",
        "SELECT study_id, epsilon_units, delta_units, answered FROM spent ORDER BY study_id",
        missing="the node creates it when it first serves",
    )
    return [StudySpent(s, amount(e), amount(d), int(n)) for s, e, d, n in rows]


def read_results(path: Path) -> dict[str, bytes]:
    """Every released result the ledger file stores, by its SHA-256 (what its audit entries record as
    ``result_sha256``): the bodies ``genogate-node audit export`` prints beside the entries. Read-only."""
    import hashlib

    rows = read_only(path, "ledger", "SELECT result FROM charges WHERE result IS NOT NULL")
    return {hashlib.sha256(r).hexdigest(): bytes(r) for (r,) in rows}
