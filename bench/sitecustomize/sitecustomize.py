"""Starts ``bench/sampler.py`` in a process whose environment asks for it (``GENOGATE_SAMPLE_OUT``). Loaded
by path, so that the process may run another checkout's code (an A/B against a baseline tree)."""

import importlib.util
import os
from pathlib import Path

if os.environ.get("GENOGATE_SAMPLE_OUT"):
    _spec = importlib.util.spec_from_file_location("_genogate_sampler", Path(__file__).parents[1] / "sampler.py")
    assert _spec is not None and _spec.loader is not None
    _sampler = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_sampler)
    _sampler.start_from_env()
