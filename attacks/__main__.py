"""``python -m attacks`` (``make attacks``): run the attacks through the real path and publish the results.

Stands up a coordinator and node processes (``attacks.lab``) on the real 1000 Genomes subset and on a
synthetic cohort, runs each attack, and writes ``attacks/out/results.json``, ROC curves and
``differencing.json``; unless ``--quick`` or ``--no-publish``, also ``docs/security/`` (the JSONs and the PNGs
SECURITY.md shows) and the tables in ``SECURITY.md``. ``--only`` reruns some attacks and keeps the published
results of the others. Everything runs niced-friendly on 2 cores: the full run takes a few minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attacks import coverage, data, differencing, membership, report, timing
from attacks.lab import lab, lab_policy, shipped

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = ("membership", "differencing", "timing", "coverage")
POLICY = (
    "epsilon_per_query_min",
    "epsilon_per_query_cap",
    "epsilon_per_study_cap",
    "epsilon_per_researcher_cap",
    "epsilon_per_node_cap",
    "budget_period_days",
    "delta_per_query",
    "min_reportable_count",
)


@dataclass(frozen=True)
class Sizes:
    membership_targets: int
    differencing_targets: int
    timing_single: int
    timing_batch: int
    timing_batch_width: int
    coverage_singles: int
    coverage_vectors: int
    coverage_width: int
    federated_singles: int
    federated_vectors: int
    federated_width: int
    synth_samples: int
    synth_variants: int
    timing_synth_samples: int
    timing_synth_variants: int


FULL = Sizes(250, 250, 1000, 100, 1000, 600, 4, 500, 400, 10, 100, 3000, 4000, 20000, 20000)
QUICK = Sizes(20, 15, 40, 4, 100, 40, 1, 100, 20, 1, 30, 600, 600, 600, 2000)


def _commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run(which: tuple[str, ...], sizes: Sizes, seed: int, work: Path, seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Run the attacks in ``which``; ``seconds`` gets each one's wall time."""
    results: list[dict[str, Any]] = []
    cohort = data.load(seed)
    store = data.member_store(cohort, work / "data")
    with lab(work / "lab") as the_lab:
        if {"membership", "differencing", "coverage"} & set(which):
            the_lab.add_node("kg", store, build="GRCh37", env=lab_policy())
        if "membership" in which:
            print("membership inference ...", flush=True)
            t = time.monotonic()
            results += membership.run(the_lab, "kg", store, cohort, targets=sizes.membership_targets, seed=seed)
            seconds["membership"] = time.monotonic() - t
        if "differencing" in which:
            print("differencing ...", flush=True)
            t = time.monotonic()
            results += differencing.run(the_lab, "kg", cohort, targets=sizes.differencing_targets, seed=seed)
            seconds["differencing"] = time.monotonic() - t
        if "timing" in which:
            print("refused-query timing ...", flush=True)
            t = time.monotonic()
            the_lab.add_node("kg-memory", store, build="GRCh37", env=lab_policy())
            duck = {**lab_policy(), "GENOGATE_NODE_STORE__MEMORY_MB": "0"}
            the_lab.add_node("kg-duckdb", store, build="GRCh37", env=duck)

            def probe(sites: dict[str, str], st: Path, data_text: str) -> list[dict[str, Any]]:
                return timing.run(
                    the_lab,
                    sites,
                    st,
                    n_single=sizes.timing_single,
                    n_batch=sizes.timing_batch,
                    batch=sizes.timing_batch_width,
                    seed=seed,
                    data=data_text,
                )

            results += probe({"in-memory path": "kg-memory", "DuckDB path": "kg-duckdb"}, store, "1000 Genomes store")
            the_lab.stop_node("kg-memory")
            the_lab.stop_node("kg-duckdb")
            # A bigger synthetic store read through DuckDB, as a node reads a store too big for memory.
            n, m = sizes.timing_synth_samples, sizes.timing_synth_variants
            big = _synthetic(work / "synth-big", n, m, seed, parts=1)[0]
            the_lab.add_node("synth-duckdb", big, build="GRCh38", env=duck)
            results += probe({"DuckDB path, synthetic": "synth-duckdb"}, big, f"synthetic store, {n:,} x {m:,}")
            the_lab.stop_node("synth-duckdb")
            seconds["timing"] = time.monotonic() - t
        if "coverage" in which:
            print("interval coverage ...", flush=True)
            t = time.monotonic()
            results += coverage.node_releases(
                the_lab,
                "kg",
                store,
                singles=sizes.coverage_singles,
                vectors=sizes.coverage_vectors,
                width=sizes.coverage_width,
                seed=seed,
            )
            stores = _synthetic(work / "synth", sizes.synth_samples, sizes.synth_variants, seed, parts=3)
            sites = [f"synth-{i}" for i in range(len(stores))]
            for site, s in zip(sites, stores, strict=True):
                the_lab.add_node(site, s, build="GRCh38", env=lab_policy())
            for n, width in ((sizes.federated_singles, 1), (sizes.federated_vectors, sizes.federated_width)):
                results.append(coverage.federated(the_lab, sites, stores, queries=n, width=width, seed=seed + width))
            seconds["coverage"] = time.monotonic() - t
    return results


