"""Shell completion (``PROG completion bash``): the generated script, loaded into a real bash, completes
commands, subcommands, options and option values the way the parsers define them."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

BIN = Path(sys.executable).parent


@functools.cache
def _script(prog: str) -> str:
    return subprocess.run(
        [str(BIN / prog), "completion", "bash"], capture_output=True, text=True, timeout=60, check=True
    ).stdout


def _complete(prog: str, words: list[str], cwd: Path | None = None) -> list[str]:
    """What bash offers for the last of ``words`` (the word being typed; "" for a fresh one)."""
    script = _script(prog)
    fn = "_" + prog.replace("-", "_") + "_complete"
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in [prog, *words])
    driver = f'{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words)}; {fn}; printf "%s\\n" "${{COMPREPLY[@]}}"'
    out = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, timeout=60, check=True, cwd=cwd)
    return [line for line in out.stdout.splitlines() if line]


def test_top_level_commands() -> None:
    assert _complete("genogate-node", ["in"]) == ["ingest", "init"]
    assert {"ingest", "serve", "synth", "dev-ca", "completion"} <= set(_complete("genogate-node", [""]))
    assert _complete("genogate", ["bu"]) == ["budget"]


def test_subcommands_and_their_options() -> None:
    assert _complete("genogate-node", ["dev-ca", ""]) == ["init", "issue", "client"]
    assert _complete("genogate-node", ["dev-ca", "issue", "--c"]) == ["--ca", "--csr", "--client"]
    assert _complete("genogate", ["query", "allele-frequency", "--ep"]) == ["--epsilon"]
    assert _complete("genogate-coordinator", ["committee", "add", "--j"]) == ["--json"]
    assert "--config" in _complete("genogate-coordinator", ["committee", "add", ""])  # a leaf: its options


def test_option_values_choices_and_files(tmp_path: Path) -> None:
    assert _complete("genogate-node", ["freq", "--format", ""]) == ["tsv", "json"]
    assert _complete("genogate", ["study", "list", "--state", "ap"]) == ["approved"]
    (tmp_path / "cohort.vcf.gz").write_text("")
    assert _complete("genogate-node", ["ingest", "--vcf", "coh"], cwd=tmp_path) == ["cohort.vcf.gz"]


def test_an_option_value_is_not_taken_for_a_command() -> None:
    # "ingest" after --store is the store's name, so the command path is still "freq".
    assert _complete("genogate-node", ["freq", "--store", "ingest", "--reg"]) == ["--region"]
