"""The README's researcher examples run as written against the demo federation (``genogate-demo --up``):
every ``genogate query`` / ``genogate budget`` line of its "Asking every site at once" block, through a
shell, with the ``STUDY`` and ``GENOGATE_PROFILE`` the demo prints. A README example that the demo cannot
answer (an unknown contig, a variant spelled another way than the demo's stores) fails here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.processes import demo_up

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("### Asking every site at once", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", block)
    commands = [line.split("  #")[0].strip() for line in joined.splitlines()]
    return [c for c in commands if c.startswith(("genogate query", "genogate budget"))]


def test_the_readme_examples_run_against_the_demo(tmp_path: Path) -> None:
    commands = readme_commands()
    assert len(commands) >= 5 and any("chr9-" in c for c in commands)  # a UCSC spelling among them
    proc, out = demo_up(tmp_path / "demo", env=ENV)
    try:
        profile = re.search(r"export GENOGATE_PROFILE=(\S+)", out)
        study = re.search(r"export STUDY=(\S+)", out)
        assert profile and study, out
        env = {**ENV, "GENOGATE_PROFILE": profile.group(1), "STUDY": study.group(1)}
        for command in commands:
            argv = command.replace("genogate ", f"{sys.executable} -m genogate.cli ", 1)
            done = subprocess.run(argv, shell=True, capture_output=True, text=True, env=env, timeout=120, check=False)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            if "--json" in command:
                answer = json.loads(done.stdout)
                assert [s["status"] for s in answer["sites"]] == ["answered"] * 3, command
                assert {r["variant"] for r in answer["values"]} == {"5-117882594-T-A", "9-10707272-T-A"}
                assert answer["spellings"] == [{"typed": "chr9-10707272-T-A", "canonical": "9-10707272-T-A"}]
            elif command.startswith("genogate query"):
                assert "3 of 3 answered" in done.stdout, f"{command}\n{done.stdout}"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
