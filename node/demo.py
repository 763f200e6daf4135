"""``make demo`` (first stage): a synthetic cohort, loaded into a node store, asked real questions.

Generates a cohort with a planted case/control association, ingests its VCF and sample sheet into a node
store, and prints exact allele frequencies of the planted variants in cases and controls, as the node
operator would check them. The federated, differentially private demo grows from this one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from genogate.filter import parse_filter
from genogate.query import Variant
from node.freq import allele_counts
from node.ingest import ingest
from node.planner import compile_filter
from node.store import Store
from node.synth import SynthSpec, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="genogate-demo", description=__doc__)
    p.add_argument("--dir", type=Path, default=Path("demo"))
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--variants", type=int, default=20000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    out: Path = args.dir
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.monotonic()
    spec = SynthSpec(samples=args.samples, variants=args.variants, seed=args.seed)
    paths = run(out / "cohort", spec)
    print(
        f"1. generated {spec.samples} participants x {spec.variants} variants -> {paths['vcf']} "
        f"({time.monotonic() - t0:.1f} s)"
    )

    store_path = out / "node" / "store.duckdb"
    store_path.parent.mkdir()
    summary = ingest(store_path, [paths["vcf"]], paths["samples"])
    print(f"2. ingested into {store_path} ({summary.alleles} alleles, {summary.seconds:.1f} s)")

    truth = json.loads(paths["truth"].read_text())
    case = truth["case_phenotype"]
    planted = [Variant.parse(v) for v in truth["planted_variants"]]
    store = Store.open(store_path)
    try:
        print(f"3. exact allele frequencies of the planted variants, cases ({case}) vs controls:\n")
        cols = "".join(f"{c:>9}" for c in ("AC case", "AN case", "AF case", "AC ctrl", "AN ctrl", "AF ctrl"))
        header = f"   {'variant':<24}{cols}"
        print(header)
        print("   " + "-" * (len(header) - 3))
        masks = []
        for where in (f"phenotype={case}", f"not phenotype={case}"):
            sql, params = compile_filter(parse_filter(where), time.localtime().tm_year)
            masks.append(store.cohort_mask(sql, params))
        vids = store.lookup(planted)
        stats = [allele_counts(store.class_counts(vids, m)) for m in masks]
        for i, v in enumerate(planted):
            cells = []
            for ac, an in stats:
                cells.append(f"{ac[i]:>9}{an[i]:>9}{ac[i] / max(an[i], 1):>9.4f}")
            print(f"   {v!s:<24}{''.join(cells)}")
        print(f"\n   cohort sizes: {int(masks[0].sum())} cases, {int(masks[1].sum())} controls")
    finally:
        store.close()
    print(
        f"\ndone in {time.monotonic() - t0:.1f} s. Try: .venv/bin/genogate-node freq --store {store_path} "
        f"--by ancestry --region chr1:1-5000000"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
