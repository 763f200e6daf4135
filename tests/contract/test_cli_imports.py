"""The command lines load what a command needs and nothing else (what Python imports is what a command's start
costs: ``genogate query`` once took 12 times ``python -c pass``, importing the demo, gRPC's server side and
Prometheus to build its parser).

Each command runs in a fresh interpreter (``main(argv)`` of its entry point, as the installed script calls it);
its ``sys.modules`` afterwards must hold none of the modules the command has no use for:

* every ``--help`` and every offline command: no gRPC, no protobuf, no ``cryptography`` (beyond what the
  command itself uses), no query kinds (except under ``genogate query``, whose help lists them), no server,
  node or coordinator code, no DuckDB, OpenDP, numpy or Prometheus;
* ``genogate query ...``, a real query through a real federation (``genogate-demo --up``): gRPC and protobuf,
  one Ed25519 signature, but no demo, launcher, server, node or coordinator code, no DuckDB, OpenDP, numpy,
  Prometheus, X.509 parsing or key serialization package.

Module sets, never timings (``python -m bench.startup`` measures those). ``test_the_probe_sees_...`` shows
that the probe does see a forbidden module when one is loaded. The lazily built parser is the full parser:
every command's help is the same text either way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.cli import _parser as coordinator_parser
from genogate import cli as genogate_cli
from genogate import tls
from genogate.launch import ROOT
from node.cli import _parser as node_parser
from tests.processes import demo_up

PROBE = """\
import importlib, json, sys
out, module, *argv = sys.argv[1:]
try:
    code = importlib.import_module(module).main(argv)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

#: Never loaded by any command of the researcher's command line (package prefixes).
SERVER_SIDE = (
    "genogate_demo",
    "node",
    "coordinator",
    "genogate.launch",
    "genogate.server",
    "genogate.metrics",
    "genogate.noise",
    "prometheus_client",
    "duckdb",
    "opendp",
    "numpy",
    "cyvcf2",
)  # (grpc_health and grpc_reflection are not here: ``import grpc`` itself imports them when installed)
#: Never loaded by --help or an offline command.
TRANSPORT = ("grpc", "google.protobuf", "genogate.wire", "genogate.rpc", "genogate.nodeclient", "genogate.coordclient")
KINDS = ("genogate.kinds", "genogate.studies", "genogate.convert")
CRYPTO = ("cryptography",)
#: Never loaded by a query: what only other commands or the servers use.
NOT_FOR_A_QUERY = (
    "cryptography.x509",
    "cryptography.hazmat.primitives.serialization",
    "genogate.tls",
    "genogate.nodeclient",
    "genogate.status",
    "genogate.audit",
    "genogate.studies",  # the study and registry types: other commands' (genogate.convert builds them lazily)
    "uuid",  # imports platform; genogate.envelope.new_query_id does without
)


