"""``genogate-coordinator``: the access committee operator's command line.

Commands: ``init`` (a coordinator's directory, keys and config), ``serve`` (the gRPC service), ``committee
add`` (a member appended to the committee members file), ``committee key`` (the committee's public key and
fingerprint, for joining nodes), ``audit verify|export|reconcile`` (its audit log,
and its receipts matched against a node's exported log), ``status`` (the server, registry and files at a
glance) and ``health`` (the running server's health service). Expected problems print one line and exit with
the error's code (``genogate.cliutil``); a stack trace means a bug.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from genogate.cliutil import add_completion, add_json, print_json, print_report, run

if TYPE_CHECKING:
    pass

PROG = "genogate-coordinator"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Coordinator of a genogate federation: node registry, studies, grants, revocations."
    )
    p.add_argument("--version", action="version", version=f"{PROG} 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ini = sub.add_parser(
        "init",
        help="create a coordinator directory: config, committee key, TLS key and certificate request",
        description="Create DIR with coordinator.toml, the committee's Ed25519 signing key, a TLS key and "
        "certificate request (CN=NAME; SANs NAME, localhost, 127.0.0.1) and an empty committee members file. "
        "Keys are mode 0600. Refuses a DIR that already holds a coordinator.toml; never overwrites a file.",
    )
    ini.add_argument("--dir", type=Path, required=True, help="the coordinator directory (created if absent)")
    ini.add_argument(
        "--name", default="coordinator", help="the coordinator's name (certificate CN; default: %(default)s)"
    )
    ini.add_argument(
        "--listen", default="127.0.0.1:0", metavar="HOST:PORT", help="server address (default: %(default)s)"
    )
    ini.add_argument(
        "--operator",
        action="append",
        default=[],
        metavar="CN",
        help="a client-certificate common name allowed to register nodes and researchers; repeat for several",
    )
    ini.add_argument(
        "--metrics-listen", default="", metavar="HOST:PORT", help="serve Prometheus metrics here (default: off)"
    )
    add_json(ini, "print the files created as JSON")

    sv = sub.add_parser(
        "serve",
        help="run the coordinator's gRPC service (mTLS) until SIGTERM",
        description="Serve the coordinator over gRPC with mutual TLS. Writes the bound address to [server] "
        "ready_file once serving; stops gracefully on SIGTERM or Ctrl-C.",
    )
    sv.add_argument("--config", type=Path, required=True, help="the coordinator's TOML config (see init)")
    sv.add_argument("--listen", help="override [server] listen, e.g. 127.0.0.1:0 for any free port")

    com = sub.add_parser(
        "committee",
        help="manage the access committee's members",
        description="Manage the access committee's members (the keys whose reviews approve studies).",
    )
    com_sub = com.add_subparsers(dest="committee_command", required=True, metavar="COMMAND")
    add = com_sub.add_parser(
        "add",
        help="add a member to the committee members file",
        description="Append a member (a name and a raw Ed25519 public key) to the members file named by "
        "[committee] members_file. The server reads the file at start: restart it afterwards.",
    )
    add.add_argument("--config", type=Path, required=True, help="the coordinator's TOML config")
    add.add_argument("--name", required=True, help="the member's name")
    add.add_argument("--public-key", required=True, metavar="HEX", help="raw Ed25519 public key, 64 hex digits")
    add_json(add, "print the result as JSON (status added or unchanged)")
    key = com_sub.add_parser(
        "key",
        help="print the committee's public key and fingerprint, for nodes joining the federation",
        description="Print what a node operator needs to trust this committee (all public): the committee's "
        "Ed25519 public key as 64 hex digits (the form of a node's [grants] committee_keys and of genogate-node "
        "init --committee-key), its fingerprint, and the common name of the coordinator's certificate (genogate-"
        "node init --coordinator-cn). The fingerprint is the SHA-256 of the 32 raw key bytes, in hex: the id "
        "that grants and revocation lists carry and that genogate study show prints as 'grant signed by', so "
        "anyone holding the key can check it. Reads the signing key the config names; never prints it.",
    )
    key.add_argument("--config", type=Path, required=True, help="the coordinator's TOML config")
    key.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: public_key, fingerprint, coordinator_common_name",
    )

    from genogate import status

    status.add_commands(
        sub,
        "coordinator",
        "the coordinator's TOML config",
        "Report the coordinator's server (from its ready file), its state (studies by state, researchers, "
        "federated queries), every registered node (health-checked over mTLS with the coordinator's "
        "certificate, as fan-out reaches it) and its audit log (hash chain and signatures verified).",
    )

    from genogate.audit import add_commands

    au_sub = add_commands(sub, "the coordinator's TOML config")
    rec = au_sub.add_parser(
        "reconcile",
        help="match the releases this log recorded from one site against that node's exported audit log",
        description="Check every node-signed receipt this coordinator recorded from SITE against the node's own "
        "log (from `genogate-node audit export`, which carries the released values this log holds as digests): "
        "each body must match the recorded digest, be signed by the node and match a release in its log. Give "
        "several sites as --site/--node-export pairs. Exit 1 and list what does not match.",
    )
    rec.add_argument("--config", type=Path, required=True, help="the coordinator's TOML config")
    rec.add_argument(
        "--site", required=True, action="append", help="the node's site name (repeat with --node-export, in pairs)"
    )
    rec.add_argument(
        "--node-export",
        type=Path,
        required=True,
        action="append",
        metavar="FILE",
        help="the node's audit export (JSON), one per --site",
    )
    rec.add_argument(
        "--values",
        action="store_true",
        help="also show each matched release's values (from the node's export, checked against this log's "
        "digests) and, for runs whose every answering site is given, the combined answer recomputed from them",
    )
    rec.add_argument("--json", action="store_true", help="machine-readable output")

    add_completion(sub, PROG, _parser)
    return p


def _init(args: argparse.Namespace) -> int:
    from coordinator.admin import init_coordinator

    report = init_coordinator(
        args.dir, args.name, args.listen, tuple(args.operator), metrics_listen=args.metrics_listen
    )
    return print_report(report, as_json=args.json, status="created")


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from coordinator.app import serve
    from coordinator.config import check_files, load_coordinator_config
    from genogate.log import configure

    config = load_coordinator_config(args.config)
    if args.listen:
        from genogate.settings import check_listen

        try:
            check_listen(args.listen)
        except ValueError as exc:
            from genogate.errors import UsageError

            raise UsageError(f"--listen: {exc}") from None
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, listen=args.listen))
    check_files(config)
    configure(config.log.level, config.log.format)
    return serve(config)


def _committee(args: argparse.Namespace) -> int:
    from coordinator.admin import add_member, committee_key

    if args.committee_command == "key":
        found = committee_key(args.config)
        if args.json:
            print_json(found.to_json())
        else:
            print("\n".join(found.lines()))
        return 0
    return print_report(add_member(args.config, args.name, args.public_key), as_json=args.json, status="added")


EXPORT_NOTE = (
    "Each release is recorded as digests (payload_sha256, result_sha256), the node's signature and the release's "
    "header, not its values: the values are in the node's ledger (`genogate-node audit export` prints them). "
    "`genogate-coordinator audit reconcile --site SITE --node-export FILE --values` checks them against these "
    'digests and signatures and shows them. Entries without "format" hold their receipts inline.'
)


def _audit(args: argparse.Namespace) -> int:
    import json

    from coordinator.config import load_coordinator_config
    from genogate import audit
    from genogate.errors import UsageError
    from genogate.signing import Signer
    from genogate.words import plural

    config = load_coordinator_config(args.config)
    entries = audit.read_file(config.audit.path)
    if args.audit_command != "reconcile":
        key = Signer.from_pem_file(config.committee.signing_key)
        return audit.run_command(
            args.audit_command, entries, audit.keys(key.public_raw), as_json=args.json, note=EXPORT_NOTE
        )
    if len(args.site) != len(args.node_export):
        raise UsageError(f"{len(args.site)} --site and {len(args.node_export)} --node-export: give them in pairs")
    exports = []
    for site, path in zip(args.site, args.node_export, strict=True):
        try:
            exports.append((site, json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--node-export {path}: not a readable JSON audit export ({exc})") from None
    from coordinator.record import reconcile_sites

    report = reconcile_sites(entries, exports, values=args.values)
    their = "its audit log" if len(exports) == 1 else "their audit logs"
    return audit.print_report(
        report,
        as_json=args.json,
        ok=f"reconciled: {plural(report.entries, 'receipt')} from {', '.join(args.site)} "
        + ("matches " if report.entries == 1 else "match ")
        + their,
        broken=f"NOT reconciled: {plural(len(report.problems), 'problem')}",
    )


def _status(args: argparse.Namespace) -> int:
    from coordinator import status

    return status.run(args.config, as_json=args.json)


def _health(args: argparse.Namespace) -> int:
    from coordinator.config import load_coordinator_config
    from genogate.status import health_command

    config = load_coordinator_config(args.config)
    return health_command(config.server, config.tls, config.coordinator.name, args.timeout, as_json=args.json)


def main(argv: list[str] | None = None) -> int:
    # Everything this process creates (store, ledger, nonces, audit log, DuckDB's and SQLite's side files,
    # directories) is the operator's alone, whatever the shell's umask; public files are chmodded explicitly.
    os.umask(0o077)
    args = _parser().parse_args(argv)
    handler = {
        "init": _init,
        "serve": _serve,
        "committee": _committee,
        "audit": _audit,
        "status": _status,
        "health": _health,
    }.get(args.command) or args.handler
    # A GenogateError outside LocalError (e.g. the state file refused at start) exits 2.
    return run(PROG, lambda: handler(args), error_exit=2)


if __name__ == "__main__":
    raise SystemExit(main())
