"""Feedback on long work (ingest, synth): how far, how fast, how long still to go, on stderr.

On a terminal, one line redrawn in place at most every ``REDRAW_S`` (a bar, the percentage, the rate and the
ETA) and cleared when the work ends; anywhere else (a log file, a pipe, a supervisor), one plain line every
``interval`` seconds and one when the work ends (if it took long enough for one before), so that a job run
from a script or CI still says it is alive and when it will finish. Nothing is printed to stdout, which stays
the command's result. The rate (and so the ETA) counts from the first ``update``, not from the setup before it.

``update`` is cheap when nothing is due (one clock read and a comparison), so callers may call it per record.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import IO

DEFAULT_INTERVAL_S = 10.0
"""Seconds between two plain progress lines when stderr is not a terminal."""
REDRAW_S = 0.2
"""Seconds between two redraws of the terminal line."""


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def amount(n: float, unit: str) -> str:
    """``n`` in ``unit``: bytes as kB/MB/GB (decimal, like the rates), anything else as a plain count."""
    if unit != "bytes":
        return f"{n:,.0f} {unit}"
    for scale, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n:.0f} B"


class Progress:
    """Progress of one job of ``total`` units (``unit``: "bytes" or a plural noun such as "variants").

    ``stream`` defaults to stderr; ``tty`` overrides the terminal test (for tests); ``interval`` is the
    seconds between plain lines when not on a terminal."""

    def __init__(
        self,
        total: int,
        *,
        what: str = "",
        unit: str = "bytes",
        stream: IO[str] | None = None,
        interval: float = DEFAULT_INTERVAL_S,
        tty: bool | None = None,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.total = max(int(total), 1)
        self.what = what
        self.unit = unit
        self.interval = max(interval, 0.0) if not self.tty else REDRAW_S
        self.start = time.monotonic()
        self._due = self.start + self.interval
        self._rate_from: tuple[float, int] | None = None  # (time, done) of the first update: the rate's origin
        self._done = 0
        self._width = 0
        self._lines = 0
        self._finished = False

    def update(self, done: int, label: str = "") -> None:
        """``done`` units of ``total`` are done (``label``: what is being worked on, e.g. the file)."""
        self._done = done
        now = time.monotonic()
        if self._rate_from is None:  # the work proper starts now (opening files, reading the sheet came before)
            self._rate_from = (now, done)
            return
        if now < self._due:
            return
        self._due = now + self.interval
        t0, d0 = self._rate_from
        self._write(self.line(done, (done - d0) / (now - t0) if now > t0 else 0.0, label))

    def line(self, done: int, rate: float, label: str = "") -> str:
        """The progress line for ``done`` units at ``rate`` units a second (without terminal control)."""
        frac = min(max(done, 0) / self.total, 1.0)
        eta = (self.total - done) / rate if rate > 0 and done < self.total else None
        if self.unit == "bytes":
            of = f"{amount(done, self.unit)} of {amount(self.total, self.unit)}"
        else:
            of = f"{done:,} of {amount(self.total, self.unit)}"
        parts = [f"{frac:6.1%}", of]
        parts.append(f"{amount(rate, self.unit)}/s")
        parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA -")
        text = ", ".join(parts)
        if self.tty:
            bar = "#" * int(frac * 24)
            text = f"[{bar:<24}] {text}"
        head = f"{self.what}: " if self.what else ""
        tail = f" ({label[-40:]})" if label else ""
        return head + text + tail

    def done(self, done: int | None = None) -> None:
        """The work ended (``done`` units of it, if given): clear the terminal line, or print a last plain
        line with the amount and the time it took (only after an earlier line: a quick job prints nothing)."""
        if done is not None:
            self._done = done
        if self._finished:
            return
        self._finished = True
        elapsed = time.monotonic() - self.start
        if self.tty:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
            return
        if not self._lines:  # over before the first line was due: a quick job stays quiet
            return
        rate = self._done / elapsed if elapsed > 0 else 0.0
        head = f"{self.what}: " if self.what else ""
        self.stream.write(
            f"{head}done, {amount(self._done, self.unit)} in {duration(elapsed)} ({amount(rate, self.unit)}/s)\n"
        )
        self.stream.flush()

    def _write(self, text: str) -> None:
        self._lines += 1
        if self.tty:
            text = text[: _columns(self.stream) - 1]  # a wrapped line could not be redrawn in place
            pad = max(self._width - len(text), 0)
            self._width = max(self._width, len(text))
            self.stream.write("\r" + text + " " * pad)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def _columns(stream: IO[str]) -> int:
    """The terminal's width (100 when it reports none, as a fresh pty does)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 100
    return columns if columns > 20 else 100