def _synthetic(work: Path, samples: int, variants: int, seed: int, *, parts: int) -> list[Path]:
    """A synthetic cohort (``node.ingest.synth``) split into ``parts`` stores."""
    from node.ingest.synth_spec import SynthSpec
    from node.synth_cli import synth_store

    spec = SynthSpec(samples=samples, variants=variants, seed=seed)
    stores = []
    for i in range(parts):
        s = work / f"site{i}.duckdb"
        s.unlink(missing_ok=True)
        synth_store(s, work / f"site{i}", spec, (i, parts), progress=False)
        stores.append(s)
    return stores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m attacks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="a small sample of every attack (seconds, not minutes); publishes nothing"
    )
    p.add_argument("--only", action="append", choices=ATTACKS, help="run only this attack (repeatable)")
    p.add_argument("--seed", type=int, default=13, help="seed of the experiment's choices (noise is the nodes' own)")
    p.add_argument("--out", type=Path, default=ROOT / "attacks" / "out", help="results, plots and work files")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--no-publish", action="store_true", help="leave SECURITY.md and docs/security/ alone")
    p.add_argument("--security", type=Path, default=ROOT / "SECURITY.md")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "security")
    args = p.parse_args(argv)
    if not data.available():
        print(f"the 1000 Genomes subset is missing: {data.VCF}", file=sys.stderr)
        return 2
    which = tuple(args.only or ATTACKS)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    seconds: dict[str, float] = {}
    results = run(which, QUICK if args.quick else FULL, args.seed, out / "work", seconds)
    publish = not (args.quick or args.no_publish)
    previous = args.docs / "results.json"
    if publish and args.only and previous.is_file():  # keep the published results of attacks not rerun
        before = json.loads(previous.read_text())
        kept = [r for r in before["results"] if r["attack"] not in which]
        results = kept + results
        seconds = {**{k: v for k, v in before.get("seconds_by_attack", {}).items() if k not in which}, **seconds}
    results.sort(key=lambda r: ATTACKS.index(r["attack"]))
    doc = {
        "commit": _commit(),
        "date": dt.datetime.now(tz=dt.UTC).strftime("%Y-%m-%d"),
        "mode": "quick" if args.quick else "full",
        "seed": args.seed,
        "seconds": time.monotonic() - t0,
        "seconds_by_attack": seconds,
        "policy": {k: str(shipped(k)) for k in POLICY if shipped(k) is not None},
        "results": results,
    }
    report.write_json(out / "results.json", doc)
    report.write_json(out / "differencing.json", report.differencing_points(results))
    images = [] if args.no_plots else report.plots(results, out)
    for r in results:
        print(
            f"{r['attack']:<13} {r.get('statistic', ''):<28.28} {r['setting']:<60.60} "
            + (
                f"AUC {r['auc']:.3f}  TPR@5%FPR {r['tpr_at_5pct_fpr']:.3f}"
                if "auc" in r
                else f"coverage {r['coverage']:.4f} of {r['n']}"
            )
        )
    if publish:
        args.docs.mkdir(parents=True, exist_ok=True)
        for f in (out / "results.json", out / "differencing.json", *images):
            shutil.copy(f, args.docs / f.name)
        rel = {p.stem.removeprefix("roc_"): str((args.docs / p.name).relative_to(args.security.parent)) for p in images}
        report.update_security(args.security, report.tables(doc, rel))
        print(f"published to {args.docs} and {args.security}")
    print(f"done in {time.monotonic() - t0:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
