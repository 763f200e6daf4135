"""``genogate-node``: the node operator's command line.

Commands: ``init`` (a node's directory, keys and config), ``dev-ca`` (a development CA), ``ingest``
(VCF/BCF + sample sheet into the store), ``freq`` (exact counts, offline, for the operator's own checks),
``serve`` (the gRPC query service), ``synth`` (a synthetic cohort for demos, tests and benchmarks),
``audit verify|export`` (the tamper-evident log of every query), ``consent withdraw|update|show|list``
(consent changes while the node serves, ``node.consent_cli``), ``status`` (the server and its files at a
glance) and ``health`` (the running server's health service). Expected problems print one line and exit
with the error's code (``genogate.cliutil``); a stack trace means a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from genogate.cliutil import add_completion, add_json, print_json, print_report, run
from genogate.progress import DEFAULT_INTERVAL_S
from node import sheet_options

if TYPE_CHECKING:
    pass

PROG = "genogate-node"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Operate a genogate node.")
    p.add_argument("--version", action="version", version=f"{PROG} 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ing = sub.add_parser(
        "ingest",
        help="load VCF/BCF files and a sample sheet into the store",
        description="Load genotypes (VCF or BCF; plain, gzip or BGZF) and a sample sheet into "
        "the node's store, atomically and idempotently. Progress (rate and ETA) goes to stderr: one redrawn "
        "line on a terminal, otherwise a line every --progress-interval seconds.",
    )
    ing.add_argument("--store", type=Path, required=True, help="the store file (created if absent)")
    ing.add_argument(
        "--vcf",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="a VCF/BCF file; repeat for several (e.g. one per chromosome)",
    )
    ing.add_argument(
        "--samples",
        type=Path,
        required=True,
        metavar="SHEET",
        help="sample sheet, TSV (CSV for a .csv file) with a header: sample_id [sex birth_year ancestry "
        "phenotypes consent], or the institution's own column names mapped with --sheet-columns/--sheet-map; "
        "it may list more participants than the files hold (counted, not stored)",
    )
    sheet_options.add(ing)
    ing.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="pseudonymisation key (default: pseudonym.key beside the store; created for a new store)",
    )
    ing.add_argument(
        "--build",
        choices=("GRCh37", "GRCh38"),
        help="the genome build of the files, when their headers state none (no ##reference naming it, no "
        "##contig lengths); refused if a header or the store says otherwise",
    )
    ing.add_argument(
        "--reference",
        type=Path,
        metavar="FASTA",
        help="reference FASTA (uncompressed; a .fai index is written beside it if absent): check every REF "
        "against it and left-align indels as 'bcftools norm -m- -f' does",
    )
    ing.add_argument(
        "--covered-regions",
        type=Path,
        metavar="BED",
        help="where the data was called (exome targets, array content), as BED; questions elsewhere are refused",
    )
    _progress_option(ing)
    add_json(ing, "print the ingest summary as JSON (status ingested or unchanged)")

    fq = sub.add_parser(
        "freq",
        help="exact allele and genotype counts from the store (offline check)",
        description="Exact counts over the operator's own store; never runs over the network.",
    )
    fq.add_argument("--store", type=Path, required=True, help="the node's store file (opened read-only)")
    fq.add_argument("--region", help="CHROM:START-END (1-based, inclusive) or CHROM")
    fq.add_argument("--by", choices=("sex", "ancestry", "phenotype"), help="one block of rows per group")
    fq.add_argument(
        "--where",
        metavar="FILTER",
        help="cohort filter, e.g. 'sex=F and ancestry in (EUR,AFR) and phenotype=HP:0001250'",
    )
    fq.add_argument("--format", choices=("tsv", "json"), default="tsv", help="output format (default: %(default)s)")
    add_json(fq, "the same as --format json")

    sy = sub.add_parser(
        "synth",
        help="generate a synthetic cohort (VCF + sheet, or straight into a store)",
        description="Generate a synthetic cohort for demos, tests and benchmarks: a sample sheet, the truth "
        "(planted variants) and either a BGZF VCF or, with --store, the genotypes straight into a store. The "
        "same seed gives the same cohort. Progress (rate and ETA) goes to stderr.",
    )
    sy.add_argument("--samples", type=int, required=True, metavar="N", help="number of participants")
    sy.add_argument("--variants", type=int, required=True, metavar="N", help="number of variant sites")
    sy.add_argument("--out", type=Path, required=True, help="directory for samples.tsv, truth.json (and the VCF)")
    sy.add_argument("--seed", type=int, default=1, help="generator seed (default: %(default)s)")
    sy.add_argument("--store", type=Path, help="write straight into this store instead of a VCF")
    sy.add_argument(
        "--part",
        metavar="I/N",
        help="with --store: only the I-th of N disjoint institutions of the cohort (same variants, its own "
        "participants), e.g. 2/3",
    )
    _progress_option(sy)
    add_json(sy, "print the files written (and the ingest summary) as JSON")

    sv = sub.add_parser(
        "serve",
        help="run the node's gRPC service (mTLS) until SIGTERM",
        description="Serve aggregate, differentially private queries over gRPC with mutual TLS. Writes the bound "
        "address to [server] ready_file once serving; stops gracefully on SIGTERM or Ctrl-C.",
    )
    sv.add_argument("--config", type=Path, required=True, help="the node's TOML config (see genogate-node init)")
    sv.add_argument("--listen", help="override [server] listen, e.g. 127.0.0.1:0 for any free port")

    from genogate import status

    status.add_commands(
        sub,
        "node",
        "the node's TOML config",
        "Report the node's server (from its ready file), store, ledger (spent budget per study) and audit log "
        "(hash chain and signatures verified). Reads files only.",
    )

    from genogate.audit import add_commands

    add_commands(sub, "the node's TOML config (the audit log is in its ledger file)")

    from node import consent_cli

    consent_cli.add_commands(sub)

    ini = sub.add_parser(
        "init",
        help="create a node directory: config, keys, TLS key and certificate request",
        description="Create DIR with node.toml, an Ed25519 identity key, a TLS key and certificate request "
        "(CN=NAME; SANs NAME, localhost, 127.0.0.1) and a pseudonymisation key. To join a federation, give the "
        "committee's public key and the coordinator's address and certificate name (all three from the "
        "coordinator operator: genogate-coordinator committee key prints them); node.toml then trusts that "
        "committee's grants and nothing needs editing. Without them, an empty local studies.toml is written "
        "too. Prints what to do next, and what to send the coordinator operator. Keys are mode 0600. Refuses a "
        "DIR that already holds a node.toml; never overwrites a file.",
    )
    ini.add_argument("--dir", type=Path, required=True, help="the node directory (created if absent)")
    ini.add_argument("--name", required=True, help="the node's name: 1-64 letters, digits, '_', '.' or '-'")
    ini.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="the address the node serves on, written into node.toml so every restart keeps the endpoint the "
        "coordinator registered (default: 0.0.0.0:50051, every interface; every caller needs a certificate from "
        "a CA in tls/ca.pem)",
    )
    ini.add_argument(
        "--committee-key",
        action="append",
        default=[],
        metavar="HEX",
        help="the public key (64 hex digits) of the access committee whose signed grants this node honours "
        "([grants] committee_keys), as genogate-coordinator committee key prints it; repeat for several; needs "
        "--coordinator",
    )
    ini.add_argument(
        "--coordinator",
        default="",
        metavar="HOST:PORT",
        help="the coordinator's address ([grants] coordinator), where the node fetches the committee's "
        "revocation list; needs --committee-key",
    )
    ini.add_argument(
        "--coordinator-cn",
        "--coordinator-name",
        dest="coordinator_cn",
        default="",
        metavar="CN",
        help="the common name of the coordinator's certificate ([grants] coordinator_common_name): the only "
        "caller answered under grants without the per-site breakdown",
    )
    ini.add_argument(
        "--metrics-listen", default="", metavar="HOST:PORT", help="serve Prometheus metrics here (default: off)"
    )
    add_json(ini, "print the files created as JSON")

    ca = sub.add_parser(
        "dev-ca",
        help="a throwaway certificate authority (development and tests only)",
        description="A throwaway certificate authority for development, demos and tests ONLY. Its key sits "
        "unprotected on disk; production nodes use certificates from their institution's CA.",
    )
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    ca_init = ca_sub.add_parser(
        "init",
        help="create the CA (ca.key, ca.pem)",
        description="Create a development CA: CA_DIR/ca.key (0600) and CA_DIR/ca.pem. Development only.",
    )
    ca_init.add_argument("--dir", type=Path, required=True, metavar="CA_DIR", help="the CA directory (created)")
    ca_init.add_argument("--name", default="genogate dev CA", help="the CA's common name (default: %(default)s)")
    ca_init.add_argument("--days", type=int, default=3650, help="validity in days (default: %(default)s)")
    add_json(ca_init, "print the files created as JSON")
    ca_issue = ca_sub.add_parser(
        "issue",
        help="sign a certificate request",
        description="Sign a CSR (e.g. a node's tls/node.csr) with the development CA. Development only.",
    )
    ca_issue.add_argument(
        "--ca", type=Path, required=True, metavar="CA_DIR", help="the CA directory ('dev-ca init' made it)"
    )
    ca_issue.add_argument(
        "--csr", type=Path, required=True, metavar="FILE", help="the certificate request (PEM), e.g. tls/node.csr"
    )
    ca_issue.add_argument("--out", type=Path, required=True, metavar="CERT", help="where to write the certificate")
    ca_issue.add_argument("--server", action="store_true", help="for a TLS server (a node, the coordinator)")
    ca_issue.add_argument("--client", action="store_true", help="for a TLS client")
    ca_issue.add_argument("--days", type=int, default=365, help="validity in days (default: %(default)s)")
    add_json(ca_issue, "print the certificate written as JSON")
    ca_client = ca_sub.add_parser(
        "client",
        help="make a client key and certificate",
        description="Make NAME.key (0600) and NAME.pem, a client certificate with CN=NAME for a researcher, "
        "coordinator or test, plus a copy of ca.pem, in DIR. Development only.",
    )
    ca_client.add_argument(
        "--ca", type=Path, required=True, metavar="CA_DIR", help="the CA directory ('dev-ca init' made it)"
    )
    ca_client.add_argument("--name", required=True, help="the common name (how nodes know this client)")
    ca_client.add_argument(
        "--out-dir", type=Path, required=True, metavar="DIR", help="where to write the key and certificates"
    )
    ca_client.add_argument("--days", type=int, default=365, help="validity in days (default: %(default)s)")
    add_json(ca_client, "print the files created as JSON")

    add_completion(sub, PROG, _parser)
    return p


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line every SECONDS (default: %(default)g)",
    )


def _ingest(args: argparse.Namespace) -> int:
    from node.ingest import ingest

    summary = ingest(
        args.store,
        args.vcf,
        args.samples,
        key_path=args.key,
        build=args.build,
        reference=args.reference,
        covered_regions=args.covered_regions,
        sheet_columns=sheet_options.columns(args),
        progress_interval=args.progress_interval,
    )
    if args.json:
        print_json(summary.to_json())
    else:
        print("\n".join(summary.lines()))
    return 0


def _freq(args: argparse.Namespace) -> int:
    from genogate.filter import parse_filter
    from genogate.query import Region
    from node import freq
    from node.duckdb_backend import DuckDBBackend

    where = parse_filter(args.where)
    region = Region.parse(args.region) if args.region else None
    backend = DuckDBBackend.open(args.store, point_reads=False)
    try:
        if region is not None:
            region = freq.store_region(backend, region)
        freq.write(sys.stdout, backend, where, args.by, region, "json" if args.json else args.format)
    finally:
        backend.close()
    return 0


def _synth(args: argparse.Namespace) -> int:
    from node.synth_cli import run_synth

    return run_synth(args)


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from genogate.log import configure
    from node.app import serve
    from node.config import check_files, load_node_config

    config = load_node_config(args.config)
    if args.listen:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, listen=args.listen))
    check_files(config)
    configure(config.log.level, config.log.format)
    return serve(config)


def _init(args: argparse.Namespace) -> int:
    from node.admin import DEFAULT_LISTEN, init_node

    report = init_node(
        args.dir,
        args.name,
        args.listen or DEFAULT_LISTEN,
        committee_keys=tuple(args.committee_key),
        coordinator=args.coordinator,
        coordinator_common_name=args.coordinator_cn,
        metrics_listen=args.metrics_listen,
    )
    return print_report(report, as_json=args.json, status="created")


def _dev_ca(args: argparse.Namespace) -> int:
    from node import admin

    if args.ca_command == "init":
        report = admin.dev_ca_init(args.dir, args.name, args.days)
    elif args.ca_command == "issue":
        report = admin.dev_ca_issue(args.ca, args.csr, args.out, server=args.server, client=args.client, days=args.days)
    else:
        report = admin.dev_ca_client(args.ca, args.name, args.out_dir, args.days)
    return print_report(report, as_json=args.json, status="created")


def _audit(args: argparse.Namespace) -> int:
    from genogate import audit
    from genogate.signing import Signer
    from node.config import load_node_config

    config = load_node_config(args.config)
    key = Signer.from_pem_file(config.keys.identity_key)
    entries = audit.read_file(config.ledger.path)
    return audit.run_command(args.audit_command, entries, audit.keys(key.public_raw), as_json=args.json)


def _consent(args: argparse.Namespace) -> int:
    from node import consent_cli

    return consent_cli.run(args)


def _status(args: argparse.Namespace) -> int:
    from node import status

    return status.run(args.config, as_json=args.json)


def _health(args: argparse.Namespace) -> int:
    from genogate.status import health_command
    from node.config import load_node_config

    config = load_node_config(args.config)
    return health_command(config.server, config.tls, config.node.name, args.timeout, as_json=args.json)


def main(argv: list[str] | None = None) -> int:
    # Everything this process creates (store, ledger, nonces, audit log, DuckDB's and SQLite's side files,
    # directories) is the operator's alone, whatever the shell's umask; public files are chmodded explicitly.
    os.umask(0o077)
    args = _parser().parse_args(argv)
    handler = {
        "ingest": _ingest,
        "freq": _freq,
        "synth": _synth,
        "serve": _serve,
        "init": _init,
        "dev-ca": _dev_ca,
        "audit": _audit,
        "consent": _consent,
        "status": _status,
        "health": _health,
    }.get(args.command) or args.handler
    # A GenogateError outside LocalError (e.g. a malformed --where or --region) exits 2.
    return run("genogate-node", lambda: handler(args), error_exit=2, interrupted="interrupted; nothing was changed")


if __name__ == "__main__":
    raise SystemExit(main())
