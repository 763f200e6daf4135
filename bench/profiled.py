"""Run a Python program under a sampling profiler that weighs each sample by the CPU its thread used.

    python -m bench.profiled OUT.json [--interval-ms 2] -- -m coordinator.cli serve --config coord.toml
    python -m bench.profiled OUT.json -- script.py ARGS...

The target runs in this process (``runpy``, as ``python -m``/``python script.py`` would run it) beside one
daemon sampling thread. Every ``--interval-ms`` the sampler takes every thread's Python stack
(``sys._current_frames``) and reads each thread's CPU time by its native id (``time.thread_time`` measures
only its caller): from Linux's per-thread CPU clock, in nanoseconds, or else from
``/proc/self/task/<tid>/stat``, in 10 ms ticks. An idle thread (waiting on a lock, a socket, a condition)
weighs nothing, however many samples catch it.

Which stacks were on CPU: the sampler holds the GIL while it looks, so a thread running Python is then
waiting for the GIL, as still as an idle one. So right after looking the sampler lets go of the GIL for
``PROBE_S`` (1 ms) and reads the clocks again: a thread whose CPU clock moved meanwhile was running (or
ready to), one whose clock stood still was blocked, and its stack is not credited. The CPU a thread used
between two samples is credited to the stacks at the two ends that were on CPU, half each; work done and
finished between two samples, seen at neither end, is reported as such (``UNSEEN``; sample more often to
see more of it) rather than credited to the wait the thread returned to. Stacks whose leaf is one of the
standard library's waits (``WAITS``: an executor's idle worker, a condition, a queue, a selector) are never
credited, even when the thread woke during the probe. While profiling, the GIL's switch interval is 0.5 ms
(``SWITCH_INTERVAL_S``). C code called from Python (gRPC's Cython, DuckDB, OpenDP) counts as its Python
caller's self time; threads that run no Python (gRPC's C threads) appear, with their CPU, under
``native_threads``. Cost: four threads of GIL-bound work used 1.03-1.28x the CPU under the profiler
(interleaved runs on this two-core machine).

On SIGTERM or SIGINT (when the target installs no handler of its own, the program then exits 143 / 130),
on SIGUSR1 (write and keep going) and when the target ends, OUT.json is written atomically: the number of
samples, CPU seconds of the process and the part attributed to Python stacks, the top functions by self
and inclusive CPU (``file:function``), per Python thread (by name) and per native thread (by its kernel
name). SIGUSR2 forgets everything sampled so far (the caller's warm-up).

Threading model: the sampler thread only reads (frames, clocks, /proc) and updates its own tables under one
lock, which the writer also takes; the target's threads are never paused.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import sysconfig
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from bench.cpu import stat_cpu_seconds

TOP = 50  # functions kept in each table of OUT.json
# The sampler needs the GIL to look at the stacks. Under Python's default 5 ms switch interval a thread running
# Python keeps the GIL until it blocks, so the sampler would see threads mostly where they release it (at the
# end of each burst of work): 0.5 ms lets it look within bursts. (More switches among the target's own busy
# threads: a small cost, the same for every run profiled.)
SWITCH_INTERVAL_S = 0.0005
# Shown relative to where they were found, longest first: site-packages lies inside the standard library's path.
_PREFIXES = tuple(
    sorted(
        {p.rstrip("/") + "/" for p in sys.path if p.endswith("-packages")} | {sysconfig.get_paths()["stdlib"] + "/"},
        key=len,
        reverse=True,
    )
)


def _label(code: CodeType, cache: dict[CodeType, str]) -> str:
    label = cache.get(code)
    if label is None:
        path = code.co_filename
        for prefix in _PREFIXES:
            if path.startswith(prefix):
                path = path[len(prefix) :]
                break
        else:
            cwd = os.getcwd() + "/"
            path = path[len(cwd) :] if path.startswith(cwd) else path
        label = cache[code] = f"{path}:{code.co_qualname}"
    return label


def _thread_clock(tid: int) -> int:
    """The clock id of Linux's CPU clock of thread ``tid`` of this process (``MAKE_THREAD_CPUCLOCK(tid,
    CPUCLOCK_SCHED)``): unlike ``pthread_getcpuclockid``, the kernel checks the id, so a thread that has ended
    is an ``OSError``, never a read of freed memory."""
    return ((~tid) << 3) | 6


def _thread_cpu_seconds(tid: int) -> float | None:
    """CPU seconds of thread ``tid`` of this process; None once it has ended."""
    try:
        return time.clock_gettime(_thread_clock(tid))
    except OSError:
        pass
    try:  # a kernel without per-thread clocks by id
        with open(f"/proc/self/task/{tid}/stat") as f:
            return stat_cpu_seconds(f.read())
    except OSError:
        return None


UNSEEN = "(ran and stopped between two samples)"


@dataclass(frozen=True)
class _Stack:
    leaf: str
    labels: frozenset[str]


# Python functions whose own time is a blocking wait in C (a queue, a condition, a selector): a thread found in
# one is waiting, whatever CPU it used around it (the limit above), so such a stack is never credited.
WAITS = (
    "concurrent/futures/thread.py:_worker",
    "threading.py:Condition.wait",
    "threading.py:Thread._wait_for_tstate_lock",
    "queue.py:Queue.get",
    "selectors.py:EpollSelector.select",
    "selectors.py:PollSelector.select",
    "selectors.py:SelectSelector.select",
)


_IDLE = _Stack("", frozenset())  # a thread off CPU, or in one of ``WAITS``: never credited
PROBE_S = 0.001


@dataclass
class Profile:
    interval_s: float
    started: float = field(default_factory=time.monotonic)
    samples: int = 0  # sampling rounds
    stacks: int = 0  # thread stacks seen (several per round)
    unweighted: int = 0  # stacks of threads whose CPU could not be read
    self_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # function -> CPU s
    incl_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    self_hits: Counter[str] = field(default_factory=Counter)  # function -> weighted samples it was the leaf of
    incl_hits: Counter[str] = field(default_factory=Counter)  # function -> weighted samples it was in
    thread_cpu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    thread_hits: Counter[str] = field(default_factory=Counter)
    process_cpu0: float = 0.0


def _process_cpu() -> float:
    with open("/proc/self/stat") as f:
        return stat_cpu_seconds(f.read())


def _native_threads() -> list[dict[str, Any]]:
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                line = f.read()
        except OSError:
            continue
        name = line[line.index("(") + 1 : line.rindex(")")]
        out.append({"tid": int(tid), "name": name, "cpu_s": round(stat_cpu_seconds(line), 3)})
    return sorted(out, key=lambda t: -t["cpu_s"])


class Sampler:
    def __init__(self, out: Path, interval_s: float, target: list[str]) -> None:
        self.out = out
        self.target = target
        self._lock = threading.RLock()  # the signal handlers write from the main thread, maybe inside a write
        self._profile = Profile(interval_s, process_cpu0=_process_cpu())
        self._cpu: dict[int, float] = {}  # native id -> CPU seconds at its previous sample
        self._previous: dict[int, _Stack] = {}  # native id -> its stack at the previous sample (_IDLE: off CPU)
        self._labels: dict[CodeType, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench.profiled", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self._profile = Profile(self._profile.interval_s, process_cpu0=_process_cpu())

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(max(0.0, self._profile.interval_s - PROBE_S)):
            frames = sys._current_frames()
            threads = {t.ident: t for t in threading.enumerate()}
            tids = {i: t.native_id for i, t in threads.items() if i in frames and i != me and t.native_id is not None}
            at = {i: _thread_cpu_seconds(tid) for i, tid in tids.items()}
            time.sleep(PROBE_S)  # without the GIL: whoever was running, or waiting for the GIL, runs now
            later = {i: _thread_cpu_seconds(tid) for i, tid in tids.items()}
            with self._lock:
                self._sample(frames, threads, me, at, later)

    def _stack(self, frame: FrameType) -> _Stack:
        labels = self._labels
        leaf = _label(frame.f_code, labels)
        if leaf.endswith(WAITS):
            return _IDLE
        seen = set()
        f: FrameType | None = frame
        while f is not None:
            seen.add(_label(f.f_code, labels))
            f = f.f_back
        return _Stack(leaf, frozenset(seen))

    def _sample(
        self,
        frames: dict[int, FrameType],
        threads: dict[int | None, threading.Thread],
        me: int,
        at: dict[int, float | None],
        later: dict[int, float | None],
    ) -> None:
        p = self._profile
        p.samples += 1
        alive = set()
        for ident, frame in frames.items():
            if ident == me:
                continue
            thread = threads.get(ident)
            name = thread.name if thread is not None else f"thread-{ident}"
            now, then = at.get(ident), later.get(ident)
            p.stacks += 1
            p.thread_hits[name] += 1
            if thread is None or thread.native_id is None or now is None:
                p.unweighted += 1
                continue
            tid = thread.native_id
            alive.add(tid)
            delta = max(0.0, now - self._cpu.get(tid, now))
            self._cpu[tid] = now
            p.thread_cpu[name] += delta
            stack = self._stack(frame) if then is not None and then > now else _IDLE
            self._credit(delta, self._previous.get(tid, _IDLE), stack)
            self._previous[tid] = stack
        for tid in set(self._cpu) - alive:
            del self._cpu[tid]
            self._previous.pop(tid, None)

    def _credit(self, delta: float, before: _Stack, now: _Stack) -> None:
        """Credit ``delta`` (CPU a thread used between two samples) to the ends that were on CPU, half each."""
        if delta <= 0:
            return
        ends = [s for s in (before, now) if s is not _IDLE]
        p = self._profile
        if not ends:
            p.self_cpu[UNSEEN] += delta
            p.self_hits[UNSEEN] += 1
            return
        share = delta / len(ends)
        for s in ends:
            p.self_cpu[s.leaf] += share
            p.self_hits[s.leaf] += 1
            for label in s.labels:
                p.incl_cpu[label] += share
                p.incl_hits[label] += 1

    def report(self) -> dict[str, Any]:
        with self._lock:
            p = self._profile
            attributed = sum(p.self_cpu.values())

            def table(cpu: dict[str, float], hits: Counter[str]) -> list[dict[str, Any]]:
                return [
                    {
                        "function": fn,
                        "cpu_s": round(w, 4),
                        "percent": round(100 * w / attributed, 2) if attributed else 0.0,
                        "samples": hits[fn],
                    }
                    for fn, w in sorted(cpu.items(), key=lambda kv: -kv[1])[:TOP]
                ]

            return {
                "target": self.target,
                "interval_ms": p.interval_s * 1e3,
                "seconds": round(time.monotonic() - p.started, 3),
                "samples": p.samples,
                "stacks": p.stacks,
                "unweighted_stacks": p.unweighted,
                "cpu_s": {"process": round(_process_cpu() - p.process_cpu0, 3), "attributed": round(attributed, 3)},
                "self": table(p.self_cpu, p.self_hits),
                "inclusive": table(p.incl_cpu, p.incl_hits),
                "threads": [
                    {"name": n, "samples": p.thread_hits[n], "cpu_s": round(p.thread_cpu.get(n, 0.0), 3)}
                    for n in sorted(p.thread_hits, key=lambda n: -p.thread_cpu.get(n, 0.0))
                ],
                "native_threads": _native_threads(),
            }

    def write(self) -> None:
        data = json.dumps(self.report(), indent=1)
        tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        tmp.write_text(data)
        os.replace(tmp, self.out)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=1)


def start_from_env() -> None:
    """Profile this process, from its start to its exit, when its environment asks for it: for servers another
    program starts (``bench/sitecustomize`` calls this; ``bench.node_profile`` profiles the demo's nodes so).
    ``GENOGATE_SAMPLE_OUT`` is the output path (``{pid}`` replaced by the process id);
    ``GENOGATE_SAMPLE_MODULE``, when set, a substring of the command line that a process must contain to be
    profiled (e.g. ``node.cli``); ``GENOGATE_SAMPLE_INTERVAL_MS`` the interval (default 2). Written at exit
    and on SIGUSR1 (as ``main`` does; SIGUSR2 resets), only by a process that ran for over a second."""
    import atexit

    out = os.environ.get("GENOGATE_SAMPLE_OUT")
    module = os.environ.get("GENOGATE_SAMPLE_MODULE", "")
    if not out or (module and module not in " ".join(sys.orig_argv)):
        return
    interval_s = float(os.environ.get("GENOGATE_SAMPLE_INTERVAL_MS", "2")) / 1e3
    sampler = Sampler(Path(out.replace("{pid}", str(os.getpid()))).resolve(), interval_s, list(sys.orig_argv))
    started = time.monotonic()
    signal.signal(signal.SIGUSR1, lambda *_: sampler.write())
    signal.signal(signal.SIGUSR2, lambda *_: sampler.reset())
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    sampler.start()

    def finish() -> None:
        sampler.stop()
        if time.monotonic() - started > 1:
            sampler.write()

    atexit.register(finish)


def merged(paths: Sequence[Path], top: int = 25) -> list[tuple[str, float, float]]:
    """The ``top`` functions by self CPU over several profiles (e.g. every node of a federation), each
    profile's rows weighted by its CPU seconds: (function, self %, inclusive %) of all their attributed CPU."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0.0
    for path in paths:
        data = json.loads(Path(path).read_text())
        total += data["cpu_s"]["attributed"]
        mine = {row["function"]: row["cpu_s"] for row in data["self"]}
        theirs = {row["function"]: row["cpu_s"] for row in data["inclusive"]}
        for fn in mine.keys() | theirs.keys():
            # Each table holds its top rows only: a function missing from one is counted at what the other
            # says (inclusive is at least self), so a merged inclusive never falls below the merged self.
            own[fn] += mine.get(fn, 0.0)
            inclusive[fn] += max(theirs.get(fn, 0.0), mine.get(fn, 0.0))
    total = total or 1.0
    return [(fn, 100 * w / total, 100 * inclusive[fn] / total) for fn, w in own.most_common(top) if w > 0]


def summarize(path: Path, top: int = 15) -> list[tuple[str, float, float]]:
    """The ``top`` functions of a profile by self CPU: (function, self %, inclusive %), percentages of the CPU
    attributed to Python stacks."""
    data = json.loads(Path(path).read_text())
    inclusive = {row["function"]: row["percent"] for row in data["inclusive"]}
    return [
        (row["function"], row["percent"], inclusive.get(row["function"], row["percent"])) for row in data["self"][:top]
    ]


def _parse(argv: list[str]) -> tuple[Path, float, list[str]]:
    usage = "usage: python -m bench.profiled OUT.json [--interval-ms MS] -- (-m MODULE | -c CODE | SCRIPT) [ARGS...]"
    if "--" not in argv:
        raise SystemExit(usage)
    split = argv.index("--")
    head, target = argv[:split], argv[split + 1 :]
    interval_ms = 2.0
    if len(head) == 3 and head[1] == "--interval-ms":
        interval_ms = float(head[2])
    elif len(head) != 1:
        raise SystemExit(usage)
    if not target or (target[0] in ("-m", "-c") and len(target) < 2):
        raise SystemExit(usage)
    return Path(head[0]), interval_ms / 1e3, target


def _run_target(target: list[str]) -> None:
    if target[0] == "-m":
        sys.argv = [target[1], *target[2:]]
        runpy.run_module(target[1], run_name="__main__", alter_sys=True)
    elif target[0] == "-c":
        sys.argv = ["-c", *target[2:]]
        exec(compile(target[1], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 - the user's own code
    else:
        script = os.path.abspath(target[0])
        sys.argv = [target[0], *target[1:]]
        sys.path[0] = os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")


def main(argv: list[str] | None = None) -> None:
    out, interval_s, target = _parse(sys.argv[1:] if argv is None else argv)
    sampler = Sampler(out.resolve(), interval_s, target)

    def on_signal(signum: int, frame: object) -> None:
        sampler.write()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)  # a target that installs its own handler ends normally; see below
    signal.signal(signal.SIGUSR1, lambda *_: sampler.write())
    signal.signal(signal.SIGUSR2, lambda *_: sampler.reset())
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    sampler.start()
    try:
        _run_target(target)
    finally:
        sampler.stop()
        sampler.write()


if __name__ == "__main__":
    main()
