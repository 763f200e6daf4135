"""Run a command and measure its wall time and its own peak memory (the rusage os.wait4 returns)."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mib: float
    stdout: str


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """One run of ``cmd``; raises with the tail of its stderr if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()
    reader.join()
    _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves: its own rusage, not the children sum
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{b''.join(err_chunks).decode(errors='replace')[-2000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, out.decode())


def median_run(cmd: list[str], repeats: int, **kw: object) -> Run:
    runs = [run(cmd, **kw) for _ in range(repeats)]  # type: ignore[arg-type]
    return Run(statistics.median(r.seconds for r in runs), max(r.peak_rss_mib for r in runs), runs[-1].stdout)
