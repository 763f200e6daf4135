"""The newcomer's path: ``genogate-demo`` sets up a whole federation (CA, coordinator, three nodes, a study
approved by two committee members), asks real questions through it and stops it; ``--up`` leaves it
running for a person's own questions until Ctrl-C. Small sizes here; ``make demo`` uses the defaults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from genogate.launch import ROOT
from tests.processes import demo_up

SITES = ("hospital-a", "biobank-b", "clinic-c")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SMALL = ["--samples", "1500", "--variants", "3000"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids(out: str) -> list[int]:
    return [int(p) for p in re.findall(r"\(pid (\d+)\)", out)]


def test_demo_runs_the_federation_end_to_end_and_stops_it(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "genogate_demo", "--dir", str(demo), *SMALL],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        check=True,
    ).stdout
    for step in range(1, 7):
        assert f"== {step}. " in out
    assert out.count("sites (3 of 3 answered):") == 3  # cohort count, allele frequencies, case/control
    assert out.count("odds_ratio") == 3  # three planted variants in the case/control table
    # The demo's grant allows a per-site breakdown: each answer also lists every site's own numbers.
    assert out.count("per site (the study's grant allows the breakdown):") == 3
    budget = out[out.index("$ genogate budget") :]
    for site in SITES:
        # each site was charged 0.5 + 0.5 + 1 of its 4, by three queries
        assert re.search(rf"{site}\s+answered\s+4\s+2\s+2\s+3", budget), budget
    pids = _pids(out)
    assert len(pids) == 4 and not any(_alive(p) for p in pids)  # every process stopped
    assert "Stopped the coordinator and the three nodes." in out
    for site in SITES:  # each node's audit log holds its three releases, and verifies
        check = subprocess.run(
            [sys.executable, "-m", "node.cli", "audit", "verify", "--config", str(demo / site / "node.toml"), "--json"],
            capture_output=True,
            text=True,
            env=ENV,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        report = json.loads(check.stdout)
        assert report["ok"] is True and report["entries"] >= 3


def test_demo_up_stays_running_for_pasted_commands_until_ctrl_c(tmp_path: Path) -> None:
    proc, out = demo_up(tmp_path / "up", *SMALL, env=ENV)
    demo = tmp_path / "up"
    try:
        assert "Press Ctrl-C" in out, out
        profile = re.search(r"export GENOGATE_PROFILE=(\S+)", out)
        study = re.search(r"export STUDY=(\S+)", out)
        command = re.search(r"  genogate (query cohort-count [^\n]+)", out)
        assert profile and study and command
        # The printed command, pasted as printed (its quoting is the shell's): run it through a shell.
        pasted = subprocess.run(
            f"{sys.executable} -m genogate.cli {command.group(1)} --json",
            shell=True,
            capture_output=True,
            text=True,
            env={**ENV, "GENOGATE_PROFILE": profile.group(1), "STUDY": study.group(1)},
            timeout=120,
            check=False,
        )
        assert pasted.returncode == 0, pasted.stderr
        answer = json.loads(pasted.stdout)
        assert [s["status"] for s in answer["sites"]] == ["answered"] * 3
        assert sorted(r["site"] for r in answer["by_site"]) == sorted(SITES)  # one count per site
        for r in answer["by_site"]:  # a small noisy count may be withheld as "fewer than k", never shown
            assert (r["estimate"] is None) == r["below_threshold"]
        if not any(r["below_threshold"] for r in answer["by_site"]):  # the combination is the sites' sum
            combined = answer["values"][0]["estimate"]
            assert abs(sum(r["estimate"] for r in answer["by_site"]) - combined) < 1e-6
        pids = _pids(out)
        assert len(pids) == 4 and all(_alive(p) for p in pids)
        _check_status_and_metrics(demo)
        _check_an_absent_variant_prints_fewer_than_k(out, profile.group(1))
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "Stopped the coordinator and the three nodes." in rest
    assert not any(_alive(p) for p in pids)


def _check_an_absent_variant_prints_fewer_than_k(out: str, profile: str) -> None:
    """Genotype counts of a variant nobody carries (a planted site with another ALT), through the real
    coordinator and three nodes (minimum reportable count 10): its het and hom-alt counts are truly 0 at
    every site, so each site withholds them as "< 10" unless its noise (Laplace, scale ~1 at ε=1) reaches 10
    (P < 3.3e-5 per site and value). The table must then print "< 10 each" and "suppressed at 3 of 3 sites",
    and the JSON ``suppressed: true``, no estimate. False failure (neither class suppressed at all three
    sites): below (3 * 3.3e-5)^2 = 1e-8."""
    planted = re.search(r"genogate query genotype-counts --study \S+ --variant (\S+)", out)
    exported = re.search(r"export STUDY=(\S+)", out)
    assert planted and exported
    study, variant = exported.group(1), planted.group(1)
    chrom, pos, ref, alt = variant.split("-")
    other = next(b for b in "ACGT" if b not in (ref, alt))
    args = ["query", "genotype-counts", "--study", study, "--variant", f"{chrom}-{pos}-{ref}-{other}", "--epsilon", "1"]

    def run(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "genogate.cli", *args, *extra],
            capture_output=True,
            text=True,
            env={**ENV, "GENOGATE_PROFILE": profile},
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    table = run()
    doc = json.loads(run("--json"))  # the same question again: every node returns its stored release
    rows = {v["quantity"]: v for v in doc["values"]}
    hidden = [q for q in ("het", "hom_alt") if rows[q]["sites_below_threshold"] == 3]
    assert hidden, doc["values"]
    for q in hidden:
        assert rows[q]["suppressed"] is True and rows[q]["estimate"] is None and rows[q]["threshold"] == 10
        line = next(line for line in table.splitlines() if f" {q} " in line and "suppressed at" in line)
        assert "< 10 each" in line and "suppressed at 3 of 3 sites" in line, table
    assert "34.5" not in table and "nan" not in table


def _status(module: str, config: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", module, "status", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


def _metrics(address: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _check_status_and_metrics(demo: Path) -> None:
    """The operator's view of the running demo: status of every service, and their Prometheus metrics."""
    coord = _status("coordinator.cli", demo / "coordinator" / "coordinator.toml")
    assert coord["ok"] is True
    assert [n["state"] for n in coord["nodes"]["nodes"]] == ["serving"] * 3  # type: ignore[index]
    assert coord["state"]["queries"] == 4  # type: ignore[index]  # the demo's three and the pasted one
    for site in SITES:
        node = _status("node.cli", demo / site / "node.toml")
        assert node["ok"] is True and node["server"]["running"] is True  # type: ignore[index]
        assert node["store"]["participants"] == 500  # type: ignore[index]  # 1,500 split three ways
        assert node["audit"]["problems"] == 0  # type: ignore[index]
        m = _metrics(str(node["server"]["metrics_address"]))  # type: ignore[index]
        assert m['genogate_node_queries_total{decision="charged",kind="cohort_count"}'] == 2
        assert m['genogate_node_queries_total{decision="charged",kind="case_control"}'] == 1
        spent = [v for k, v in m.items() if k.startswith("genogate_node_epsilon_charged_total{")]
        assert spent == [pytest.approx(0.5 + 0.5 + 1 + 0.25)]
        assert m['genogate_rpc_requests_total{method="Node.Query",outcome="ok",reason=""}'] == 4
    for module, config in (
        ("coordinator.cli", demo / "coordinator" / "coordinator.toml"),
        ("node.cli", demo / SITES[0] / "node.toml"),
    ):  # the container health probe: the gRPC health service over mTLS with the server's own certificate
        probe = subprocess.run(
            [sys.executable, "-m", module, "health", "--config", str(config)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            check=False,
        )
        assert probe.returncode == 0 and probe.stdout.startswith("serving: 127.0.0.1:"), probe.stdout + probe.stderr
        as_json = subprocess.run(
            [sys.executable, "-m", module, "health", "--config", str(config), "--json"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            check=False,
        )
        assert as_json.returncode == 0 and json.loads(as_json.stdout)["status"] == "serving", as_json.stderr
    m = _metrics(str(coord["server"]["metrics_address"]))  # type: ignore[index]
    for site in SITES:
        assert m[f'genogate_coordinator_site_results_total{{reason="",site="{site}",status="answered"}}'] == 4
    assert m['genogate_coordinator_queries_total{kind="cohort_count",outcome="answered"}'] == 2


def test_the_demo_is_its_own_command() -> None:
    """``genogate-demo`` (the console script ``make demo`` runs) is installed beside ``genogate``; the
    researcher's ``genogate`` has no ``demo`` command (the shared package does not import the demo)."""
    script = Path(sys.executable).parent / "genogate-demo"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, env=ENV, check=True)
    assert out.stdout.startswith("usage: genogate-demo ")
    assert "a whole federation on this machine" in out.stdout and "--up DIR" in out.stdout
    assert "``" not in out.stdout  # a written description, not the module's docstring
    cli = subprocess.run(
        [sys.executable, "-m", "genogate.cli", "demo", "--help"], capture_output=True, text=True, timeout=60, env=ENV
    )
    assert cli.returncode == 2 and "invalid choice: 'demo'" in cli.stderr


def test_the_demo_with_json_narrates_on_stderr_and_prints_one_object(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "genogate-demo"
    run = subprocess.run(
        [str(script), "--dir", str(tmp_path / "demo"), "--samples", "600", "--variants", "1000", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout)  # stdout is the JSON object alone
    assert doc["status"] == "done" and doc["dir"] == str(tmp_path / "demo")
    assert doc["study_id"].startswith("S-") and doc["sites"] == ["hospital-a", "biobank-b", "clinic-c"]
    assert "The demo took" in run.stderr and "Stopped the coordinator and the three nodes." in run.stderr
