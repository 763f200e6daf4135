"""Times the node's in-process exact counting for one region and cohort (what a node query does:
the cohort mask from participants held in memory, the region's variants, the class counts)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path

from genogate.filter import parse_filter
from genogate.query import Region
from node.cohort import Cohorts
from node.freq import allele_counts
from node.store import Store


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--where", required=True)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    t_open = time.perf_counter()
    store = Store.open(args.store)
    open_ms = (time.perf_counter() - t_open) * 1e3
    cohorts = Cohorts(store)  # the node loads participants once, as a running node does
    where, year = parse_filter(args.where), dt.date.today().year
    region = Region.parse(args.region)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        mask = cohorts.mask(where, year)
        rows = store.variants(region)
        counts = store.class_counts(rows.vid, mask)
        ac, an = allele_counts(counts)
        times.append((time.perf_counter() - t0) * 1e3)
    keys = [f"{rows.chrom[i]}:{rows.pos[i]}:{rows.ref[i]}:{rows.alt[i]}" for i in range(len(rows))]
    print(
        json.dumps(
            {
                "open_ms": open_ms,
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "variants": len(rows),
                "cohort": int(mask.sum()),
                "counts": dict(zip(keys, zip(ac.tolist(), an.tolist(), strict=True), strict=True)),
            }
        )
    )


if __name__ == "__main__":
    main()
