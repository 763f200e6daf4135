"""A second institution joins the running demo federation by following the README alone.

The README section "Add a node to an existing federation" is parsed and its fenced ``sh`` blocks run
**literally**, each through ``bash`` in the working directory of the side its bold label names:

- ``**Coordinator operator**``: a directory holding ``coord`` (the demo's coordinator directory) and ``ca``
  (the demo's development CA), with ``GENOGATE_PROFILE`` the demo operator's profile;
- ``**New institution**``: a directory of its own that starts with nothing but its own data
  (``cohort.vcf.gz`` and ``samples.tsv``, a synthetic cohort) and receives only what ``EXCHANGED`` lists.

What is substituted, and nothing else: the section's shell variables (``COMMITTEE_KEY`` and
``COORDINATOR_CN`` as step 1's command printed them, ``COORDINATOR`` the demo coordinator's address,
``NODE_LISTEN``/``NODE_ENDPOINT`` a free loopback port, ``GENOGATE_PROFILE``); ``genogate``,
``genogate-node`` and ``genogate-coordinator`` on ``PATH`` run this checkout; and a ``genogate-node serve``
line, which runs until stopped, is started as a server process (``tests.processes.start_node``) instead
of being waited for. Then, as the demo's researcher and committee, a study naming the new site is proposed
and approved, and a federated query is answered by all four sites; the node is restarted and answers again
at the same endpoint. If the README drifts from what works, this fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from genogate.nodeclient import ClientTLS
from genogate.signing import key_id
from tests.conftest import ROOT
from tests.processes import Proc, demo_up, start_node

SECTION = "## Add a node to an existing federation"
SIDES = {"**Coordinator operator**": "coordinator", "**New institution**": "institution"}
SITE = "site-d"
DEMO_SITES = ("hospital-a", "biobank-b", "clinic-c")
EXCHANGED = (  # (side, path there) -> (other side, path there): the public files the section says are sent
    ("coordinator", "ca/ca.pem", "institution", "federation-ca.pem"),
    ("institution", "site-d/tls/node.csr", "coordinator", "site-d.csr"),
    ("coordinator", "site-d.pem", "institution", "site-d.pem"),
)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def section_text() -> str:
    text = (ROOT / "README.md").read_text()
    assert text.count(SECTION) == 1, f"README.md needs exactly one section {SECTION!r}"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def section_blocks() -> list[tuple[str, list[str]]]:
    """Each ``sh`` block of the section as (side, commands), the side from the last bold label before it."""
    blocks: list[tuple[str, list[str]]] = []
    parts = re.split(r"```sh\n(.*?)```", section_text(), flags=re.S)
    for prose, block in zip(parts[0::2], parts[1::2], strict=False):
        labels = [(prose.rfind(label), side) for label, side in SIDES.items() if label in prose]
        assert labels, f"no side label ({', '.join(SIDES)}) before the block:\n{block}"
        side = max(labels)[1]
        joined = re.sub(r"\\\n\s*", "", block)
        blocks.append((side, [line.strip() for line in joined.splitlines() if line.strip()]))
    return blocks


def test_the_section_names_both_sides_and_what_is_exchanged() -> None:
    text, blocks = section_text(), section_blocks()
    assert [side for side, _ in blocks] == ["coordinator", "institution", "coordinator", "institution", "coordinator"]
    for _, src, _, dst in EXCHANGED:
        assert f"`{src}`" in text and f"`{dst}`" in text, (src, dst)
    commands = [c for _, cs in blocks for c in cs]
    assert any(c.startswith("genogate-coordinator committee key") for c in commands)
    assert any(
        c.startswith("genogate-node init") and "--committee-key" in c and "--coordinator-cn" in c for c in commands
    )
    assert any(c.startswith("genogate nodes register") for c in commands)
    assert not any("studies.toml" in c for c in commands)  # joining needs no local studies file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shims(directory: Path) -> Path:
    """``genogate``, ``genogate-node`` and ``genogate-coordinator`` running this checkout's code."""
    directory.mkdir()
    for name, module in (
        ("genogate", "genogate.cli"),
        ("genogate-node", "node.cli"),
        ("genogate-coordinator", "coordinator.cli"),
    ):
        script = directory / name
        script.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m {module} "$@"\n')
        script.chmod(0o755)
    return directory


def _exchange(dirs: dict[str, Path]) -> None:
    for side, src, other, dst in EXCHANGED:
        if (dirs[side] / src).is_file() and not (dirs[other] / dst).exists():
            shutil.copy(dirs[side] / src, dirs[other] / dst)


