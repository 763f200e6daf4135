"""``genogate-node synth``: write a synthetic cohort as VCF + sheet, or straight into a store."""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from genogate.errors import UsageError
from genogate.progress import DEFAULT_INTERVAL_S, Progress
from node.ingest import IngestSummary, ingest_sources
from node.ingest.synth import SynthSource
from node.ingest.synth_files import run
from node.ingest.synth_spec import WHOLE, Part, SynthSpec, parse_part


def spec_fingerprint(spec: SynthSpec, part: Part = WHOLE) -> str:
    """Identifies a synthetic source in the store's input list, so ``--store`` twice is idempotent."""
    described = json.dumps(asdict(spec), sort_keys=True, default=str)
    if part != WHOLE:
        described += f" part {part[0]}/{part[1]}"
    return hashlib.sha256(described.encode()).hexdigest()


def synth_store(
    store: Path,
    out: Path,
    spec: SynthSpec,
    part: Part = WHOLE,
    *,
    progress: bool = True,
    progress_interval: float = DEFAULT_INTERVAL_S,
) -> tuple[dict[str, Path], IngestSummary]:
    """Write ``part`` of the cohort's sheet and truth into ``out`` and its genotypes straight into ``store``."""
    paths = run(out, spec, vcf=False, part=part)
    summary = ingest_sources(
        store,
        [SynthSource(spec, part)],
        paths["samples"],
        fingerprints=[spec_fingerprint(spec, part)],
        progress=Progress(spec.variants, what="synth", unit="variants", interval=progress_interval)
        if progress
        else None,
    )
    return paths, summary


def run_synth(args: argparse.Namespace) -> int:
    """``genogate-node synth``: the files written (and the ingest summary) as text, or with ``--json`` one
    JSON object (``status`` "written", ``files``, ``ingest``)."""
    try:
        spec = SynthSpec(samples=args.samples, variants=args.variants, seed=args.seed)
        part = parse_part(args.part) if args.part else WHOLE
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if part != WHOLE and args.store is None:
        raise UsageError("--part writes one institution's participants into a store: give --store too")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    interval = args.progress_interval
    if args.store is None:
        progress = Progress(spec.variants, what="synth", unit="variants", interval=interval)
        paths = run(out, spec, progress=progress)
        summary = None
    else:
        paths, summary = synth_store(args.store, out, spec, part, progress_interval=interval)
    if args.json:
        doc = {
            "status": "written",
            "files": {name: str(path) for name, path in sorted(paths.items())},
            "ingest": None if summary is None else summary.to_json(),
        }
        print(json.dumps(doc, indent=2))
        return 0
    for name, path in sorted(paths.items()):
        print(f"{name:8} {path}")
    if summary is not None:
        print("\n".join(summary.lines()))
    return 0
