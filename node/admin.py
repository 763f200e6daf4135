"""Setting up a node: ``init`` (a node directory with its keys, CSR and config) and a development CA.

Every command writes all of its files or none: each file is written atomically (``genogate.tls.write_file``)
and, should a later one fail, the ones already written are removed again. Nothing is ever overwritten.
Private keys get mode 0600 and are never printed; the output names files and certificate fingerprints only.

The development CA (``dev_ca_*``) exists for development, demos and tests. Production nodes get their
certificates from their institution's CA.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from genogate import tls
from genogate.config import read_file, render_toml
from genogate.errors import LocalError, UsageError
from genogate.files import FileBatch, Report
from genogate.settings import NAME_RE, check_listen, check_name
from node.config import NodeConfig

NODE_TOML = "node.toml"
CA_KEY = "ca.key"
CA_CERT = "ca.pem"
PSEUDONYM_KEY_BYTES = 32  # the format node.ingest.load_key reads: 64 hex digits and a newline

STUDIES_TEMPLATE = """\
# Studies this node answers for, maintained by the node's data steward (until signed study grants land).
# One [[study]] table per study; the node refuses queries from any study not listed here.
#
# [[study]]
# id = "S-2026-001"
# purpose = "HMB;NPU"                 # DUO permission, then the conditions the study meets
# kinds = ["allele_frequency", "cohort_count"]
# epsilon_total = 4.0                 # the study's budget at this node
# epsilon_per_query_cap = 1.0
# not_before = 2026-01-01T00:00:00Z   # optional
# not_after = 2027-12-31T00:00:00Z
# researchers = ["alice"]             # client-certificate common names allowed to query
"""


@contextmanager
def _about(path: Path | str) -> Iterator[None]:
    """Turn a ``ValueError`` from ``genogate.tls`` into a one-line error naming the file concerned."""
    try:
        yield
    except ValueError as exc:
        raise LocalError(f"{path}: {exc}") from None


def _usage(check: Callable[[str], str], value: str, what: str) -> None:
    try:
        check(value)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


# init -----------------------------------------------------------------------------------------------------


def _check_public_key_hex(text: str) -> str:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"expected a raw Ed25519 public key as 64 hex digits, got {text!r}")
    return text


def init_node(
    directory: Path,
    name: str,
    listen: str = "127.0.0.1:0",
    *,
    committee_keys: tuple[str, ...] = (),
    coordinator: str = "",
    coordinator_common_name: str = "",
    metrics_listen: str = "",
) -> Report:
    """Create a node directory: config, identity key, TLS key and CSR, pseudonymisation key, studies file.
    ``committee_keys`` (hex), ``coordinator``, ``coordinator_common_name`` and ``metrics_listen`` go into the
    config when given.

    Refuses a directory that already holds a ``node.toml`` (or any of the files it would write)."""
    _usage(check_name, name, "--name")
    _usage(check_listen, listen, "--listen")
    for k in committee_keys:
        _usage(_check_public_key_hex, k, "--committee-key")
    if coordinator:
        _usage(check_listen, coordinator, "--coordinator")
    if metrics_listen:
        _usage(check_listen, metrics_listen, "--metrics-listen")
    if (directory / NODE_TOML).exists():
        raise LocalError(
            f"{directory / NODE_TOML} already exists: {directory} is already a node; init never overwrites "
            "(choose another --dir, or move the old node away)"
        )
    if directory.exists() and not directory.is_dir():
        raise LocalError(f"{directory} exists and is not a directory")

    tls_key = tls.new_key()
    sans = list(dict.fromkeys([name, "localhost", "127.0.0.1"]))
    with _about("--name"):
        csr = tls.new_csr(tls_key, name, sans)
    values: dict[str, object] = {
        "node.name": name,
        "server.listen": listen,
        "tls.ca_certs": Path("tls/ca.pem"),
        "tls.cert": Path("tls/node.pem"),
        "tls.key": Path("tls/node.key"),
        "keys.identity_key": Path("keys/identity.key"),
        "keys.pseudonym_key": Path("pseudonym.key"),
    }
    if committee_keys:
        values["grants.committee_keys"] = committee_keys
    if coordinator:
        values["grants.coordinator"] = coordinator
    if coordinator_common_name:
        values["grants.coordinator_common_name"] = coordinator_common_name
    if metrics_listen:
        values["server.metrics_listen"] = metrics_listen
    today = dt.datetime.now(dt.UTC).date().isoformat()
    header = (
        f"genogate node {name!r}, created by genogate-node init on {today}.\n"
        "Relative paths resolve against this file's directory. Environment variables\n"
        "GENOGATE_NODE_<SECTION>__<KEY> override any setting."
    )
    config_text = render_toml(NodeConfig, values, header=header)

    batch = FileBatch(dirs=[(directory, 0o700), (directory / "keys", 0o700), (directory / "tls", 0o700)])
    batch.add(directory / "keys" / "identity.key", tls.new_identity_key(), "Ed25519 identity key", secret=True)
    batch.add(directory / "tls" / "node.key", tls_key, "TLS private key", secret=True)
    batch.add(directory / "tls" / "node.csr", csr, f"certificate request (CN={name}; {', '.join(sans)})")
    pseudonym = secrets.token_bytes(PSEUDONYM_KEY_BYTES).hex() + "\n"
    batch.add(directory / "pseudonym.key", pseudonym.encode(), "pseudonymisation key", secret=True)
    batch.add(directory / "studies.toml", STUDIES_TEMPLATE.encode(), "trusted studies (none yet)")
    batch.add(directory / NODE_TOML, config_text.encode(), "node configuration")  # last: marks a complete node
    report = Report()
    batch.commit(report)
    d = directory
    report.notes += [
        "",
        "next steps:",
        f"  1. have your institution's CA sign {d / 'tls/node.csr'} as a server certificate (and for client use "
        f"too if the node fetches revocation lists or runs the health probe) and put it at {d / 'tls/node.pem'}",
        f"     (development only: genogate-node dev-ca issue --ca CA_DIR --csr {d / 'tls/node.csr'} "
        f"--out {d / 'tls/node.pem'} --server --client)",
        f"  2. put the PEM bundle of the CAs whose client certificates this node accepts at {d / 'tls/ca.pem'}",
        f"  3. list the studies this node answers for in {d / 'studies.toml'}",
        f"  4. ingest: genogate-node ingest --store {d / 'store.duckdb'} --key {d / 'pseudonym.key'} "
        "--vcf FILE --samples SHEET",
        f"  5. serve the node with {d / NODE_TOML}",
    ]
    if listen.endswith(":0"):
        report.notes.append(
            f"  (listen is {listen}: a free port is picked at start; set [server] listen for a fixed one)"
        )
    return report


# development CA -------------------------------------------------------------------------------------------


def dev_ca_init(directory: Path, name: str = "genogate dev CA", days: int = 3650) -> Report:
    """Create a development CA in ``directory``: ``ca.key`` (0600) and ``ca.pem``."""
    with _about("--name"):
        key_pem, cert_pem = tls.new_ca(name, days)
    batch = FileBatch(dirs=[(directory, 0o700)])
    batch.add(directory / CA_KEY, key_pem, "CA private key (development only)", secret=True)
    batch.add(directory / CA_CERT, cert_pem, "CA certificate")
    report = Report()
    batch.commit(report)
    report.notes.append(f"CA certificate sha256 fingerprint: {tls.fingerprint_sha256(cert_pem)}")
    return report


def _load_ca(ca_dir: Path) -> tuple[bytes, bytes]:
    return read_file(ca_dir / CA_KEY, "CA key", LocalError), read_file(ca_dir / CA_CERT, "CA certificate", LocalError)


def dev_ca_issue(ca_dir: Path, csr_path: Path, out: Path, *, server: bool, client: bool, days: int = 365) -> Report:
    """Sign a CSR with the development CA; the certificate goes to ``out`` (never overwritten)."""
    if not (server or client):
        raise UsageError("say what the certificate is for: --server, --client, or both")
    ca_key, ca_cert = _load_ca(ca_dir)
    csr = read_file(csr_path, "certificate signing request", LocalError)
    with _about(ca_dir):
        tls.check_ca(ca_key, ca_cert)
    with _about(csr_path):
        cert = tls.issue(ca_key, ca_cert, csr, server=server, client=client, days=days)
    usage = " and ".join(u for u, wanted in (("server", server), ("client", client)) if wanted)
    batch = FileBatch()
    batch.add(out, cert, f"{usage} certificate for CN={tls.common_name(cert)}")
    report = Report()
    batch.commit(report)
    report.notes.append(f"certificate sha256 fingerprint: {tls.fingerprint_sha256(cert)}")
    return report


def dev_ca_client(ca_dir: Path, name: str, out_dir: Path, days: int = 365) -> Report:
    """A client key and certificate (CN=``name``) for a researcher, coordinator or test, plus ``ca.pem``."""
    if not NAME_RE.match(name) or name in (".", "..", "ca"):
        raise UsageError("--name: 1-64 letters, digits, '_', '.' or '-' (and not 'ca')")
    ca_key, ca_cert = _load_ca(ca_dir)
    key = tls.new_key()
    with _about(ca_dir):
        # The name goes in the subject alternative names too: strict (webpki-style) verifiers require one.
        cert = tls.issue(ca_key, ca_cert, tls.new_csr(key, name, [name]), server=False, client=True, days=days)
    batch = FileBatch(dirs=[(out_dir, 0o755)])
    batch.add(out_dir / f"{name}.key", key, "client private key", secret=True)
    batch.add(out_dir / f"{name}.pem", cert, f"client certificate for CN={name}")
    ca_copy = out_dir / CA_CERT
    if not (ca_copy.exists() and ca_copy.read_bytes() == ca_cert):
        batch.add(ca_copy, ca_cert, "CA certificate (to verify servers)")
    report = Report()
    batch.commit(report)
    report.notes.append(f"certificate sha256 fingerprint: {tls.fingerprint_sha256(cert)}")
    return report
