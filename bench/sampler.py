"""A sampling profiler for a running server process (there is no py-spy here): a daemon thread that reads
``sys._current_frames()`` every ``interval`` seconds and counts, per thread, the stack it found.

Start it in a server process without touching the server's code: put ``bench/sitecustomize`` on
``PYTHONPATH`` and set ``GENOGATE_SAMPLE_OUT`` to a file path, optionally ``GENOGATE_SAMPLE_MODULE`` (a
substring of ``sys.argv``, e.g. ``node.cli``, to sample only those processes; ``{pid}`` in the path is
replaced). At exit the process writes its stack counts there as JSON; ``python -m bench.sampler OUT...``
prints the top entries (self and inclusive, over the stacks that were doing work, not waiting).

Each stack is counted twice: once per sample (wall clock: a thread blocked in C, on a lock, an fsync or gRPC's
completion queue, is sampled too; the report drops stacks whose innermost frame is a known wait), and weighted
by the CPU time its thread used since the previous sample (``time.pthread_getcpuclockid``): the CPU profile,
in which waiting costs nothing.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path

_WAITS = (
    ("threading.py", "wait"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("queue.py", "get"),
    ("thread.py", "_worker"),  # concurrent.futures: blocked on its work queue
    ("_server.py", "_serve"),  # gRPC's completion-queue poll
    ("_server.py", "_wait_for_shutdown"),
    ("selectors.py", "select"),
    ("socketserver.py", "serve_forever"),
    ("sampler.py", "_run"),
)


class Sampler:
    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.cpu_ns: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._last_cpu: dict[int, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = []
                f = frame
                while f is not None:
                    code = f.f_code
                    stack.append(f"{Path(code.co_filename).name}:{code.co_name}:{code.co_firstlineno}")
                    f = f.f_back  # type: ignore[assignment]
                key = tuple(stack)  # innermost first
                self.stacks[key] += 1
                try:
                    cpu = time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
                except OSError:  # the thread has exited
                    continue
                last = self._last_cpu.get(ident)
                self._last_cpu[ident] = cpu
                if last is not None:
                    self.cpu_ns[key] += cpu - last

    def dump(self, path: Path) -> None:
        rows = [[n, self.cpu_ns.get(s, 0), list(s)] for s, n in self.stacks.items()]
        path.write_text(json.dumps({"samples": self.samples, "interval": self.interval, "stacks": rows}))


def start_from_env() -> None:
    out = os.environ.get("GENOGATE_SAMPLE_OUT")
    module = os.environ.get("GENOGATE_SAMPLE_MODULE", "")
    if not out or (module and module not in " ".join(sys.orig_argv)):
        return
    sampler = Sampler(float(os.environ.get("GENOGATE_SAMPLE_INTERVAL", "0.002")))
    sampler.start()
    started = time.time()

    def finish() -> None:
        sampler.stop()
        if time.time() - started > 1:
            sampler.dump(Path(out.replace("{pid}", str(os.getpid()))))

    atexit.register(finish)


def _busy(stack: list[str]) -> bool:
    leaf = stack[0].split(":")
    return (leaf[0], leaf[1]) not in _WAITS


def report(paths: list[Path], top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    cpu_own: collections.Counter[str] = collections.Counter()
    cpu_inclusive: collections.Counter[str] = collections.Counter()
    busy = cpu = 0
    for p in paths:
        data = json.loads(p.read_text())
        for n, ns, stack in data["stacks"]:
            cpu += ns
            cpu_own[stack[0]] += ns
            for fn in set(stack):
                cpu_inclusive[fn] += ns
            if not _busy(stack):
                continue
            busy += n
            own[stack[0]] += n
            for fn in set(stack):
                inclusive[fn] += n

    def table(title: str, counts: collections.Counter[str], total: int, k: int) -> list[str]:
        return ["", title] + [f"{100 * n / max(total, 1):6.1f}%  {fn}" for fn, n in counts.most_common(k)]

    lines = [f"CPU: {cpu / 1e9:.1f} s; wall samples not waiting: {busy}"]
    lines += table("CPU, self:", cpu_own, cpu, top)
    lines += table("CPU, inclusive:", cpu_inclusive, cpu, 2 * top)
    lines += table("wall, self:", own, busy, top)
    lines += table("wall, inclusive:", inclusive, busy, top)
    return "\n".join(lines)


if __name__ == "__main__":
    print(report([Path(p) for p in sys.argv[1:]]))
