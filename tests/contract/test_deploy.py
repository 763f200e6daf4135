"""deploy/ checked as far as it can be without a container engine: the images' entrypoints and health checks
are the commands the tests run; the compose file and Kubernetes manifests parse, isolate the nodes, run
unprivileged on read-only root filesystems and probe the gRPC health service; every config they carry
loads; and the compose bootstrap and registration scripts run for real (small cohorts) and produce a
federation whose servers start and answer their health probes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.config import load_coordinator_config
from genogate.launch import ROOT, start_server
from genogate.nodeclient import ClientTLS
from node.config import load_node_config

DEPLOY = ROOT / "deploy"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
SERVER_CLI = {"genogate-node": "node.cli", "genogate-coordinator": "coordinator.cli"}


def _dockerfile_targets() -> dict[str, dict[str, Any]]:
    """Per build stage: its base, USER, ENTRYPOINT, CMD and HEALTHCHECK (exec form), COPY sources."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = {"from": base.strip(), "copy": []}
            stages[name.strip()] = current
        elif word in ("ENTRYPOINT", "CMD", "USER"):
            current[word] = json.loads(rest) if rest.startswith("[") else rest
        elif word == "HEALTHCHECK":
            current[word] = json.loads(rest[rest.index("CMD") + 3 :].strip())
        elif word == "COPY" and "--from" not in rest:
            current["copy"] += rest.split()[:-1]
    for stage in stages.values():  # inherit from the parent stage
        parent = stages.get(stage["from"])
        for key in ("USER", "ENTRYPOINT", "CMD", "HEALTHCHECK"):
            if key not in stage and parent and key in parent:
                stage[key] = parent[key]
    return stages


def test_images_run_the_tested_commands_unprivileged_with_grpc_health_checks() -> None:
    stages = _dockerfile_targets()
    for target, script, config in (
        ("node", "genogate-node", "/srv/node/node.toml"),
        ("coordinator", "genogate-coordinator", "/srv/coordinator/coordinator.toml"),
    ):
        s = stages[target]
        assert s["from"] == "runtime" and s["USER"] == "10001:10001"
        # The entrypoint is the console script that runs the module the end-to-end tests start.
        assert s["ENTRYPOINT"] == [script] and SCRIPTS[script] == f"{SERVER_CLI[script]}:main"
        assert s["CMD"] == ["serve", "--config", config]
        assert s["HEALTHCHECK"] == [script, "health", "--config", config]
    for source in stages["build"]["copy"]:
        assert (ROOT / source).exists(), source  # everything the image copies is in the checkout


def test_the_image_installs_only_hashed_locked_dependencies() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [c.strip() for c in re.findall(r"pip install ([^&\n]+)", text)]
    assert installs == ["--require-hashes -r requirements-runtime.lock", "--no-deps --no-build-isolation ."]
    lock = (ROOT / "requirements-runtime.lock").read_text()
    pins = re.findall(r"^([a-z0-9_.-]+)==\S+ \\$", lock, re.MULTILINE)
    assert pins and len(re.findall(r"^([a-z0-9_.-]+)==", lock, re.MULTILINE)) == len(pins)
    assert lock.count("--hash=sha256:") >= len(pins)  # every pin carries its hashes


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    return doc


