"""A refused query takes the same time whether or not the node holds its variants (issue 13: the timing oracle).

The audit's attack: exhaust a study's budget, then time refusals. When the node looked up and read a query's
rows before its ledger decided, a refusal, which costs no ε, took longer for variants the node holds (AUC 0.90
from latency alone on the DuckDB path). Now every refusal is decided before the store is touched.

The test times refused allele-frequency queries of 200 held variants and of 200 absent ones (the same
positions with an ALT the store does not have, so both kinds of query are the same size and shape), on the
real 1000 Genomes subset, through both ways a node reads rows (DuckDB, and its in-memory copy), in a random
interleaved order, and compares the two latency samples with a Mann-Whitney U test. Against the code before
the fix (rows read while the ledger decided) the DuckDB case fails: z = 9.7, median 12.0 ms held vs 8.1 ms
absent.

False-failure rate: the order of held and absent queries is a random permutation, so when their latencies
do not depend on the data the labels are exchangeable and U follows its null distribution whatever the
machine's drift. The test fails at |z| > 5.5 (two-sided 3.8e-8 under the normal approximation to U; at 300
per group the approximation's error in that tail is far below the remaining margin to 1e-6 per path).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.errors import Reason, ResourceExhausted
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.nodeclient import envelope
from genogate.query import Variant
from genogate.signing import Signer
from node.backend import open_backend
from node.dp import OpenDPNoise
from node.ledger import Ledger
from node.memory import MemoryBackend
from node.service import Caller, QueryService
from node.store import Store
from tests.unit.test_service import POLICY as SERVICE_POLICY
from tests.unit.test_service import study

PER_GROUP = 300
VARIANTS_PER_QUERY = 200
Z_LIMIT = 5.5

POLICY = replace(  # a study's own budget is what runs out; nothing else limits the refused queries
    SERVICE_POLICY, min_reportable_count=10, max_variants_per_query=1000, rate_limit_per_study_per_minute=1_000_000
)


def mann_whitney_z(a: np.ndarray, b: np.ndarray) -> float:
    """The normal-approximation z of the Mann-Whitney U statistic of ``a`` vs ``b`` (mid-ranks for ties,
    with the tie correction of the variance)."""
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_vals = both[order]
    i = 0
    while i < len(both):  # mid-ranks of runs of equal values
        j = i
        while j + 1 < len(both) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n1, n2 = len(a), len(b)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ((counts**3 - counts).sum()) / (n * (n - 1)))
    return float((u - n1 * n2 / 2) / math.sqrt(var))


def test_mann_whitney_z_detects_a_shift_and_not_its_absence() -> None:
    """The statistic itself: a clear shift is found, two halves of one sample are not told apart."""
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0, 600)
    assert abs(mann_whitney_z(x[:300], x[300:])) < Z_LIMIT  # one sample: |z| > 5.5 has p < 4e-8
    assert mann_whitney_z(x[:300] + 1.0, x[300:]) > Z_LIMIT


def _variants(store: Path) -> tuple[list[list[Variant]], list[list[Variant]]]:
    """Query-sized lists of held biallelic SNVs, and the same positions with an ALT the store lacks."""
    s = Store.open(store)
    try:
        rows = s.variants(None)
    finally:
        s.close()
    held: dict[tuple[str, int], set[str]] = {}
    for i in range(len(rows)):
        held.setdefault((str(rows.chrom[i]), int(rows.pos[i])), set()).add(f"{rows.ref[i]}>{rows.alt[i]}")
    snvs = [v for v in (rows.variant(i) for i in range(len(rows))) if len(v.ref) == 1 and len(v.alt) == 1]
    rng = np.random.default_rng(13)
    picked = [snvs[i] for i in rng.choice(len(snvs), size=2 * PER_GROUP, replace=len(snvs) < 2 * PER_GROUP)]
    present, absent = [], []
    for q in range(PER_GROUP):
        chunk = [picked[(q * VARIANTS_PER_QUERY + j) % len(picked)] for j in range(VARIANTS_PER_QUERY)]
        present.append(chunk)
        missing = []
        for v in chunk:
            other = next(b for b in "ACGT" if b != v.ref and f"{v.ref}>{b}" not in held[(v.chrom, v.pos)])
            missing.append(Variant(v.chrom, v.pos, v.ref, other))
        absent.append(missing)
    return present, absent


@pytest.mark.parametrize("memory_mb", [0, 4096], ids=["rows-from-duckdb", "rows-from-memory"])
def test_refused_queries_take_the_same_time_for_held_and_absent_variants(
    subset_store: Path, tmp_path: Path, memory_mb: int
) -> None:
    present, absent = _variants(subset_store)
    svc = QueryService(
        name="site-a",
        backend=open_backend(subset_store, "auto", memory_mb),
        ledger=Ledger(tmp_path / "ledger.sqlite"),
        studies=lambda: {"S1": study("GRU", epsilon_total=Decimal("0.01"))},
        policy=POLICY,
        noise=OpenDPNoise(),
        signer=Signer(Ed25519PrivateKey.generate()),
    )
    try:
        assert isinstance(svc._backend, MemoryBackend) == (memory_mb > 0)
        caller = Caller("alice")
        spend_all = envelope(AlleleFrequency(tuple(present[0][:1])), study_id="S1", epsilon=0.01)
        svc.query(caller, spend_all.SerializeToString())  # the study's whole budget: every later query is refused
        payloads = {
            label: [
                envelope(AlleleFrequency(tuple(vs)), study_id="S1", epsilon=0.5).SerializeToString() for vs in group
            ]
            for label, group in (("held", present), ("absent", absent))
        }
        order = [("held", i) for i in range(PER_GROUP)] + [("absent", i) for i in range(PER_GROUP)]
        np.random.default_rng(7).shuffle(order)  # type: ignore[arg-type]
        timings: dict[str, list[float]] = {"held": [], "absent": []}
        for label, i in order:
            start = time.perf_counter()
            with pytest.raises(ResourceExhausted) as refused:
                svc.query(caller, payloads[label][i])
            timings[label].append(time.perf_counter() - start)
            assert refused.value.reason is Reason.BUDGET_EXHAUSTED
    finally:
        svc.close()
    z = mann_whitney_z(np.array(timings["held"]), np.array(timings["absent"]))
    assert abs(z) < Z_LIMIT, (
        f"refusals are distinguishable by latency (z = {z:.1f}; median held "
        f"{np.median(timings['held']) * 1e3:.2f} ms, absent {np.median(timings['absent']) * 1e3:.2f} ms)"
    )