def _loaded(module: str, argv: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.exists(), done.stderr
    result = json.loads(out.read_text())
    return result["code"], set(result["modules"])


def _found(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


HELP_CASES = [
    ("genogate.cli", ["--help"], SERVER_SIDE + TRANSPORT + KINDS + CRYPTO),
    ("genogate.cli", ["study", "--help"], SERVER_SIDE + TRANSPORT + KINDS + CRYPTO),
    ("genogate.cli", ["study", "propose", "--help"], SERVER_SIDE + TRANSPORT + KINDS + CRYPTO),
    ("genogate.cli", ["nodes", "register", "--help"], SERVER_SIDE + TRANSPORT + KINDS + CRYPTO),
    ("genogate.cli", ["budget", "--help"], SERVER_SIDE + TRANSPORT + KINDS + CRYPTO),
    ("genogate.cli", ["--version"], SERVER_SIDE + TRANSPORT + KINDS + CRYPTO),
    # The query kinds list themselves (their modules and wire messages), but nothing is sent or signed.
    ("genogate.cli", ["query", "--help"], SERVER_SIDE + ("grpc", "genogate.rpc") + CRYPTO),
    ("genogate.cli", ["query", "allele-frequency", "--help"], SERVER_SIDE + ("grpc", "genogate.rpc") + CRYPTO),
    ("node.cli", ["--help"], SERVER_SIDE[:1] + ("coordinator", "node.app", "node.servicer", "node.config")),
    ("node.cli", ["serve", "--help"], SERVER_SIDE[:1] + ("coordinator", "node.app", "node.service", "node.ingest")),
    ("node.cli", ["consent", "--help"], SERVER_SIDE[:1] + ("coordinator", "node.app", "node.config")),
    ("coordinator.cli", ["--help"], SERVER_SIDE[:2] + ("coordinator.app", "coordinator.fanout", "coordinator.state")),
    ("coordinator.cli", ["audit", "--help"], SERVER_SIDE[:2] + ("coordinator.app", "coordinator.servicer")),
    ("genogate_demo.run", ["--help"], ("node", "coordinator", "genogate.launch")),
]
#: Besides their own exclusions, the servers' command lines load none of these for --help.
SERVER_HELP = (
    "grpc",
    "google.protobuf",
    "cryptography",
    "genogate.kinds",
    "genogate.metrics",
    "prometheus_client",
    "duckdb",
    "opendp",
    "numpy",
    "cyvcf2",
)


@pytest.mark.parametrize(
    ("module", "argv", "forbidden"), HELP_CASES, ids=[f"{m} {' '.join(a)}" for m, a, _ in HELP_CASES]
)
def test_help_loads_nothing_it_does_not_show(
    module: str, argv: list[str], forbidden: tuple[str, ...], tmp_path: Path
) -> None:
    code, modules = _loaded(module, argv, tmp_path)
    assert code == 0
    assert module in modules
    if module != "genogate.cli":
        forbidden += SERVER_HELP
    assert _found(modules, forbidden) == []


def test_keys_new_works_offline_without_the_transport(tmp_path: Path) -> None:
    code, modules = _loaded("genogate.cli", ["keys", "new", "--out", str(tmp_path / "k.ed25519")], tmp_path)
    assert code == 0 and (tmp_path / "k.ed25519").exists()
    assert _found(modules, SERVER_SIDE + TRANSPORT + KINDS) == []


def test_the_probe_sees_a_forbidden_module_when_one_is_loaded(tmp_path: Path) -> None:
    """The checks above can fail: building the whole parser (as shell completion does) loads the kinds, and a
    status check of a node loads its config."""
    code, modules = _loaded("genogate.cli", ["completion", "bash"], tmp_path)
    assert code == 0 and "genogate.kinds" in modules and "genogate.wire.v1.common_pb2" in modules
    code, modules = _loaded("node.cli", ["status", "--config", str(tmp_path / "absent.toml")], tmp_path)
    assert "node.config" in modules


# The lazily built parser is the full parser ---------------------------------------------------------------


def _paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    yield path, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _paths(child, (*path, name))


def _help_of(parser: Callable[[], argparse.ArgumentParser], path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parser().parse_args([*path, "--help"])
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "lazy", "full"),
    [
        ("genogate", lambda: genogate_cli._parser(lazy=True), genogate_cli._parser),
        ("genogate-node", node_parser, node_parser),
        ("genogate-coordinator", coordinator_parser, coordinator_parser),
    ],
)
def test_every_command_has_the_same_help_when_built_lazily(
    name: str, lazy: Callable[[], argparse.ArgumentParser], full: Callable[[], argparse.ArgumentParser]
) -> None:
    paths = list(_paths(full()))
    assert len(paths) > 10
    for path, text in paths:
        assert _help_of(lazy, path) == text, f"{name} {' '.join(path)}"


def test_main_parses_with_the_lazy_parser() -> None:
    """``main`` builds the lazy parser (what the tests above hold the imports of)."""
    parser = genogate_cli._parser(lazy=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    query = sub.choices["query"]
    kinds = next(a for a in query._actions if isinstance(a, argparse._SubParsersAction))
    assert kinds.choices == {}  # nothing below 'query' until it is chosen
    args = parser.parse_args(["query", "cohort-count", "--study", "S-1", "--epsilon", "0.5"])
    assert (args.command, args.kind, args.study, args.epsilon) == ("query", "cohort-count", "S-1", 0.5)
    assert "allele-frequency" in kinds.choices


# The query path -------------------------------------------------------------------------------------------


def _client_files(tmp_path: Path) -> Path:
    """A profile with a real CA, client certificate and signing key, naming a coordinator nothing listens at."""
    ca_key, ca_cert = tls.new_ca("test-ca", 1)
    key = tls.new_key()
    cert = tls.issue(ca_key, ca_cert, tls.new_csr(key, "alice", ["alice"]), server=False, client=True, days=1)
    for name, data in (("ca.pem", ca_cert), ("alice.key", key), ("alice.pem", cert)):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "alice.ed25519").write_bytes(tls.new_identity_key())
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    profile = tmp_path / "alice.toml"
    profile.write_text(
        f'[profile]\ncoordinator = "127.0.0.1:{port}"\nca_cert = "ca.pem"\ncert = "alice.pem"\nkey = "alice.key"\n'
        'signing_key = "alice.ed25519"\n'
    )
    return profile


def test_a_query_loads_only_the_client_even_when_the_coordinator_is_down(tmp_path: Path) -> None:
    """Parse, profile, signature, envelope, one call refused: the client path, up to the answer."""
    profile = _client_files(tmp_path)
    argv = ["--profile", str(profile), "--timeout", "5", "query", "allele-frequency", "--study", "S-1"]
    code, modules = _loaded("genogate.cli", [*argv, "--variant", "1-100-A-G", "--epsilon", "0.5"], tmp_path)
    assert code == 1  # the coordinator is unavailable: an error line, no traceback
    assert "grpc" in modules and "genogate.envelope" in modules and "genogate.kinds.allele_frequency" in modules
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in modules  # the query was signed
    assert _found(modules, SERVER_SIDE + NOT_FOR_A_QUERY) == []


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running demo federation: (alice's profile, the study)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc, out = demo_up(tmp_path_factory.mktemp("fed") / "up", "--samples", "1500", "--variants", "1000", env=env)
    try:
        profile = re.search(r"export GENOGATE_PROFILE=(\S+)", out)
        study = re.search(r"export STUDY=(\S+)", out)
        assert profile and study, out
        yield profile.group(1), study.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "cohort-count", "--where", "sex=F", "--epsilon", "0.25"],
        ["--json", "query", "cohort-count", "--where", "sex=F", "--epsilon", "0.25"],
        ["budget"],
    ],
    ids=["query", "query --json", "budget"],
)
def test_a_real_query_loads_only_the_client(argv: list[str], federation: tuple[str, str], tmp_path: Path) -> None:
    profile, study = federation
    i = 1 + argv.index("query") + 1 if "query" in argv else len(argv)
    code, modules = _loaded("genogate.cli", ["--profile", profile, *argv[:i], "--study", study, *argv[i:]], tmp_path)
    assert code == 0  # answered by every site
    assert "grpc" in modules and "genogate.client" in modules
    assert _found(modules, SERVER_SIDE + NOT_FOR_A_QUERY) == []
