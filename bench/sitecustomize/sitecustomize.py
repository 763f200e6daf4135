"""Starts ``bench.profiled``'s sampler in a process whose environment asks for it (``GENOGATE_SAMPLE_OUT``; see
``bench.profiled.start_from_env``). Its modules are loaded by path, from this checkout, so that the process
may run another checkout's code (an A/B against a baseline tree whose ``bench`` may differ or lack them)."""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if os.environ.get("GENOGATE_SAMPLE_OUT"):
    _bench = Path(__file__).resolve().parents[1]
    _load("bench.cpu", _bench / "cpu.py")  # what bench.profiled imports, from this checkout
    _load("_genogate_profiled", _bench / "profiled.py").start_from_env()