def test_compose_isolates_nodes_and_runs_servers_read_only_as_the_service_user() -> None:
    doc = _compose()
    services = doc["services"]
    assert doc["networks"]["federation"]["internal"] is True
    nodes = [name for name in services if name.startswith("site-")]
    assert nodes == ["site-a", "site-b", "site-c"]
    for name in ["coordinator", *nodes]:
        svc = services[name]
        script = "genogate-coordinator" if name == "coordinator" else "genogate-node"
        config = "/srv/coordinator/coordinator.toml" if name == "coordinator" else "/srv/node/node.toml"
        assert svc["read_only"] is True and svc["user"] == "10001:10001" and svc["cap_drop"] == ["ALL"]
        assert svc["command"] == ["serve", "--config", config]
        assert svc["healthcheck"]["test"] == ["CMD", script, "health", "--config", config]
        assert svc["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    for name in nodes:  # nodes: no published port, only the internal network, their own volume only
        assert "ports" not in services[name] and services[name]["networks"] == ["federation"]
        assert services[name]["volumes"] == [f"{name}:/srv/node"]
    assert set(services["coordinator"]["networks"]) == {"edge", "federation"}
    assert services["coordinator"]["ports"] == ["127.0.0.1:50051:50051"]
    # The researcher container holds the researcher's own keys and nothing of the committee's or operator's.
    researcher = services["researcher"]
    assert researcher["volumes"] == ["researcher:/srv/federation/researcher:ro"]
    assert researcher["entrypoint"][-1].startswith("/srv/federation/researcher/")
    assert "researcher:/srv/federation/researcher" in services["bootstrap"]["volumes"]
    for name in ("bootstrap", "register"):
        script = services[name]["entrypoint"][-1]
        assert (
            script.startswith("/opt/genogate/deploy/")
            and (DEPLOY / script.removeprefix("/opt/genogate/deploy/")).is_file()
        )


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("genogate-node", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the console scripts are not installed in this environment (make install)")
    root = tmp_path_factory.mktemp("federation")
    env = {**_env(), "GENOGATE_BOOTSTRAP_ROOT": str(root), "GENOGATE_SAMPLES": "300", "GENOGATE_VARIANTS": "400"}
    out = subprocess.run(
        ["/bin/sh", str(DEPLOY / "compose" / "bootstrap.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("bootstrap: done")
    again = subprocess.run(
        ["/bin/sh", str(DEPLOY / "compose" / "bootstrap.sh")], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout  # idempotent
    return root


def test_the_researcher_volume_holds_only_the_researchers_files(bootstrapped: Path) -> None:
    held = sorted(p.name for p in (bootstrapped / "researcher").iterdir())
    assert held == sorted(
        ["ca.pem", "alice.pem", "alice.key", "alice.ed25519", "alice.internal.toml", "alice.host.toml"]
    )
    assert not any(n.startswith(("member", "operator")) for n in held)


def test_bootstrap_makes_a_federation_whose_configs_load_and_servers_start(bootstrapped: Path) -> None:
    from coordinator.config import check_files as coordinator_files
    from genogate.signing import Signer
    from node.config import check_files as node_files

    root = bootstrapped
    coord = load_coordinator_config(root / "coordinator" / "coordinator.toml", env={})
    coordinator_files(coord)
    committee = Signer.from_pem_file(coord.committee.signing_key).public_raw.hex()
    members = tomllib.loads((root / "coordinator" / "committee.toml").read_text())["member"]
    assert [m["name"] for m in members] == ["member-1", "member-2"]
    for site in ("site-a", "site-b", "site-c"):
        node = load_node_config(root / site / "node.toml", env={})
        node_files(node)
        assert node.grants.committee_keys == (committee,) and node.grants.coordinator == "coordinator:50051"
        assert node.server.listen == "0.0.0.0:50051" and node.server.metrics_listen == "0.0.0.0:9464"
    for key in (root / "ca" / "ca.key", root / "site-a" / "keys" / "identity.key", root / "people" / "alice.key"):
        assert key.stat().st_mode & 0o077 == 0, key  # private keys are the owner's alone

    # Start the coordinator and one node from what bootstrap wrote (loopback ports instead of the
    # containers' fixed ones), register through register.sh, and probe both with the health command.
    people = root / "people"
    operator = ClientTLS.from_files(people / "ca.pem", people / "operator.key", people / "operator.pem")
    loopback = {"GENOGATE_COORDINATOR_SERVER__LISTEN": "127.0.0.1:0", "GENOGATE_COORDINATOR_SERVER__METRICS_LISTEN": ""}
    coordinator = start_server(
        "coordinator.cli", root / "coordinator" / "coordinator.toml", operator, log=root / "coord.log", env=loopback
    )
    node_env = {
        "GENOGATE_NODE_SERVER__LISTEN": "127.0.0.1:0",
        "GENOGATE_NODE_SERVER__METRICS_LISTEN": "",
        "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator.address,
    }
    node = None
    try:
        node = start_server("node.cli", root / "site-a" / "node.toml", operator, log=root / "site-a.log", env=node_env)
        register = subprocess.run(
            ["/bin/sh", str(DEPLOY / "compose" / "register.sh")],
            env={**_env(), "GENOGATE_BOOTSTRAP_ROOT": str(root), "GENOGATE_PROFILE__COORDINATOR": coordinator.address},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert register.returncode == 0, register.stdout + register.stderr
        for module, config, env in (
            ("coordinator.cli", root / "coordinator" / "coordinator.toml", loopback),
            ("node.cli", root / "site-a" / "node.toml", node_env),
        ):
            probe = subprocess.run(
                [sys.executable, "-m", module, "health", "--config", str(config)],
                env={**_env(), **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert probe.returncode == 0 and probe.stdout.startswith("serving: 127.0.0.1:"), probe.stdout + probe.stderr
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "status",
                "--config",
                str(root / "coordinator" / "coordinator.toml"),
                "--json",
            ],
            env={**_env(), **loopback},
            capture_output=True,
            text=True,
            timeout=60,
        )
        nodes = json.loads(status.stdout)["nodes"]["nodes"]
        assert [(n["name"], n["endpoint"]) for n in nodes] == [
            (s, f"{s}:50051") for s in ("site-a", "site-b", "site-c")
        ]
    finally:
        if node is not None:
            node.stop()
        coordinator.stop()


def _k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _of(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _k8s() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_k8s_workloads_are_unprivileged_with_persistent_data_secrets_and_health_probes(tmp_path: Path) -> None:
    for kind, name, script, loader in (
        ("Deployment", "genogate-coordinator", "genogate-coordinator", load_coordinator_config),
        ("StatefulSet", "genogate-node", "genogate-node", load_node_config),
    ):
        workload = _of(kind, name)
        pod = workload["spec"]["template"]["spec"]
        assert workload["spec"]["replicas"] == 1  # one ledger / one state file: never two writers
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert container["command"] == [script] and container["args"][:2] == ["serve", "--config"]
        config_path = container["args"][2]
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["exec"]["command"] == [script, "health", "--config", config_path]
        secrets = [v for v in pod["volumes"] if "secret" in v]
        assert secrets and all(v["secret"]["defaultMode"] == 0o400 for v in secrets)
        # The config the pod mounts loads, and keeps all state on the persistent volume.
        configmap = _of("ConfigMap", f"{name}-config")
        file = tmp_path / Path(config_path).name
        file.write_text(configmap["data"][Path(config_path).name])
        config = loader(file, env={})
        data_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
        state_files = (
            [config.store.path, config.ledger.path, config.grants.nonce_store, config.server.ready_file]
            if script == "genogate-node"
            else [config.state.path, config.audit.path, config.server.ready_file]
        )
        assert all(str(p).startswith(data_mount + "/") for p in state_files), state_files
        assert config.server.listen == "0.0.0.0:50051" and config.server.metrics_listen == "0.0.0.0:9464"
    claims = _of("StatefulSet", "genogate-node")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert _of("PersistentVolumeClaim", "genogate-coordinator-data")["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_k8s_network_policy_lets_only_the_coordinator_reach_nodes() -> None:
    deny = _of("NetworkPolicy", "default-deny-ingress")
    assert (
        deny["spec"]["podSelector"] == {}
        and deny["spec"]["policyTypes"] == ["Ingress"]
        and "ingress" not in deny["spec"]
    )
    node = _of("NetworkPolicy", "genogate-node-ingress")["spec"]
    assert node["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "genogate-node"}
    grpc_rules = [r for r in node["ingress"] if {"protocol": "TCP", "port": 50051} in r["ports"]]
    assert len(grpc_rules) == 1
    assert grpc_rules[0]["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "genogate-coordinator"}}}
    ]
    for rule in node["ingress"]:  # every rule names its sources: none is open to all
        assert rule.get("from"), rule
    labels = _of("Deployment", "genogate-coordinator")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "genogate-coordinator"


def test_the_deployment_guide_names_the_files_and_commands() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    guide = operations[operations.index("## Status, health and metrics") :]
    for needle in (
        "deploy/docker/Dockerfile",
        "deploy/compose/compose.yaml",
        "deploy/k8s/",
        "create secret generic",
        "genogate-node health",
        "metrics_listen",
    ):
        assert needle in guide, needle
    for command in re.findall(r"^(genogate(?:-node|-coordinator)? [a-z-]+)", guide, flags=re.M):
        parts = shlex.split(command)
        assert parts[0] in SCRIPTS, command
