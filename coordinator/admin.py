"""Setting up a coordinator: ``init`` (a coordinator directory with its keys, CSR and config) and
``committee add`` (a member appended to the committee members file).

``init`` writes all of its files or none, each atomically, and never overwrites (``genogate.files.FileBatch``).
``add_member`` rewrites the members file atomically (readers see the old file or the new one, never a
partial one). Private keys get mode 0600 and are never printed; public keys and fingerprints are.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import (
    MEMBERS_TEMPLATE,
    CoordinatorConfig,
    check_common_names,
    check_public_key_hex,
    load_coordinator_config,
    parse_members,
)
from genogate import tls
from genogate.config import render_toml
from genogate.errors import ConfigError, LocalError, UsageError
from genogate.files import FileBatch, Report
from genogate.settings import check_listen, check_name
from genogate.signing import Signer, key_id

COORDINATOR_TOML = "coordinator.toml"
MEMBERS_TOML = "committee.toml"


def _usage(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _checked(check: Callable[[Any], Any], value: object, what: str) -> None:
    try:
        check(value)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


def init_coordinator(
    directory: Path,
    name: str = "coordinator",
    listen: str = "127.0.0.1:0",
    operators: tuple[str, ...] = (),
    *,
    metrics_listen: str = "",
) -> Report:
    """Create a coordinator directory: config, committee signing key, TLS key and CSR, empty members file.

    Refuses a directory that already holds a ``coordinator.toml`` (or any of the files it would write)."""
    _checked(check_name, name, "--name")
    _checked(check_listen, listen, "--listen")
    _checked(check_common_names, operators, "--operator")
    if metrics_listen:
        _checked(check_listen, metrics_listen, "--metrics-listen")
    if (directory / COORDINATOR_TOML).exists():
        raise LocalError(
            f"{directory / COORDINATOR_TOML} already exists: {directory} is already a coordinator; init never "
            "overwrites (choose another --dir, or move the old one away)"
        )
    if directory.exists() and not directory.is_dir():
        raise LocalError(f"{directory} exists and is not a directory")

    tls_key = tls.new_key()
    sans = list(dict.fromkeys([name, "localhost", "127.0.0.1"]))
    try:
        csr = tls.new_csr(tls_key, name, sans)
    except ValueError as exc:
        raise UsageError(f"--name: {exc}") from None
    signing_key = tls.new_identity_key()
    private = serialization.load_pem_private_key(signing_key, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise AssertionError("tls.new_identity_key made a key that is not Ed25519")
    public_raw = Signer(private).public_raw
    values: dict[str, object] = {
        "coordinator.name": name,
        "server.listen": listen,
        "tls.ca_certs": Path("tls/ca.pem"),
        "tls.cert": Path("tls/coordinator.pem"),
        "tls.key": Path("tls/coordinator.key"),
        "committee.signing_key": Path("keys/committee.key"),
        "committee.members_file": Path(MEMBERS_TOML),
        "roles.operators": operators,
    }
    if metrics_listen:
        values["server.metrics_listen"] = metrics_listen
    today = dt.datetime.now(dt.UTC).date().isoformat()
    header = (
        f"genogate coordinator {name!r}, created by genogate-coordinator init on {today}.\n"
        "Relative paths resolve against this file's directory. Environment variables\n"
        "GENOGATE_COORDINATOR_<SECTION>__<KEY> override any setting."
    )
    config_text = render_toml(CoordinatorConfig, values, header=header)

    batch = FileBatch(dirs=[(directory, 0o700), (directory / "keys", 0o700), (directory / "tls", 0o700)])
    batch.add(directory / "keys" / "committee.key", signing_key, "Ed25519 committee signing key", secret=True)
    batch.add(directory / "tls" / "coordinator.key", tls_key, "TLS private key", secret=True)
    batch.add(directory / "tls" / "coordinator.csr", csr, f"certificate request (CN={name}; {', '.join(sans)})")
    batch.add(directory / MEMBERS_TOML, MEMBERS_TEMPLATE.encode(), "committee members (none yet)")
    batch.add(directory / COORDINATOR_TOML, config_text.encode(), "coordinator configuration")  # last
    report = Report()
    batch.commit(report)
    d = directory
    steps = [
        f"have your CA sign {d / 'tls/coordinator.csr'} as a server and client certificate (it also calls the "
        f"nodes) and put it at "
        f"{d / 'tls/coordinator.pem'}\n     (development only: genogate-node dev-ca issue --ca CA_DIR "
        f"--csr {d / 'tls/coordinator.csr'} --out {d / 'tls/coordinator.pem'} --server --client)",
        f"put the PEM bundle of the CAs whose client certificates the coordinator accepts at {d / 'tls/ca.pem'}",
        f"add committee members: genogate-coordinator committee add --config {d / COORDINATOR_TOML} "
        "--name NAME --public-key HEX",
    ]
    if not operators:
        steps.append(f"list the operators' certificate common names in [roles] operators of {d / COORDINATOR_TOML}")
    steps.append(f"genogate-coordinator serve --config {d / COORDINATOR_TOML}")
    report.notes += [
        "",
        f"committee public key (give it to every node): {public_raw.hex()}",
        f"committee key fingerprint: {key_id(public_raw)} (genogate-coordinator committee key prints both)",
        "",
        "next steps:",
        *(f"  {i}. {step}" for i, step in enumerate(steps, 1)),
    ]
    return report


def add_member(config_path: Path, name: str, public_key_hex: str, env: Mapping[str, str] = os.environ) -> Report:
    """Append a committee member to the members file the configuration names (atomically).

    Refuses a key or a name already listed (adding exactly the listed member again changes nothing). The
    running server reads the file at start: restart it for the member to count."""
    _usage(bool(name.strip()) and len(name) <= 200 and name == name.strip(), "--name: 1-200 characters")
    try:
        key = check_public_key_hex(public_key_hex)
    except ValueError as exc:
        raise UsageError(f"--public-key: {exc}") from None
    path = load_coordinator_config(config_path, env).committee.members_file
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the committee members file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the committee members file is not UTF-8 text") from None
    members = parse_members(text, str(path))
    report = Report()
    for m in members:
        if m.public_key == key and m.name == name:
            report.notes.append(f"{name} is already a committee member in {path}; nothing changed")
            report.changed = False
            return report
        if m.public_key == key:
            raise LocalError(f"{path}: this public key is already listed, as {m.name!r}")
        if m.name == name:
            raise LocalError(f"{path}: a member named {name!r} is already listed, with another key")
    entry = f"[[member]]\nname = {json.dumps(name)}\npublic_key_hex = {json.dumps(key.hex())}\n"
    new_text = text + ("" if text.endswith("\n\n") or not text else "\n" if text.endswith("\n") else "\n\n") + entry
    parse_members(new_text, str(path))  # the file stays readable
    try:
        tls.write_file(path, new_text.encode(), mode=path.stat().st_mode & 0o777, overwrite=True)
    except OSError as exc:
        raise LocalError(f"{path}: cannot write ({exc.strerror}); nothing changed") from None
    report.notes += [
        f"added committee member {name} (key id {key_id(key)}) to {path}",
        "restart the coordinator for the member's reviews to count",
    ]
    return report


@dataclass(frozen=True)
class CommitteeKey:
    """What a joining node needs from the coordinator operator (all public): the committee's public key, its
    fingerprint, and the common name of the coordinator's certificate."""

    public_key: str
    """The raw Ed25519 public key as 64 hex digits: the form ``[grants] committee_keys`` and
    ``genogate-node init --committee-key`` take."""
    fingerprint: str
    """SHA-256 of the 32 raw key bytes, in hex (``genogate.signing.key_id``): the id grants and revocation
    lists carry and ``genogate study show`` prints as "grant signed by"."""
    coordinator_common_name: str
    """The coordinator certificate's common name (``genogate-node init --coordinator-cn``)."""

    def to_json(self) -> dict[str, str]:
        return {
            "public_key": self.public_key,
            "fingerprint": self.fingerprint,
            "coordinator_common_name": self.coordinator_common_name,
        }

    def lines(self) -> list[str]:
        return [
            f"committee public key  {self.public_key}",
            f"fingerprint           {self.fingerprint}",
            f"coordinator cert CN   {self.coordinator_common_name}",
            "",
            "A node joins this federation with (HOST:PORT: this coordinator's address as the node reaches it):",
            f"  genogate-node init --dir DIR --name NAME --committee-key {self.public_key} \\",
            f"      --coordinator HOST:PORT --coordinator-cn {self.coordinator_common_name}",
            "which writes [grants] committee_keys, coordinator and coordinator_common_name into its node.toml.",
        ]


def committee_key(config_path: Path, env: Mapping[str, str] = os.environ) -> CommitteeKey:
    """The committee's public key and fingerprint, read from the signing key the configuration names, and the
    coordinator's certificate name (from its certificate when it exists, else ``[coordinator] name``)."""
    config = load_coordinator_config(config_path, env)
    signer = Signer.from_pem_file(config.committee.signing_key)  # ConfigError naming the file
    name = config.coordinator.name
    if config.tls.cert.is_file():
        try:
            name = tls.common_name(config.tls.cert.read_bytes())
        except (OSError, ValueError):
            pass  # a certificate that cannot be read is the server's problem; the configured name stands
    return CommitteeKey(signer.public_raw.hex(), key_id(signer.public_raw), name)
