"""``genogate-node synth``: write a synthetic cohort as VCF + sheet, or straight into a store."""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from genogate.errors import UsageError
from node.ingest import Progress, ingest_sources
from node.synth import SynthSource, SynthSpec, run


def spec_fingerprint(spec: SynthSpec) -> str:
    """Identifies a synthetic source in the store's input list, so ``--store`` twice is idempotent."""
    return hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode()).hexdigest()


def run_synth(args: argparse.Namespace) -> int:
    try:
        spec = SynthSpec(samples=args.samples, variants=args.variants, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    paths = run(out, spec, vcf=args.store is None)
    for name, path in sorted(paths.items()):
        print(f"{name:8} {path}")
    if args.store is not None:
        source = SynthSource(spec)
        summary = ingest_sources(
            args.store,
            [source],
            paths["samples"],
            fingerprints=[spec_fingerprint(spec)],
            progress=Progress(spec.variants),
        )
        print("\n".join(summary.lines()))
    return 0
