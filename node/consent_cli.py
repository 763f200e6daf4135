"""``genogate-node consent``: record a participant's consent change while the node serves.

``withdraw`` (one or more ``--sample``), ``update`` (the consent column of a sample sheet, or ``--sample`` with
``--codes``: re-consent is an update like any other), ``show`` (one participant: codes in force, the sheet's,
history) and ``list`` (the changes in force, or ``--history``). Every command works while the node serves: it
reads the genotype store read-only (the sample ids must be in it: the pseudonyms are checked against the
store's participants) and writes only the consent store (``node.consent``) and the node's audit log.

Who and when: every change records the operator (``--by``, default the OS user), the time and an optional
reason or reference. The command appends one entry per command to the node's tamper-evident audit log (in
its ledger file, ``genogate.audit``) itself, signed with the node's identity key, *inside* the consent store's
write transaction: SQLite's write lock serialises it with the serving node's own appends (the chain is
extended from the last entry inside the transaction, so a second writer process keeps it intact; the ledger's
``busy_timeout`` waits for the node's commit), and if the append fails the change is rolled back, so no change
is in force that the log does not hold. (A crash between the two commits could leave an entry for a change
that is not in force; the consent store's history is then the truth, and the entry names its batch.) The
serving node adds a ``consent_epoch`` entry when it applies the change (``node.consent_view``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import secrets
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genogate import audit, duo
from genogate.cliutil import print_json
from genogate.errors import IngestError, StoreError, UsageError
from genogate.signing import Signer
from genogate.sqlitedb import reopen, transaction
from genogate.words import plural
from node import sheet_options
from node.consent import Change, ConsentStore, consent_path

if TYPE_CHECKING:
    from node.config import NodeConfig
    from node.ingest.sheet_columns import SheetColumns

CONFIG_HELP = "the node's TOML config (its store, pseudonymisation key, ledger and identity key)"


def add_commands(sub: Any) -> None:
    """The ``consent`` command group (argparse)."""
    co = sub.add_parser(
        "consent",
        help="record consent changes (withdraw, update) while the node serves; show them",
        description="Record a participant's consent change in the node's consent store; the serving node applies "
        "it at its next query (a new consent epoch), and a later ingest of an older sheet cannot undo it. Every "
        "change is audited with who and when.",
    )
    co_sub = co.add_subparsers(dest="consent_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser, *, writes: bool) -> None:
        p.add_argument("--config", type=Path, required=True, help=CONFIG_HELP)
        if writes:
            p.add_argument("--by", default="", metavar="NAME", help="who records the change (default: the OS user)")
            p.add_argument("--reason", default="", metavar="TEXT", help="why, or a reference (ticket, form number)")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    wd = co_sub.add_parser(
        "withdraw",
        help="withdraw participants' consent (they stop counting at the node's next query)",
        description="Withdraw the consent of the participants named by their sample sheet ids. All or nothing: "
        "an id the store does not hold refuses the whole command.",
    )
    wd.add_argument(
        "--sample", action="append", required=True, metavar="ID", help="a sample id of the sample sheet; repeat"
    )
    common(wd, writes=True)
    up = co_sub.add_parser(
        "update",
        help="set consent codes: from a sample sheet's consent column, or for one participant",
        description="Set participants' consent codes (re-consent included). With --sheet, every participant whose "
        "consent column differs from the codes in force gets a change; with --sample and --codes, that one. "
        "All or nothing.",
    )
    sheet_options.add(up)
    src = up.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--sheet",
        type=Path,
        metavar="FILE",
        help="a sample sheet with a consent column (TSV, CSV for a .csv file; the institution's own column names "
        "with --sheet-columns/--sheet-map, as for ingest); rows for samples the store does not hold are skipped "
        "and counted",
    )
    src.add_argument("--sample", metavar="ID", help="one participant's sample id (with --codes)")
    up.add_argument(
        "--reconsent",
        action="store_true",
        help="with --sheet: also consent again the withdrawn participants the sheet consents (without it they "
        "stay withdrawn and are counted in the output: an old sheet never lifts a withdrawal by accident)",
    )
    up.add_argument(
        "--codes", metavar="CODES", help="with --sample: the DUO codes in force, ';'-separated (e.g. 'GRU')"
    )
    common(up, writes=True)
    sh = co_sub.add_parser(
        "show",
        help="one participant's consent: codes in force, the sheet's codes, and every change",
        description="One participant's consent codes in force, the codes of the last ingested sheet, and history.",
    )
    sh.add_argument("--sample", required=True, metavar="ID", help="the participant's sample id")
    common(sh, writes=False)
    ls = co_sub.add_parser(
        "list",
        help="the consent changes in force (or every change with --history)",
        description="The participants whose consent was changed since ingest, with their codes in force, who and "
        "when; with --history, every change recorded.",
    )
    ls.add_argument("--history", action="store_true", help="every change, oldest first")
    common(ls, writes=False)


class _Node:
    """What a consent command needs of a node: its participants (pseudonym -> the sheet's codes) and key."""

    def __init__(self, config: NodeConfig):
        from node.ingest.pipeline import default_key_path, key_fingerprint, load_key
        from node.store import Store

        self.config = config
        store = config.store.path
        key_path = config.keys.pseudonym_key
        if not key_path.exists():
            key_path = default_key_path(store)
        self.key, _ = load_key(key_path, create=False)
        s = Store.open(store, read_only=True)  # beside a serving node: DuckDB shares a read-only file
        try:
            if s.meta("key_fingerprint") != key_fingerprint(self.key):
                raise StoreError(f"{key_path}: not the pseudonymisation key the store {store} was built with")
            rows = s.con.execute("SELECT pseudonym, consent FROM samples").fetchall()
        finally:
            s.close()
        self.sheet_codes: dict[str, tuple[str, ...]] = {str(p): tuple(c) for p, c in rows}
        self.consent_path = consent_path(store)

    def pseudonyms(self, sample_ids: Sequence[str], what: str) -> list[str]:
        """The pseudonyms of ``sample_ids``; ``UsageError`` with the count of ids the store does not hold."""
        from node.ingest.pipeline import pseudonym

        out = [pseudonym(self.key, s) for s in sample_ids]
        unknown = sum(p not in self.sheet_codes for p in out)
        if unknown:
            verb = "is not a participant" if unknown == 1 else "are not participants"
            raise UsageError(
                f"{unknown} of the {plural(len(out), 'sample id')} {what} {verb} of the store "
                f"{self.config.store.path}; nothing was changed"
            )
        return out


def run(args: argparse.Namespace) -> int:
    from node.config import load_node_config  # not at import: every 'genogate-node --help' imports this module

    config = load_node_config(args.config)
    node = _Node(config)
    action = args.consent_command
    if action in ("show", "list") and not node.consent_path.exists():
        changes: dict[str, Change] = {}
        history: list[Change] = []
    else:
        with ConsentStore(node.consent_path) as store:
            if action in ("withdraw", "update"):
                return _change(args, node, store)
            history = store.history()
            changes = {c.pseudonym: c for c in history}
    if action == "show":
        return _show(args, node, changes, history)
    return _list(args, changes, history)


def _change(args: argparse.Namespace, node: _Node, store: ConsentStore) -> int:
    by = args.by or getpass.getuser()
    wanted: dict[str, tuple[str, ...]]
    not_held = 0  # sheet rows for samples the store does not hold (skipped, as ingest skips them)
    if args.consent_command == "withdraw":
        wanted = {p: (duo.WITHDRAWN,) for p in node.pseudonyms(args.sample, "given")}
        action = "withdraw"
    elif args.sheet is not None:
        if args.codes:
            raise UsageError("--codes goes with --sample; a sheet gives its codes in its consent column")
        wanted, not_held = _sheet_codes(args.sheet, node, sheet_options.columns(args))
        action = "update"
    else:
        if args.sheet_columns is not None or args.sheet_map is not None or args.sheet_age_year is not None:
            raise UsageError("--sheet-columns, --sheet-map and --sheet-age-year go with --sheet")
        if args.reconsent:
            raise UsageError("--reconsent goes with --sheet; --sample ID --codes CODES consents one participant again")
        if args.codes is None:
            raise UsageError("consent update --sample needs --codes (e.g. --codes 'GRU'), or give --sheet")
        try:
            codes = duo.normalise_codes(args.codes.split(";"))
        except ValueError as exc:
            raise UsageError(f"--codes: {exc}") from None
        if not codes:
            raise UsageError("--codes is empty; to withdraw consent use 'genogate-node consent withdraw'")
        (p,) = node.pseudonyms([args.sample], "given")
        wanted = {p: codes}
        action = "withdraw" if codes == (duo.WITHDRAWN,) else "update"
    in_force = {**node.sheet_codes, **store.overrides()}
    kept_withdrawn = 0  # withdrawn participants a sheet would consent again: only with --reconsent
    if args.consent_command == "update" and args.sheet is not None and not args.reconsent:
        lifted = [p for p, codes in wanted.items() if _withdrawn(in_force[p]) and not _withdrawn(codes)]
        for p in lifted:
            del wanted[p]
        kept_withdrawn = len(lifted)
    todo = [
        Change(p, action, codes, in_force[p], by, args.reason)
        for p, codes in sorted(wanted.items())
        if tuple(sorted(in_force[p])) != tuple(sorted(codes))
    ]
    batch = secrets.token_hex(8)
    at_ms = time.time_ns() // 1_000_000
    seq: list[int] = []
    done = (
        store.record(todo, batch=batch, at_ms=at_ms, audit=lambda d: seq.append(_audit(node.config, action, d)))
        if todo
        else []
    )
    doc = {
        "status": "recorded" if done else "unchanged",
        "action": action,
        "changed": len(done),
        "unchanged": len(wanted) - len(done),
        "sheet_rows_not_in_store": not_held,
        "kept_withdrawn": kept_withdrawn,
        "batch": batch if done else "",
        "by": by,
        "at_ms": at_ms,
        "audit_seq": seq[0] if seq else 0,
        "consent_store": str(store.path),
        "changes": [c.to_json() for c in done],
    }
    if args.json:
        print_json(doc)
        return 0
    verb = "withdrew the consent of" if action == "withdraw" else "updated the consent of"
    if done:
        print(
            f"{verb} {plural(len(done), 'participant')} (by {by}, audit entry #{seq[0]}); "
            "the node applies it at its next query"
        )
    if len(wanted) > len(done):
        print(
            f"{plural(len(wanted) - len(done), 'participant')} already had these codes in force: "
            "nothing recorded for them"
        )
    if not_held:
        print(f"{plural(not_held, 'sheet row')} for samples the store does not hold: skipped")
    if kept_withdrawn:
        print(
            f"{plural(kept_withdrawn, 'withdrawn participant')} kept withdrawn although the sheet consents them: "
            "a sheet lifts a withdrawal only with --reconsent (or one at a time: --sample ID --codes CODES)"
        )
    return 0


def _withdrawn(codes: Sequence[str]) -> bool:
    return tuple(codes) == (duo.WITHDRAWN,)


def _sheet_codes(sheet: Path, node: _Node, columns: SheetColumns | None) -> tuple[dict[str, tuple[str, ...]], int]:
    """Each consent-column participant of the sheet the store holds, by pseudonym, and how many of the sheet's
    rows are for samples the store does not hold (skipped, as ingest skips them; all skipped is refused)."""
    from node.ingest.pipeline import pseudonym
    from node.ingest.sheet import load_sheet

    read = load_sheet(sheet, columns)  # every problem names the file, line and column
    if "consent" not in read.used:
        raise IngestError(str(sheet), "the sheet has no consent column (or none mapped): nothing to update from")
    held: dict[str, tuple[str, ...]] = {}
    for p in read.participants:
        ps = pseudonym(node.key, p.sample_id)
        if ps in node.sheet_codes:
            held[ps] = p.consent
    skipped = len(read.participants) - len(held)
    if not held:
        raise UsageError(
            f"none of the {plural(len(read.participants), 'sample id')} of {sheet} is a participant of the store "
            f"{node.config.store.path}; nothing was changed"
        )
    return held, skipped


def _audit(config: NodeConfig, action: str, done: Sequence[Change]) -> int:
    """Append the command's entry to the node's audit log (its ledger file); returns its position."""
    from node.ledger import Ledger
    from node.ledger.schema import APPLICATION_ID

    signer = Signer.from_pem_file(config.keys.identity_key)
    path = config.ledger.path
    if not path.exists():
        Ledger(path, audit_signer=signer).close()  # no node has started on it yet: create it as a node would
    conn = reopen(path, what="ledger", synchronous="FULL")
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the ledger: {exc}") from exc
        if app_id != APPLICATION_ID:
            raise StoreError(f"{path}: not a genogate ledger")
        entry = {
            "event": "consent",
            "action": action,
            "batch": done[0].batch,
            "by": done[0].by,
            "reason": done[0].reason,
            "changes": [
                {"seq": c.seq, "pseudonym": c.pseudonym, "codes": list(c.codes), "previous": list(c.previous)}
                for c in done
            ],  # fmt: skip
        }
        with transaction(lambda: conn, None, what="ledger", doing="writing the audit log", path=path) as c:
            return audit.append(c, signer, entry, done[0].at_ms)
    finally:
        conn.close()


def _when(at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _show(args: argparse.Namespace, node: _Node, latest: dict[str, Change], history: list[Change]) -> int:
    (p,) = node.pseudonyms([args.sample], "given")
    mine = [c for c in history if c.pseudonym == p]
    in_force = latest[p].codes if p in latest else node.sheet_codes[p]
    doc = {
        "status": "withdrawn" if duo.WITHDRAWN in in_force else "consented" if in_force else "no_codes",
        "sample": args.sample,
        "pseudonym": p,
        "codes": list(in_force),
        "sheet_codes": list(node.sheet_codes[p]),
        "history": [c.to_json() for c in mine],
    }
    if args.json:
        print_json(doc)
        return 0
    print(f"participant  {args.sample} (pseudonym {p})")
    print(f"in force     {';'.join(in_force) or '(no codes)'} ({doc['status']})")
    print(f"sheet        {';'.join(node.sheet_codes[p]) or '(no codes)'} (as last ingested)")
    if not mine:
        print("changes      none")
    for c in mine:
        print(f"change #{c.seq}   {_when(c.at_ms)}  {c.action} -> {';'.join(c.codes)} by {c.by}" + _why(c))
    return 0


def _list(args: argparse.Namespace, latest: dict[str, Change], history: list[Change]) -> int:
    rows = history if args.history else sorted(latest.values(), key=lambda c: c.seq)
    if args.json:
        key = "changes" if args.history else "in_force"
        print_json({"status": "ok", key: [c.to_json() for c in rows]})
        return 0
    if not rows:
        print("no consent changes recorded")
        return 0
    print(
        f"{plural(len(rows), 'change')}:"
        if args.history
        else f"{plural(len(rows), 'participant')} with a change in force:"
    )
    print("SEQ\tWHEN\tPSEUDONYM\tACTION\tCODES\tBY\tREASON")
    for c in rows:
        print(f"{c.seq}\t{_when(c.at_ms)}\t{c.pseudonym}\t{c.action}\t{';'.join(c.codes)}\t{c.by}\t{c.reason}")
    return 0


def _why(c: Change) -> str:
    return f" ({c.reason})" if c.reason else ""
