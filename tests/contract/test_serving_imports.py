"""A serving node loads only what serving needs: importing ``node.app`` loads neither the ingest package
(``node.ingest``, which writes stores) nor cyvcf2 (htslib, the VCF/BCF reader). BED files of covered regions,
which a serving node may read, come from ``node.bed``. Checked in a fresh interpreter, whose ``sys.modules``
is what one import of ``node.app`` pulled in. The coordinator's status command does not load OpenDP (below)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = "import json, sys\nimport node.app\nprint(json.dumps(sorted(sys.modules)))\n"


def _loaded_by(probe: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_serving_node_loads_neither_the_ingest_package_nor_cyvcf2() -> None:
    loaded = _loaded_by(PROBE)
    assert "node.app" in loaded and "node.catalogue" in loaded and "node.bed" in loaded
    assert [m for m in loaded if m == "node.ingest" or m.startswith("node.ingest.")] == []
    assert [m for m in loaded if m == "cyvcf2" or m.startswith("cyvcf2.")] == []


def test_the_probe_sees_the_ingest_package_when_it_is_loaded() -> None:
    """The check above can fail: importing the ingest package does load it and cyvcf2."""
    loaded = _loaded_by(PROBE.replace("import node.app\n", "import node.app\nimport node.ingest\n"))
    assert "node.ingest" in loaded and "cyvcf2" in loaded


# The coordinator: ``genogate-coordinator status`` reads the state (``coordinator.state``, which checks
# proposals with ``coordinator.preview``) and must not pay for OpenDP (0.5 s), which only a preview's noise
# planning needs (``coordinator.preview._halfwidth`` imports it when it plans).

STATUS_PROBE = "import json, sys\nimport coordinator.status\nprint(json.dumps(sorted(sys.modules)))\n"


def test_the_coordinators_status_command_does_not_load_opendp() -> None:
    loaded = _loaded_by(STATUS_PROBE)
    assert "coordinator.status" in loaded and "coordinator.state" in loaded and "coordinator.preview" in loaded
    assert [m for m in loaded if m == "opendp" or m.startswith("opendp.")] == []


def test_the_probe_sees_opendp_once_a_preview_plans_noise() -> None:
    """The check above can fail: planning a preview's noise does load OpenDP."""
    plan = (
        "from decimal import Decimal\n"
        "from coordinator.preview import _halfwidth\n"
        "from genogate.query import Kind\n"
        "assert _halfwidth(Kind.COHORT_COUNT, Decimal(1)) is not None\n"
    )
    loaded = _loaded_by(STATUS_PROBE.replace("import coordinator.status\n", "import coordinator.status\n" + plan))
    assert "opendp" in loaded