def _genogate(profile: Path, *argv: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "genogate.cli", "--profile", str(profile), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"genogate {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_second_institution_joins_the_demo_federation_by_the_readme(tmp_path: Path) -> None:
    blocks = section_blocks()
    proc, out = demo_up(tmp_path / "demo", "--samples", "1500", "--variants", "2000", env=ENV)
    node: Proc | None = None
    try:
        assert "Press Ctrl-C" in out, out
        demo = tmp_path / "demo"
        dirs = {"coordinator": tmp_path / "coordinator-side", "institution": tmp_path / "institution-side"}
        for d in dirs.values():
            d.mkdir()
        (dirs["coordinator"] / "coord").symlink_to(demo / "coordinator")
        (dirs["coordinator"] / "ca").symlink_to(demo / "ca")
        # The institution's own data (a synthetic cohort of its own): all it starts with.
        data = subprocess.run(
            [sys.executable, "-m", "node.cli", "synth", "--samples", "300", "--variants", "2000", "--seed", "11"]
            + ["--out", str(dirs["institution"])],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
            check=False,
        )
        assert data.returncode == 0, data.stderr
        port = _free_port()
        coordinator = json.loads((demo / "coordinator/ready.json").read_text())["address"]
        env = {
            **ENV,
            "PATH": f"{_shims(tmp_path / 'bin')}{os.pathsep}{ENV.get('PATH', '')}",
            "COORDINATOR": coordinator,
            "NODE_LISTEN": f"127.0.0.1:{port}",
            "NODE_ENDPOINT": f"127.0.0.1:{port}",
            "GENOGATE_PROFILE": str(demo / "people/operator.toml"),
        }
        printed: list[str] = []
        fingerprint = ""
        for side, commands in blocks:
            _exchange(dirs)
            for command in commands:
                cwd = dirs[side]
                if command.startswith("genogate-node serve --config "):
                    config = cwd / command.split("--config ", 1)[1].split()[0]
                    tls = ClientTLS.from_files(
                        config.parent / "tls/ca.pem", config.parent / "tls/node.key", config.parent / "tls/node.pem"
                    )
                    node = start_node(config, tls, log=config.parent / "server.log")
                    continue
                done = subprocess.run(
                    ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
                )
                assert done.returncode == 0, f"[{side}] {command}\n{done.stdout}\n{done.stderr}"
                printed.append(done.stdout)
                if command.startswith("genogate-coordinator committee key"):  # what the operator sends
                    key = re.search(r"^committee public key\s+([0-9a-f]{64})$", done.stdout, re.M)
                    cn = re.search(r"^coordinator cert CN\s+(\S+)$", done.stdout, re.M)
                    fp = re.search(r"^fingerprint\s+([0-9a-f]{64})$", done.stdout, re.M)
                    assert key and cn and fp, done.stdout
                    assert fp.group(1) == key_id(bytes.fromhex(key.group(1)))  # derivable from the key
                    env |= {"COMMITTEE_KEY": key.group(1), "COORDINATOR_CN": cn.group(1)}
                    fingerprint = fp.group(1)
        assert node is not None, "the section never starts the node"
        assert node.address == f"127.0.0.1:{port}"
        assert fingerprint and any(f"committee key fingerprint {fingerprint}" in p for p in printed)  # init shows it
        assert any(SITE in p for p in printed[-1:])  # nodes list shows the new site

        # The demo's researcher proposes a study naming the new site; the committee approves it.
        people = demo / "people"
        sites = ",".join((*DEMO_SITES, SITE))
        proposed = _genogate(
            people / "alice.toml",
            *("study", "propose", "--title", "Four sites", "--purpose", "HMB", "--kinds", "cohort_count"),
            *("--sites", sites, "--epsilon-total", "4", "--epsilon-cap", "1", "--days", "30", "--json"),
            env=ENV,
        )
        study = json.loads(proposed)["study"]["study_id"]
        for member in ("member-1", "member-2"):
            _genogate(people / f"{member}.toml", "study", "approve", study, "--comment", "ok", env=ENV)
        shown = _genogate(people / "alice.toml", "study", "show", study, env=ENV)
        assert "grant signed by" in shown and fingerprint in shown  # the fingerprint operators compare

        def ask(epsilon: str) -> dict[str, dict[str, object]]:
            answer = _genogate(
                people / "alice.toml",
                *("query", "cohort-count", "--study", study, "--where", "sex=F", "--epsilon", epsilon, "--json"),
                env=ENV,
            )
            return {s["site"]: s for s in json.loads(answer)["sites"]}

        sites_seen = ask("0.5")
        assert {s: v["status"] for s, v in sites_seen.items()} == {s: "answered" for s in (*DEMO_SITES, SITE)}
        assert float(str(sites_seen[SITE]["epsilon_charged"])) == 0.5

        # A restart keeps the endpoint the coordinator registered (the port is in node.toml): still answered.
        node.stop()
        config = dirs["institution"] / SITE / "node.toml"
        tls = ClientTLS.from_files(
            config.parent / "tls/ca.pem", config.parent / "tls/node.key", config.parent / "tls/node.pem"
        )
        node = start_node(config, tls, log=config.parent / "server.log")
        assert node.address == f"127.0.0.1:{port}"
        assert ask("0.25")[SITE]["status"] == "answered"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if node is not None:
            node.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
