"""Start-up time of the command lines against ``python -c pass``, as ratios measured interleaved.

    python -m bench.startup [--repeats N] [--bin DIR ...] [--profile FILE --study ID] [--importtime]

Each case (``genogate --help``, ``genogate query cohort-count --help``, a real ``genogate query`` against a
running federation, ``genogate-node --help``, ``genogate-coordinator --help``) runs ``repeats`` times,
alternating with ``python -c pass`` (the same interpreter), so that the load on a shared machine hits both
alike; the result is each case's median wall time over the median of its interleaved ``python -c pass``.
With several ``--bin`` directories (e.g. an old checkout's ``.venv/bin`` and this one's) the cases of every
directory are interleaved too, so old and new are compared under the same load.

The real query needs a federation: ``--profile``/``--study`` name a running one; without them
``genogate-demo --up`` starts one in a temporary directory (stopped at the end). The query is the same each
time, so after the first run the sites answer from their stored release: no budget is spent, and the time is
the command's own (start-up, signing, one round trip through the coordinator and the sites, printing).

``--importtime N`` prints, for each case and ``--bin``, the number of modules imported, their total own import
time by group (ours, gRPC, protobuf, cryptography, the rest) and the N modules whose own import time is
largest (``python -X importtime``, the minimum of each over the repeats).

Every run reads compiled bytecode, as an installed package would (``PYTHONDONTWRITEBYTECODE`` is dropped and
``PYTHONPYCACHEPREFIX`` points at a directory of this run's own, filled by the warm-up runs; nothing is
written into the checkouts measured).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BIN = ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # argv[0] is a script name in the bin directory


def measure(cmd: Sequence[str], repeats: int, *, env: dict[str, str] | None = None) -> float:
    """The median wall time of ``repeats`` runs of ``cmd`` (seconds); a failing run raises."""
    return statistics.median(_once(cmd, env)[0] for _ in range(repeats))


def _once(cmd: Sequence[str], env: dict[str, str] | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process: user + system). Runs are sequential, so the growth of this
    process's children's rusage over one run is that run's own."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(list(cmd), capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode()[-1500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


@dataclass(frozen=True)
class Result:
    wall_s: float  # median wall time
    cpu_s: float  # median CPU time (user + system) of the command's process
    wall_ratio: float  # to the median of the python -c pass runs interleaved with it
    cpu_ratio: float


def against_python(
    cases: Sequence[Case], bins: Sequence[Path], repeats: int, *, env: dict[str, str] | None = None
) -> dict[tuple[Path, str], Result]:
    """Every case of every bin directory against ``python -c pass``, interleaved: each round runs ``python -c
    pass`` right before every case. Wall time is what a person waits; CPU time is steadier on a loaded machine
    (it leaves out the time other processes hold the cores). Every run reads compiled bytecode (``compiled``),
    written by one warm-up run of each command first."""
    with compiled(env) as env:
        return _against_python(cases, bins, repeats, env)


@contextmanager
def compiled(base: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """``base`` (default: this process's environment) for runs that read compiled bytecode, as an installed
    package has it: ``PYTHONDONTWRITEBYTECODE`` dropped and ``PYTHONPYCACHEPREFIX`` pointed at a directory of
    this run's own (kept as given when the caller set one already), so nothing is written into the checkouts
    measured. The bytecode is written by the first (warm-up) runs."""
    env = dict(os.environ if base is None else base)
    if env.get("PYTHONPYCACHEPREFIX") and "PYTHONDONTWRITEBYTECODE" not in env:
        yield env
        return
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="genogate-startup-pyc-") as pycache:
        env["PYTHONPYCACHEPREFIX"] = pycache
        yield env


def _against_python(
    cases: Sequence[Case], bins: Sequence[Path], repeats: int, env: dict[str, str]
) -> dict[tuple[Path, str], Result]:
    _once([str(bins[0] / "python"), "-c", "pass"], env)  # warm the page cache and the bytecode
    for case in cases:
        for b in bins:
            _once([str(b / case.argv[0]), *case.argv[1:]], env)
    times: dict[tuple[Path, str], list[tuple[float, float]]] = {}
    floors: dict[tuple[Path, str], list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for case in cases:
            for b in bins:
                floors.setdefault((b, case.name), []).append(_once([str(b / "python"), "-c", "pass"], env))
                times.setdefault((b, case.name), []).append(_once([str(b / case.argv[0]), *case.argv[1:]], env))
    out = {}
    for key, ts in times.items():
        wall, cpu = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        floor_wall, floor_cpu = (
            statistics.median(t[0] for t in floors[key]),
            statistics.median(t[1] for t in floors[key]),
        )
        out[key] = Result(wall, cpu, wall / floor_wall, cpu / floor_cpu)
    return out


def importtime_top(
    bin_dir: Path, case: Case, repeats: int, top: int, env: dict[str, str] | None = None
) -> list[tuple[str, int, int]]:
    """The ``top`` modules with the largest own import time (µs) in ``case``: (module, self, cumulative),
    each the minimum over ``repeats`` runs."""
    best: dict[str, tuple[int, int]] = {}
    line = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")
    for _ in range(repeats):
        cmd = [str(bin_dir / "python"), "-X", "importtime", str(bin_dir / case.argv[0]), *case.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        for m in line.finditer(done.stderr):
            own, cum, name = int(m[1]), int(m[2]), m[4]
            old = best.get(name)
            best[name] = (own, cum) if old is None else (min(old[0], own), min(old[1], cum))
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
    return [(name, own, cum) for name, (own, cum) in ranked[: top or None]]


GROUPS = (
    ("genogate (ours)", ("genogate", "genogate_demo", "node", "coordinator")),
    ("grpc (with asyncio, concurrent)", ("grpc", "asyncio", "concurrent", "_asyncio")),
    ("protobuf", ("google",)),
    ("cryptography", ("cryptography", "_cffi_backend")),
)


def by_group(rows: Sequence[tuple[str, int, int]]) -> list[tuple[str, int]]:
    """The own import times of ``rows`` summed by who imports them (the rest: the standard library and what
    the interpreter's start imports), µs."""
    out = dict.fromkeys([g for g, _ in GROUPS] + ["standard library and the rest"], 0)
    for name, own, _ in rows:
        group = next((g for g, roots in GROUPS if name.split(".")[0] in roots), "standard library and the rest")
        out[group] += own
    return list(out.items())


@contextmanager
def demo_federation(bin_dir: Path) -> Iterator[tuple[Path, str]]:
    """A running ``genogate-demo --up`` federation: (alice's profile, the study id); stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="genogate-startup-") as tmp:
        log = Path(tmp) / "demo.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(bin_dir / "genogate-demo"), "--up", str(Path(tmp) / "fed"), "--samples", "1500"]
                + ["--variants", "1000"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 300
            while "Press Ctrl-C" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"genogate-demo did not come up:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
            text = log.read_text()
            profile = re.search(r"export GENOGATE_PROFILE=(\S+)", text)
            study = re.search(r"export STUDY=(\S+)", text)
            assert profile is not None and study is not None, text[-2000:]
            yield Path(profile[1]), study[1]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cases(profile: Path | None, study: str) -> list[Case]:
    out = [
        Case("genogate --help", ("genogate", "--help")),
        Case("genogate query --help", ("genogate", "query", "--help")),
        Case("genogate query cohort-count --help", ("genogate", "query", "cohort-count", "--help")),
        Case("genogate-node --help", ("genogate-node", "--help")),
        Case("genogate-coordinator --help", ("genogate-coordinator", "--help")),
    ]
    if profile is not None:
        query = ("query", "cohort-count", "--study", study, "--where", "sex=F", "--epsilon", "0.25")
        out.append(Case("genogate query cohort-count (real)", ("genogate", "--profile", str(profile), *query)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="runs of each case (default: 15)")
    p.add_argument(
        "--bin", type=Path, action="append", help="a .venv/bin directory to measure (repeatable; default: this one)"
    )
    p.add_argument("--profile", type=Path, help="a running federation's researcher profile (else a demo is started)")
    p.add_argument("--study", default="", help="an approved study of that federation")
    p.add_argument("--no-query", action="store_true", help="skip the real query (no federation)")
    p.add_argument("--importtime", type=int, default=0, metavar="N", help="print the N slowest imports per case")
    args = p.parse_args(argv)
    bins = [b.resolve() for b in (args.bin or [DEFAULT_BIN])]

    def report(profile: Path | None, study: str, env: dict[str, str]) -> None:
        all_cases = cases(profile, study)  # warmed up by against_python (the first query stores the release)
        results = against_python(all_cases, bins, args.repeats, env=env)
        print(f"median of {args.repeats} runs each, interleaved with python -c pass; ratio = case / python -c pass")
        for b in bins:
            print(f"\n{b}\n{'case':40} {'wall':>8} {'ratio':>7} {'cpu':>8} {'ratio':>7}")
            for case in all_cases:
                r = results[(b, case.name)]
                print(
                    f"{case.name:40} {r.wall_s * 1000:>5.0f} ms {r.wall_ratio:>6.1f}x "
                    f"{r.cpu_s * 1000:>5.0f} ms {r.cpu_ratio:>6.1f}x"
                )
        if len(bins) > 1:
            print(f"\n{bins[0]} -> {bins[-1]}, ratios to python -c pass (wall; cpu)")
            for case in all_cases:
                old, new = results[(bins[0], case.name)], results[(bins[-1], case.name)]
                print(
                    f"{case.name:40} {old.wall_ratio:.1f}x -> {new.wall_ratio:.1f}x; "
                    f"{old.cpu_ratio:.1f}x -> {new.cpu_ratio:.1f}x"
                )
        floor = Case("python -c pass", ("python", "-c", "pass"))
        for case in [floor, *all_cases] if args.importtime else []:
            for b in bins:
                rows = importtime_top(b, case, min(args.repeats, 5), 0, env)
                total = sum(own for _, own, _ in rows)
                print(f"\n{case.name} ({b}): {len(rows)} modules, {total / 1000:.1f} ms of imports (own times, µs, ")
                print(f"min of {min(args.repeats, 5)} runs under -X importtime); by group: ", end="")
                print(", ".join(f"{g} {t / 1000:.1f} ms" for g, t in by_group(rows)))
                for name, own, cum in rows[: args.importtime]:
                    print(f"  {own:>7} {cum:>8}  {name}")

    # One bytecode directory for the whole run (``compiled``), --importtime included.
    with compiled({k: v for k, v in os.environ.items() if k != "GENOGATE_PROFILE"}) as env:
        if args.no_query:
            report(None, "", env)
        elif args.profile is not None:
            report(args.profile, args.study, env)
        else:
            with demo_federation(bins[-1]) as (profile, study):
                report(profile, study, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
