"""A disk that can fill up, for tests of full-disk behaviour: a small tmpfs mounted for the test (needs root;
the test is skipped where it cannot mount one)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def mount_tmpfs(path: Path, size: str) -> None:
    """Create ``path`` and mount a tmpfs of ``size`` (e.g. ``"24m"``) on it, or skip the test; the caller
    unmounts it (``umount -l``)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that can fill up) needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
