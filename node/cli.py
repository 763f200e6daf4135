"""``genogate-node``: the node operator's command line.

Commands: ``ingest`` (VCF/BCF + sample sheet into the store), ``freq`` (exact counts, offline, for the
operator's own checks), ``synth`` (a synthetic cohort for demos, tests and benchmarks).
Expected problems print one line and exit with the error's code; a stack trace means a bug.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genogate.errors import GenogateError, LocalError
from genogate.filter import parse_filter
from genogate.query import Region


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genogate-node", description="Operate a genogate node.")
    p.add_argument("--version", action="version", version="genogate-node 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ing = sub.add_parser(
        "ingest",
        help="load VCF/BCF files and a sample sheet into the store",
        description="Load genotypes (VCF or BCF; plain, gzip or BGZF) and a sample sheet into "
        "the node's store, atomically and idempotently.",
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
        help="sample sheet TSV: sample_id [sex birth_year ancestry phenotypes consent]",
    )
    ing.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help="pseudonymisation key (default: pseudonym.key beside the store; created for a new store)",
    )

    fq = sub.add_parser(
        "freq",
        help="exact allele and genotype counts from the store (offline check)",
        description="Exact counts over the operator's own store; never runs over the network.",
    )
    fq.add_argument("--store", type=Path, required=True)
    fq.add_argument("--region", help="CHROM:START-END (1-based, inclusive) or CHROM")
    fq.add_argument("--by", choices=("sex", "ancestry", "phenotype"), help="one block of rows per group")
    fq.add_argument(
        "--where",
        metavar="FILTER",
        help="cohort filter, e.g. 'sex=F and ancestry in (EUR,AFR) and phenotype=HP:0001250'",
    )
    fq.add_argument("--format", choices=("tsv", "json"), default="tsv")

    sy = sub.add_parser("synth", help="generate a synthetic cohort (VCF + sheet, or straight into a store)")
    sy.add_argument("--samples", type=int, required=True)
    sy.add_argument("--variants", type=int, required=True)
    sy.add_argument("--out", type=Path, required=True, help="directory for samples.tsv, truth.json (and the VCF)")
    sy.add_argument("--seed", type=int, default=1)
    sy.add_argument("--store", type=Path, help="write straight into this store instead of a VCF")
    return p


def _ingest(args: argparse.Namespace) -> int:
    from node.ingest import ingest

    summary = ingest(args.store, args.vcf, args.samples, key_path=args.key)
    print("\n".join(summary.lines()))
    return 0


def _freq(args: argparse.Namespace) -> int:
    from node import freq
    from node.store import Store

    where = parse_filter(args.where)
    region = Region.parse(args.region) if args.region else None
    store = Store.open(args.store)
    try:
        freq.write(sys.stdout, store, where, args.by, region, args.format)
    finally:
        store.close()
    return 0


def _synth(args: argparse.Namespace) -> int:
    from node.synth_cli import run_synth

    return run_synth(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"ingest": _ingest, "freq": _freq, "synth": _synth}[args.command]
    try:
        return handler(args)
    except LocalError as exc:
        print(f"genogate-node: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except GenogateError as exc:  # e.g. a malformed --where or --region
        print(f"genogate-node: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("genogate-node: interrupted; nothing was changed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
