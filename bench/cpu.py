"""CPU time of a process or of one of its threads, from Linux's /proc (user + system time).

The kernel reports it in clock ticks (``SC_CLK_TCK``, 100 per second here): differences over a run of many
queries are exact to 10 ms in total, which is what a per-query figure divided out of them needs.
"""

from __future__ import annotations

import os

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def stat_cpu_seconds(stat: str) -> float:
    """utime + stime of a ``/proc/.../stat`` line, in seconds. The command name (field 2, in parentheses)
    may itself hold spaces and parentheses, so fields are counted from the last ``)``."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # fields 14 and 15 of proc(5), counted from 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used so far, all its threads (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        return stat_cpu_seconds(f.read())
