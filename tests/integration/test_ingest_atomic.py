"""Ingest is idempotent, incremental, order-independent and atomic, through the real ``genogate-node``.

* Idempotent: the same files and sheet again change nothing, not even the store file's mtime.
* Incremental: adding a chromosome in a second run equals loading both at once.
* Order-independent: unsorted records and interleaved chromosomes give the same counts, listed in genomic
  order.
* Sheet updates change participants, never genotypes; a different sample set is refused.
* Atomic: an ingest killed with SIGKILL (the kill is triggered by what the process is doing, observed through
  its progress bar on a pseudo-terminal and the files it writes, never by a sleep) leaves no store, or the
  store exactly as it was; running it again completes.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.conftest import SUBSET, require_shared
from tests.integration.conftest import (
    BASE_RECORDS,
    CHRX_RECORDS,
    NEW_RECORDS,
    SHEET_ROWS,
    autosome_records,
    dir_state,
    freq,
    ingest,
    ingest_args,
    ingest_ok,
    kg_sheet,
    lock_name,
    many_records,
    node_env,
    sheet_text,
    vcf_text,
)

UP_TO_DATE = "already up to date; nothing changed"
CONTIG_RANK = {"X": 1_000_001, "Y": 1_000_002, "MT": 1_000_004}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def freq_rows(tsv: str) -> list[list[str]]:
    return [line.split("\t") for line in tsv.splitlines()[1:]]


def genomic_key(row: list[str]) -> tuple[int, str, int, str, str]:
    chrom = row[0]
    rank = int(chrom) if chrom.isdigit() else CONTIG_RANK.get(chrom, 2_000_000)
    return (rank, chrom, int(row[1]), row[2], row[3])


# Idempotence and increments ------------------------------------------------------------------------------


def test_same_files_and_sheet_again_change_nothing(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.mkdir()
    store = node / "store.duckdb"
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    sheet = write(tmp_path / "sheet.tsv", sheet_text())
    first = ingest_ok(store, [vcf], sheet, cwd=tmp_path)
    assert "inputs       1 loaded, 0 already in the store" in first
    counts = freq(store, cwd=tmp_path)
    state = dir_state(node)
    assert set(state) == {"store.duckdb", "pseudonym.key", lock_name(store)}

    time.sleep(0.01)  # a rewrite now would show in the mtime
    again = ingest_ok(store, [vcf], sheet, cwd=tmp_path)
    assert again.strip() == f"{store}: {UP_TO_DATE}"
    assert dir_state(node) == state  # store, key and lock: same bytes and same mtime_ns
    assert freq(store, cwd=tmp_path) == counts

    # The same content under another name is recognised by its SHA-256, not its path.
    copy = write(tmp_path / "renamed.vcf", vcf.read_text())
    assert UP_TO_DATE in ingest_ok(store, [copy], sheet, cwd=tmp_path)
    assert dir_state(node) == state


def _chr_file(d: Path, name: str, records: list[list[str]]) -> Path:
    return write(d / name, vcf_text(records))


@pytest.mark.parametrize("data", ["synthetic", "1kg"])
def test_adding_a_chromosome_later_equals_loading_both_at_once(tmp_path: Path, data: str) -> None:
    if data == "1kg":
        require_shared()
        first, second = SUBSET / "1KG_phase3_subset_chr22.vcf.gz", SUBSET / "1KG_phase3_subset_chr21.vcf.gz"
        sheet = kg_sheet(SUBSET / "1KG_phase3_subset_annot.tsv", tmp_path / "sheet.tsv")
    else:
        first = _chr_file(tmp_path, "chr2.vcf", NEW_RECORDS)  # the later chromosome first
        second = _chr_file(tmp_path, "chr1_x.vcf", BASE_RECORDS)
        sheet = write(tmp_path / "sheet.tsv", sheet_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    step, once = tmp_path / "a" / "store.duckdb", tmp_path / "b" / "store.duckdb"

    ingest_ok(step, [first], sheet, cwd=tmp_path)
    out = ingest_ok(step, [first, second], sheet, cwd=tmp_path)
    assert "inputs       1 loaded, 1 already in the store" in out
    ingest_ok(once, [second, first], sheet, cwd=tmp_path)

    assert freq(step, cwd=tmp_path, by="sex") == freq(once, cwd=tmp_path, by="sex")
    at_once = freq(once, cwd=tmp_path)
    assert freq(step, cwd=tmp_path) == at_once
    rows = freq_rows(at_once)
    assert rows == sorted(rows, key=genomic_key)
    assert len(rows) > (1000 if data == "1kg" else 10)


def test_unsorted_input_gives_the_same_counts_in_genomic_order(tmp_path: Path) -> None:
    ordered = [
        *autosome_records("2"),
        *autosome_records("10"),
        *many_records("11", 30),
        *CHRX_RECORDS,
    ]
    # Reverse within each chromosome and interleave the chromosomes.
    by_chrom: dict[str, list[list[str]]] = {}
    for r in ordered:
        by_chrom.setdefault(r[0], []).insert(0, r)
    shuffled = []
    while any(by_chrom.values()):
        for chrom in ("X", "11", "2", "10"):
            if by_chrom.get(chrom):
                shuffled.append(by_chrom[chrom].pop(0))
    assert shuffled != ordered and sorted(map(tuple, shuffled)) == sorted(map(tuple, ordered))
    contigs = ("2", "10", "11", "X")
    sheet = write(tmp_path / "sheet.tsv", sheet_text())
    stores = {}
    for name, records in (("sorted", ordered), ("unsorted", shuffled)):
        (tmp_path / name).mkdir()
        stores[name] = tmp_path / name / "store.duckdb"
        vcf = write(tmp_path / f"{name}.vcf", vcf_text(records, contigs=contigs))
        ingest_ok(stores[name], [vcf], sheet, cwd=tmp_path)
    a, b = freq(stores["sorted"], cwd=tmp_path), freq(stores["unsorted"], cwd=tmp_path)
    assert a == b
    rows = freq_rows(b)
    assert rows == sorted(rows, key=genomic_key)
    assert list(dict.fromkeys(r[0] for r in rows)) == ["2", "10", "11", "X"]  # natural, not lexical, order
    assert len(rows) == len(ordered) + 2  # the multi-allelic record of chr2 and of chr10 split in two
    # Variant ids follow genomic order too (a region is a contiguous id range).
    con = duckdb.connect(str(stores["unsorted"]), read_only=True)
    try:
        vids = con.execute("SELECT vid FROM variants ORDER BY contig_order, chrom, pos, ref, alt").fetchall()
    finally:
        con.close()
    assert [v[0] for v in vids] == list(range(len(vids)))


# Sheet updates -------------------------------------------------------------------------------------------


def _tables(store: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return {
            "variants": con.execute("SELECT * FROM variants ORDER BY vid").fetchall(),
            "calls": con.execute("SELECT * FROM calls ORDER BY vid, sid, cls").fetchall(),
            "dense": con.execute("SELECT * FROM dense ORDER BY vid, cls").fetchall(),
            "sources": con.execute("SELECT source_id, sha256, name FROM sources ORDER BY 1").fetchall(),
            "samples": con.execute("SELECT * FROM samples ORDER BY sid").fetchall(),
        }
    finally:
        con.close()


def test_sheet_update_changes_participants_not_genotypes(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.mkdir()
    store = node / "store.duckdb"
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    ingest_ok(store, [vcf], write(tmp_path / "sheet.tsv", sheet_text()), cwd=tmp_path)
    before = _tables(store)
    counts = freq(store, cwd=tmp_path)

    rows = [list(r) for r in SHEET_ROWS]
    rows[2][5] = "WITHDRAWN"  # S3 withdraws consent
    rows[3][2] = "1961"  # S4's birth year becomes known
    updated = write(tmp_path / "sheet_v2.tsv", sheet_text(rows))
    out = ingest_ok(store, [vcf], updated, cwd=tmp_path)
    assert "samples      4 (1 withdrawn)" in out
    assert "inputs       0 loaded, 1 already in the store" in out
    assert "sheet        participant details updated" in out

    after = _tables(store)
    for table in ("variants", "calls", "dense", "sources"):
        assert after[table] == before[table], table
    changed = [(b, a) for b, a in zip(before["samples"], after["samples"], strict=True) if a != b]
    assert len(changed) == 2
    assert sorted(str(a[6]) for _, a in changed) == [str(["GRU", "NPU"]), str(["WITHDRAWN"])]
    assert {a[3] for _, a in changed} == {1990, 1961}
    assert all(a[:2] == b[:2] for b, a in changed)  # same sid, same pseudonym
    assert freq(store, cwd=tmp_path) == counts  # the operator's exact counts cover every participant

    state = dir_state(node)
    assert UP_TO_DATE in ingest_ok(store, [vcf], updated, cwd=tmp_path)
    assert dir_state(node) == state


def _five_sample_inputs(d: Path) -> tuple[Path, Path]:
    samples = ("S1", "S2", "S3", "S4", "S5")
    vcf = write(d / "chr2_five.vcf", vcf_text([[*r, "0/1"] for r in NEW_RECORDS], samples=samples))
    sheet = write(d / "sheet_five.tsv", sheet_text([*SHEET_ROWS, ["S5", "F", "1970", "SAS", "", "GRU"]]))
    return vcf, sheet


def _store_with_base(tmp_path: Path) -> tuple[Path, Path]:
    node = tmp_path / "node"
    node.mkdir()
    store = node / "store.duckdb"
    ingest_ok(
        store,
        [write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))],
        write(tmp_path / "sheet.tsv", sheet_text()),
        cwd=tmp_path,
    )
    return node, store


def test_sheet_with_a_different_sample_set_is_refused(tmp_path: Path) -> None:
    node, store = _store_with_base(tmp_path)
    state, counts = dir_state(node), freq(store, cwd=tmp_path)
    vcf, sheet = _five_sample_inputs(tmp_path)
    res = ingest(store, [vcf], sheet, cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    msg = res.stderr.strip().splitlines()[-1]
    assert "the store holds 4 samples and the sheet 5" in msg
    assert "a store's sample set is fixed when it is created" in msg
    assert dir_state(node) == state
    assert freq(store, cwd=tmp_path) == counts


def test_refused_sample_set_names_the_sheet(tmp_path: Path) -> None:
    _, store = _store_with_base(tmp_path)
    vcf, sheet = _five_sample_inputs(tmp_path)
    res = ingest(store, [vcf], sheet, cwd=tmp_path)
    assert res.stderr.strip().splitlines()[-1].startswith(f"genogate-node: error: {sheet}: ")


# Kill mid-ingest -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cohort:
    """A generated VCF, its sheet, and the ``freq`` TSV it must give (computed from the genotypes)."""

    vcf: Path
    sheet: Path
    rows: list[str]


HEADER = "CHROM\tPOS\tREF\tALT\tAC\tAN\tHOM_REF\tHET\tHOM_ALT\tHEMI_REF\tHEMI_ALT\tNO_CALL"


def make_cohort(path: Path, n_samples: int, n_records: int, chrom: str, seed: int) -> Cohort:
    """A VCF of ``n_samples`` x ``n_records`` diploid calls, written fast with numpy."""
    rng = np.random.default_rng(seed)
    cells = np.frombuffer(b"0/0\t0/1\t1/1\t./.\t", dtype=np.uint8).reshape(4, 4)
    samples = [f"P{i:05d}" for i in range(n_samples)]
    rows = []
    with open(path, "wb") as fh:
        fh.write(vcf_text([], samples, contigs=(chrom,)).encode())
        for lo in range(0, n_records, 2000):
            n = min(2000, n_records - lo)
            g = rng.choice(4, size=(n, n_samples), p=[0.955, 0.03, 0.01, 0.005])
            body = cells[g].reshape(n, n_samples * 4)
            body[:, -1] = ord("\n")
            counts = np.stack([(g == k).sum(axis=1) for k in range(4)], axis=1)
            for i in range(n):
                pos = 1000 + 10 * (lo + i)
                fh.write(f"{chrom}\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT\t".encode() + body[i].tobytes())
                ref, het, hom, miss = (int(c) for c in counts[i])
                counts_row = (het + 2 * hom, 2 * (ref + het + hom), ref, het, hom, 0, 0, miss)
                rows.append("\t".join([chrom, str(pos), "A", "G", *map(str, counts_row)]))
    sheet = path.with_suffix(".tsv")
    sheet.write_text("sample_id\tsex\n" + "".join(f"{s}\t{'MF'[i % 2]}\n" for i, s in enumerate(samples)))
    return Cohort(path, sheet, rows)


def expected_freq(*cohorts: Cohort) -> str:
    rows = [r for c in cohorts for r in c.rows]
    rows.sort(key=lambda r: genomic_key(r.split("\t")))
    return HEADER + "\n" + "".join(r + "\n" for r in rows)


@dataclass
class Killed:
    returncode: int
    progress: float  # the last percentage its progress bar showed
    seen: list[str]  # the store directory's entries at the moment of the kill


def run_and_kill(
    args: list[object], watch: Path, when: Callable[[float, set[str]], bool], cwd: Path, timeout: float = 60
) -> Killed | None:
    """Run ``genogate-node ARGS`` with stderr on a pseudo-terminal (so it draws its progress bar) and
    SIGKILL it as soon as ``when(progress_percent, entries of watch)`` holds. None if it finished first."""
    master, slave = pty.openpty()
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "node.cli", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=node_env(),
            cwd=cwd,
        ) as proc:
            os.close(slave)
            slave = -1
            os.set_blocking(master, False)
            progress, tail = 0.0, ""
            deadline = time.monotonic() + timeout
            try:
                while proc.poll() is None:
                    assert time.monotonic() < deadline, "the ingest neither ended nor reached the kill point"
                    try:
                        tail = (tail + os.read(master, 65536).decode(errors="replace"))[-4096:]
                    except (BlockingIOError, OSError):
                        pass
                    found = re.findall(r"(\d+\.\d)%", tail)
                    if found:
                        progress = float(found[-1])
                    entries = {p.name for p in watch.iterdir()}
                    if when(progress, entries):
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        return Killed(proc.returncode, progress, sorted(entries))
                    time.sleep(0.001)
                return None
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def kill_part_way(
    make: Callable[[int], Cohort],
    args: Callable[[Cohort], list[object]],
    watch: Path,
    when: Callable[[float, set[str]], bool],
    cwd: Path,
    before: Callable[[], None],
) -> tuple[Cohort, Killed]:
    """Kill the ingest at ``when``; if it finished first, start over with twice the input (up to 3 times)."""
    for scale in (1, 2, 4):
        cohort = make(scale)
        before()
        killed = run_and_kill(args(cohort), watch, when, cwd)
        if killed is not None:
            assert killed.returncode == -signal.SIGKILL
            return cohort, killed
    pytest.fail("the ingest always finished before the kill point, even with 4x the input")


N_SAMPLES, N_RECORDS = 2000, 10000


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return make_cohort(tmp_path_factory.mktemp("small") / "chr2.vcf", N_SAMPLES, 200, "2", seed=7)


@pytest.fixture(scope="module")
def big_cohorts(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Cohort]:
    """The big chr1 cohort (same samples as ``small_cohort``), generated once per size."""
    made: dict[int, Cohort] = {}

    def make(scale: int) -> Cohort:
        if scale not in made:
            path = tmp_path_factory.mktemp(f"big{scale}") / "chr1.vcf"
            made[scale] = make_cohort(path, N_SAMPLES, N_RECORDS * scale, "1", seed=11)
        return made[scale]

    return make


@dataclass
class KilledNewStore:
    cohort: Cohort
    killed: Killed
    after_kill: list[str]
    rerun_stdout: str
    after_rerun: list[str]
    freq: str


@pytest.fixture(scope="module")
def killed_new_store(tmp_path_factory: pytest.TempPathFactory, big_cohorts: Callable[[int], Cohort]) -> KilledNewStore:
    """Build a new store, SIGKILL the ingest a third of the way through, then run it again."""
    d = tmp_path_factory.mktemp("killnew")
    node = d / "node"
    node.mkdir()
    store = node / "store.duckdb"

    def reset() -> None:
        shutil.rmtree(node)
        node.mkdir()

    def building(progress: float, entries: set[str]) -> bool:
        return progress >= 30 and any(e.startswith(".store.duckdb.ingest-") for e in entries)

    cohort, killed = kill_part_way(
        big_cohorts, lambda c: ingest_args(store, [c.vcf], c.sheet), node, building, d, reset
    )
    after_kill = sorted(p.name for p in node.iterdir())
    out = ingest_ok(store, [cohort.vcf], cohort.sheet, cwd=d)
    return KilledNewStore(cohort, killed, after_kill, out, sorted(p.name for p in node.iterdir()), freq(store, cwd=d))


def test_killed_new_store_leaves_no_store_and_a_rerun_completes(killed_new_store: KilledNewStore) -> None:
    k = killed_new_store
    tmp = [e for e in k.killed.seen if re.fullmatch(r"\.store\.duckdb\.ingest-\d+\.tmp", e)]
    assert tmp, f"no temporary build seen at the kill: {k.killed.seen}"
    assert 30 <= k.killed.progress < 100
    assert "store.duckdb" not in k.after_kill
    assert "inputs       1 loaded, 0 already in the store" in k.rerun_stdout
    assert "store.duckdb" in k.after_rerun
    assert k.freq == expected_freq(k.cohort)


def test_rerun_after_a_kill_cleans_up_the_temporary_build(killed_new_store: KilledNewStore) -> None:
    leftovers = [e for e in killed_new_store.after_rerun if ".ingest-" in e]
    assert not leftovers


@dataclass
class Baseline:
    """The existing store before the killed run: its ``freq`` output and file size."""

    freq: str = ""
    size: int = 0


@pytest.mark.parametrize("phase", ["reading", "writing"])
def test_killed_ingest_into_existing_store_leaves_it_as_it_was(
    phase: str, tmp_path: Path, small_cohort: Cohort, big_cohorts: Callable[[int], Cohort]
) -> None:
    """Add a big chr1 file to a store holding chr2 and kill the ingest: while it reads the file (inside its
    open write transaction), or once it has started writing uncommitted data into the store file."""
    node = tmp_path / "node"
    store = node / "store.duckdb"
    before = Baseline()

    def fresh_store() -> None:
        shutil.rmtree(node, ignore_errors=True)
        node.mkdir()
        ingest_ok(store, [small_cohort.vcf], small_cohort.sheet, cwd=tmp_path)
        before.freq, before.size = freq(store, cwd=tmp_path), store.stat().st_size

    def reading(progress: float, entries: set[str]) -> bool:
        return progress >= 30

    def writing(progress: float, entries: set[str]) -> bool:
        # Uncommitted row groups go straight into the file; the WAL appears only at COMMIT.
        return store.stat().st_size > before.size and "store.duckdb.wal" not in entries

    cohort, killed = kill_part_way(
        big_cohorts,
        lambda c: ingest_args(store, [c.vcf], small_cohort.sheet),
        node,
        reading if phase == "reading" else writing,
        tmp_path,
        fresh_store,
    )
    assert before.freq == expected_freq(small_cohort)
    assert not any(".ingest-" in e for e in killed.seen)  # an existing store is changed in place
    if phase == "reading":
        assert 30 <= killed.progress < 100
    else:
        assert store.stat().st_size > before.size  # uncommitted data had reached the file
    assert freq(store, cwd=tmp_path) == before.freq  # the store opens and holds exactly what it held

    out = ingest_ok(store, [small_cohort.vcf, cohort.vcf], small_cohort.sheet, cwd=tmp_path)
    assert "inputs       1 loaded, 1 already in the store" in out
    assert freq(store, cwd=tmp_path) == expected_freq(cohort, small_cohort)
    assert UP_TO_DATE in ingest_ok(store, [cohort.vcf], small_cohort.sheet, cwd=tmp_path)
