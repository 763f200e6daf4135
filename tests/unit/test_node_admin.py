"""``genogate-node init`` and ``dev-ca``, run as the real CLI in a subprocess: a new node directory becomes a
loadable configuration once a CA signs its request; keys are 0600; nothing is ever overwritten."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import verification

from genogate import tls
from genogate.errors import LocalError
from genogate.signing import key_id
from node import admin
from node.config import check_files, load_node_config
from node.ingest import load_key

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENOGATE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "node.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    if ok and proc.returncode != 0:
        pytest.fail(f"genogate-node {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _store(ca_dir: Path) -> verification.Store:
    return verification.Store(x509.load_pem_x509_certificates((ca_dir / "ca.pem").read_bytes()))


def test_init_then_sign_gives_a_loadable_node(tmp_path: Path) -> None:
    node_dir, ca_dir = tmp_path / "site-a", tmp_path / "ca"
    out = cli("init", "--dir", node_dir, "--name", "site-a", "--listen", "127.0.0.1:50051").stdout
    assert "node.csr" in out and "next steps" in out and "BEGIN" not in out  # names files, never prints keys

    for secret in ("keys/identity.key", "tls/node.key", "pseudonym.key"):
        assert mode(node_dir / secret) == 0o600, secret
    assert mode(node_dir / "keys") == 0o700
    identity = serialization.load_pem_private_key((node_dir / "keys/identity.key").read_bytes(), password=None)
    assert isinstance(identity, ed25519.Ed25519PrivateKey)
    key, created = load_key(node_dir / "pseudonym.key", create=False)  # the format ingest reads
    assert len(key) == 32 and not created
    assert tomllib.loads((node_dir / "studies.toml").read_text()) == {}
    assert "[[study]]" in (node_dir / "studies.toml").read_text()
    csr = x509.load_pem_x509_csr((node_dir / "tls/node.csr").read_bytes())
    assert csr.is_signature_valid
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["site-a", "localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    # The config loads at once; the node is ready to serve once its certificate and CA bundle are in place.
    cfg = load_node_config(node_dir / "node.toml", env={})
    assert (cfg.node.name, cfg.server.listen) == ("site-a", "127.0.0.1:50051")
    assert cfg.tls.cert == node_dir / "tls/node.pem" and cfg.keys.identity_key == node_dir / "keys/identity.key"
    with pytest.raises(LocalError, match=r"\[tls\] cert: .*node.pem does not exist"):
        check_files(cfg)

    cli("dev-ca", "init", "--dir", ca_dir)
    assert mode(ca_dir / "ca.key") == 0o600
    out = cli(
        "dev-ca",
        "issue",
        "--ca",
        ca_dir,
        "--csr",
        node_dir / "tls/node.csr",
        "--out",
        node_dir / "tls/node.pem",
        "--server",
    ).stdout
    node_pem = (node_dir / "tls/node.pem").read_bytes()
    assert tls.fingerprint_sha256(node_pem) in out
    shutil.copy(ca_dir / "ca.pem", node_dir / "tls/ca.pem")
    cfg = load_node_config(node_dir / "node.toml", env={})
    check_files(cfg)
    assert tls.common_name(cfg.tls.cert.read_bytes()) == cfg.node.name

    verifier = verification.PolicyBuilder().store(_store(ca_dir)).build_server_verifier(x509.DNSName("site-a"))
    verifier.verify(x509.load_pem_x509_certificate(node_pem), [])


def test_init_refuses_an_existing_node(tmp_path: Path) -> None:
    node_dir = tmp_path / "site-a"
    cli("init", "--dir", node_dir, "--name", "site-a")
    before = _snapshot(node_dir)
    proc = cli("init", "--dir", node_dir, "--name", "site-b", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "node.toml already exists" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(node_dir) == before


def test_init_refuses_to_overwrite_any_file_and_leaves_nothing(tmp_path: Path) -> None:
    node_dir = tmp_path / "site-a"
    (node_dir / "tls").mkdir(parents=True)
    (node_dir / "tls/node.key").write_text("precious")
    proc = cli("init", "--dir", node_dir, "--name", "site-a", ok=False)
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr
    assert _snapshot(node_dir) == {"tls/node.key": b"precious"}
    assert sorted(p.name for p in node_dir.iterdir()) == ["tls"]


def test_a_failed_write_removes_what_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tls.write_file
    calls = []

    def failing(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = False) -> None:
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device", str(path))
        real(path, data, mode=mode, overwrite=overwrite)

    monkeypatch.setattr(tls, "write_file", failing)
    with pytest.raises(LocalError, match="No space left on device"):
        admin.init_node(tmp_path / "site-a", "site-a")
    assert len(calls) == 4
    assert not (tmp_path / "site-a").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "bad name"], "--name: a node name is 1-64"),
        (["--name", "ok", "--listen", "nowhere"], "--listen: expected HOST:PORT"),
    ],
)
def test_init_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    proc = cli("init", "--dir", tmp_path / "n", *args, ok=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "n").exists()


def test_dev_ca_client_verifies_against_the_ca(tmp_path: Path) -> None:
    ca_dir, out_dir = tmp_path / "ca", tmp_path / "clients"
    cli("dev-ca", "init", "--dir", ca_dir, "--name", "test CA")
    cli("dev-ca", "client", "--ca", ca_dir, "--name", "alice", "--out-dir", out_dir)
    cli("dev-ca", "client", "--ca", ca_dir, "--name", "coordinator", "--out-dir", out_dir)  # same ca.pem: fine
    assert mode(out_dir / "alice.key") == 0o600 and mode(out_dir / "coordinator.key") == 0o600
    assert (out_dir / "ca.pem").read_bytes() == (ca_dir / "ca.pem").read_bytes()
    cert = x509.load_pem_x509_certificate((out_dir / "alice.pem").read_bytes())
    verified = verification.PolicyBuilder().store(_store(out_dir)).build_client_verifier().verify(cert, [])
    assert verified.chain[0] == cert and verified.chain[-1].subject == verified.chain[-1].issuer
    assert verified.subjects == [x509.DNSName("alice")]
    assert tls.common_name((out_dir / "alice.pem").read_bytes()) == "alice"
    key = serialization.load_pem_private_key((out_dir / "alice.key").read_bytes(), password=None)
    assert key.public_key() == cert.public_key()

    again = cli("dev-ca", "client", "--ca", ca_dir, "--name", "alice", "--out-dir", out_dir, ok=False)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def test_dev_ca_refusals(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    cli("dev-ca", "init", "--dir", ca_dir)
    again = cli("dev-ca", "init", "--dir", ca_dir, ok=False)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr

    (tmp_path / "bad.csr").write_text("not a request")
    bad = cli(
        "dev-ca",
        "issue",
        "--ca",
        ca_dir,
        "--csr",
        tmp_path / "bad.csr",
        "--out",
        tmp_path / "x.pem",
        "--client",
        ok=False,
    )
    assert bad.returncode == 1 and "bad.csr: not a PEM certificate signing request" in bad.stderr
    neither = cli(
        "dev-ca", "issue", "--ca", ca_dir, "--csr", tmp_path / "bad.csr", "--out", tmp_path / "x.pem", ok=False
    )
    assert neither.returncode == 2 and "--server, --client, or both" in neither.stderr
    missing = cli("dev-ca", "client", "--ca", tmp_path / "nope", "--name", "alice", "--out-dir", tmp_path, ok=False)
    assert missing.returncode == 1 and "cannot read the CA key" in missing.stderr
    assert not (tmp_path / "x.pem").exists()


def test_dev_ca_help_says_development_only() -> None:
    out = cli("dev-ca", "--help").stdout
    assert "development" in out and "ONLY" in out


def test_init_writes_the_grants_and_metrics_settings_it_is_given(tmp_path: Path) -> None:
    key = "ab" * 32
    cli(
        "init", "--dir", tmp_path / "n", "--name", "site-a", "--listen", "0.0.0.0:50051",
        "--committee-key", key, "--coordinator", "coord.example.org:50051", "--metrics-listen", "127.0.0.1:9464",
        "--coordinator-name", "coordinator",
    )  # fmt: skip
    cfg = load_node_config(tmp_path / "n" / "node.toml", env={})
    assert cfg.grants.committee_keys == (key,) and cfg.grants.coordinator == "coord.example.org:50051"
    assert cfg.grants.coordinator_common_name == "coordinator"
    assert cfg.server.metrics_listen == "127.0.0.1:9464" and cfg.server.listen == "0.0.0.0:50051"
    bad = cli("init", "--dir", tmp_path / "m", "--name", "site-b", "--committee-key", "abc", ok=False)
    assert bad.returncode == 2 and "--committee-key" in bad.stderr and "64 hex digits" in bad.stderr
    assert not (tmp_path / "m").exists()  # nothing written


def _committee_key() -> tuple[str, bytes]:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return raw.hex(), raw


def test_init_joining_a_federation_needs_no_editing(tmp_path: Path) -> None:
    node_dir = tmp_path / "site-d"
    key, raw = _committee_key()
    out = cli(
        "init",
        *("--dir", node_dir, "--name", "site-d", "--committee-key", key.upper()),
        *("--coordinator", "coord.example.org:50051", "--coordinator-cn", "coordinator"),
    ).stdout
    cfg = load_node_config(node_dir / "node.toml", env={})
    assert cfg.grants.committee_keys == (key,)  # lower case, as committee key prints it
    assert (cfg.grants.coordinator, cfg.grants.coordinator_common_name) == ("coord.example.org:50051", "coordinator")
    assert cfg.studies.local is False and not (node_dir / "studies.toml").exists()
    assert cfg.server.listen == admin.DEFAULT_LISTEN == "0.0.0.0:50051"  # a fixed port, kept across restarts
    assert "studies.toml" not in out
    assert f"committee key fingerprint {key_id(raw)}" in out  # what the coordinator operator can compare
    assert f"--out {node_dir / 'tls/node.pem'} --server --client" in out
    assert "genogate nodes register --name site-d --endpoint HOST:50051" in out  # what to send, and what it is for

    help_text = cli("init", "--help").stdout
    assert admin.DEFAULT_LISTEN in help_text and "%" not in help_text and "--coordinator-cn" in help_text


def test_init_of_a_standalone_node_explains_local_studies(tmp_path: Path) -> None:
    node_dir = tmp_path / "site-a"
    out = cli("init", "--dir", node_dir, "--name", "site-a", "--coordinator-name", "coordinator").stdout
    assert load_node_config(node_dir / "node.toml", env={}).grants.coordinator_common_name == "coordinator"
    assert "Read ONLY when node.toml says [studies] local = true" in (node_dir / "studies.toml").read_text()
    assert "set [studies] local = true" in out and "--committee-key" in out


KEY = "ab" * 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--committee-key", "abc", "--coordinator", "c:1"], "--committee-key: expected the committee's public key "),
        (["--committee-key", "zz" * 32, "--coordinator", "c:1"], "as 64 hex digits"),
        (["--committee-key", KEY + "00", "--coordinator", "c:1"], "as 64 hex digits"),
        (["--committee-key", KEY, "--coordinator", "coord.example.org"], "got 'coord.example.org' (no port)"),
        (["--committee-key", KEY, "--coordinator", "coord.example.org:0"], "--coordinator: expected HOST:PORT"),
        (["--committee-key", KEY, "--coordinator", "::1:50051"], "IPv6 host in brackets"),
        (["--committee-key", KEY], "--committee-key needs --coordinator HOST:PORT"),
        (["--coordinator", "c:1"], "--coordinator needs --committee-key"),
        (["--committee-key", KEY, "--coordinator", "c:1", "--coordinator-cn", "a b"], "--coordinator-cn: expected"),
    ],
)
def test_init_refuses_a_bad_federation(tmp_path: Path, args: list[str], message: str) -> None:
    proc = cli("init", "--dir", tmp_path / "n", "--name", "n", *args, ok=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "n").exists()
