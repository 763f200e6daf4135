"""Fuzzing kept in the suite (issue 13, item 10): Hypothesis profiles and the per-surface case count.

``make test`` runs a small sample of every surface; ``make fuzz`` (``GENOGATE_FUZZ=long``) runs at least
10,000 cases per surface. Either way the number of cases each surface ran is printed at the end and, with
``GENOGATE_FUZZ_SUMMARY=FILE``, written to FILE as JSON.
"""

from __future__ import annotations

import pytest

from tests.fuzz.cases import LONG, counts, write_summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ran = counts()
    if not ran:
        return
    mode = "long" if LONG else "sample"
    terminalreporter.write_line(f"fuzz cases ({mode}): " + ", ".join(f"{surface}={n}" for surface, n in ran.items()))
    write_summary()
