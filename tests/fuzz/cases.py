"""Counting fuzz cases per surface (the brief of issue 13 asks for a recorded number of cases each ran).

Every fuzz test calls ``record(surface)`` once per generated case; ``tests/fuzz/conftest.py`` prints the
totals at the end of the run and, when ``GENOGATE_FUZZ_SUMMARY`` names a file, writes them there as JSON.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

LONG = os.environ.get("GENOGATE_FUZZ", "") == "long"
"""``GENOGATE_FUZZ=long`` (``make fuzz``): at least 10,000 cases per surface. Otherwise a small sample."""

SURFACES = ("filter", "variant-region", "signature", "rpc-node", "rpc-coordinator", "ingest-vcf", "ingest-sheet")

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def record(surface: str) -> None:
    if surface not in SURFACES:
        raise AssertionError(f"unknown fuzz surface {surface!r}")
    with _lock:
        _counts[surface] += 1
        if sum(_counts.values()) % 500 == 0:  # a long run stopped early still leaves its counts
            write_summary()


def write_summary() -> None:
    """The counts so far, as JSON, to ``GENOGATE_FUZZ_SUMMARY`` when it names a file."""
    target = os.environ.get("GENOGATE_FUZZ_SUMMARY")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        ran = {s: _counts[s] for s in SURFACES if _counts[s]}
        Path(target).write_text(json.dumps({"mode": "long" if LONG else "sample", "cases": ran}, indent=2) + "\n")


def counts() -> dict[str, int]:
    with _lock:
        return {s: _counts[s] for s in SURFACES if _counts[s]}


def fuzz(sample: int, *, deadline_s: float) -> settings:
    """Hypothesis settings for one fuzz test: ``sample`` cases normally, 10,000 in the long run.

    ``deadline_s`` is a hang guard per case, not a performance claim: generous enough for two busy shared
    cores, so a case that exceeds it is stuck, not slow."""
    return settings(
        settings.get_profile("fuzz-long" if LONG else "fuzz-sample"),
        max_examples=10_000 if LONG else sample,
        deadline=deadline_s * 1000,
    )


_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example, HealthCheck.filter_too_much]
settings.register_profile("fuzz-sample", suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("fuzz-long", suppress_health_check=_QUIET, print_blob=True, database=None)
