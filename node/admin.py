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
from genogate.signing import key_id
from node.config import NodeConfig

NODE_TOML = "node.toml"
CA_KEY = "ca.key"
CA_CERT = "ca.pem"
PSEUDONYM_KEY_BYTES = 32  # the format node.ingest.load_key reads: 64 hex digits and a newline

DEFAULT_LISTEN = "0.0.0.0:50051"
"""Where ``init`` makes a node listen unless told otherwise: every interface (the coordinator reaches the node
from another host; every call must present a client certificate of a trusted CA) on the port the Dockerfile
and the Kubernetes manifests use. Written into ``node.toml``, so every restart keeps the endpoint that the
coordinator registered."""

STUDIES_TEMPLATE = """\
# Studies this node answers for on its own data steward's approval, outside any federation committee.
# Read ONLY when node.toml says [studies] local = true (off by default: committee-signed grants are the
# approval chain, see [grants]). One [[study]] table per study.
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


def check_committee_key(text: str) -> str:
    """A committee's public key as ``[grants] committee_keys`` takes it: 64 hex digits (the raw 32-byte
    Ed25519 key, as ``genogate-coordinator committee key`` prints it), returned in lower case."""
    key = text.strip().lower()
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32 or len(key) != 64:
        shown = repr(text) if len(text) <= 80 else f"{text[:40]!r}... ({len(text)} characters)"
        raise ValueError(
            "expected the committee's public key as 64 hex digits (what `genogate-coordinator committee key` "
            f"prints), got {shown}"
        )
    return key


def check_address(address: str) -> str:
    """An address to dial: ``HOST:PORT`` with a port from 1 to 65535 (IPv6 hosts in brackets)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        hint = " (no port)" if not sep or not port.isdigit() else ""
        raise ValueError(f"expected HOST:PORT such as coord.example.org:50051, got {address!r}{hint}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"expected HOST:PORT with an IPv6 host in brackets ([::1]:50051), got {address!r}")
    return address


def _check_cn(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"expected a certificate common name of 1-64 letters, digits, '_', '.' or '-', got {name!r}")
    return name


def init_node(
    directory: Path,
    name: str,
    listen: str = DEFAULT_LISTEN,
    *,
    committee_keys: tuple[str, ...] = (),
    coordinator: str = "",
    coordinator_common_name: str = "",
    metrics_listen: str = "",
) -> Report:
    """Create a node directory: config, identity key, TLS key and CSR, pseudonymisation key.

    With ``committee_keys`` (hex) and ``coordinator`` (both or neither) the node joins that federation: the
    config trusts the committee's grants, fetches revocation lists from the coordinator and answers
    ``coordinator_common_name`` (the coordinator's certificate name) under grants; local studies stay off and
    no studies file is written. Without them, an empty trusted-studies file is written for local studies.
    ``listen`` is written into the config, so restarts keep the endpoint (port 0 picks a new one each time).

    Refuses bad input (naming the option) and a directory that already holds a ``node.toml`` (or any of the
    files it would write)."""
    _usage(check_name, name, "--name")
    _usage(check_listen, listen, "--listen")
    keys: list[str] = []
    for k in committee_keys:
        try:
            key = check_committee_key(k)
        except ValueError as exc:
            raise UsageError(f"--committee-key: {exc}") from None
        if key not in keys:
            keys.append(key)
    if coordinator:
        _usage(check_address, coordinator, "--coordinator")
    if coordinator_common_name:
        _usage(_check_cn, coordinator_common_name, "--coordinator-cn")
    if keys and not coordinator:
        raise UsageError(
            "--committee-key needs --coordinator HOST:PORT: without a coordinator to fetch the committee's "
            "revocation list from, the node can never confirm a grant and refuses every query under one"
        )
    if coordinator and not keys:
        raise UsageError(
            "--coordinator needs --committee-key HEX: the node trusts grants and revocation lists signed by that "
            "committee key only (ask the coordinator operator: genogate-coordinator committee key)"
        )
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
        "studies.local": False,
    }
    if keys:
        values["grants.committee_keys"] = tuple(keys)
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
    if not keys:
        batch.add(directory / "studies.toml", STUDIES_TEMPLATE.encode(), "local trusted studies (none; off)")
    batch.add(directory / NODE_TOML, config_text.encode(), "node configuration")  # last: marks a complete node
    report = Report()
    batch.commit(report)
    report.notes += _next_steps(directory, name, listen, tuple(keys), coordinator, coordinator_common_name)
    return report


def _next_steps(d: Path, name: str, listen: str, keys: tuple[str, ...], coordinator: str, cn: str) -> list[str]:
    """What to do after ``init``: the certificate, the CA bundle, the data, serving, and (when joining) what
    to send the coordinator operator: public information only."""
    port = listen.rpartition(":")[2]
    notes = [""]
    if keys:
        notes += [
            f"joins the federation of the coordinator at {coordinator}; grants are trusted when signed by:",
            *(f"  committee key fingerprint {key_id(bytes.fromhex(k))}" for k in keys),
            "  (compare with the fingerprint `genogate-coordinator committee key` prints to the coordinator "
            "operator, and with 'grant signed by' in `genogate study show`)",
        ]
        if not cn:
            notes.append(
                "  no --coordinator-cn: queries under grants without the per-site breakdown will be refused; "
                f"set [grants] coordinator_common_name in {d / NODE_TOML} to the coordinator's certificate name"
            )
        notes.append("")
    whose = "the coordinator's" if keys else "your callers'"
    steps = [
        f"have {'a CA that the coordinator trusts' if keys else 'your institution CA'} sign {d / 'tls/node.csr'} "
        "for server and client use and put the "
        f"certificate at {d / 'tls/node.pem'}\n     (development only: genogate-node dev-ca issue --ca CA_DIR "
        f"--csr {d / 'tls/node.csr'} --out {d / 'tls/node.pem'} --server --client)",
        f"put the CA certificates whose client certificates this node accepts at {d / 'tls/ca.pem'}: the "
        f"{whose} CA (and your own, for `genogate-node health`)",
        f"load your data: genogate-node ingest --store {d / 'store.duckdb'} --vcf FILE --samples SHEET",
    ]
    if not keys:
        steps.append(
            "this node answers no studies yet: to join a federation, set [grants] committee_keys, coordinator "
            f"and coordinator_common_name in {d / NODE_TOML} (what init --committee-key --coordinator "
            "--coordinator-cn writes); for studies your own data steward approves, set [studies] local = true "
            f"and list them in {d / 'studies.toml'}"
        )
    steps.append(f"start it: genogate-node serve --config {d / NODE_TOML}   (listens on {listen}, kept in node.toml)")
    if keys:
        steps.append(
            f"send the coordinator operator (all public): the endpoint HOST:{port} at which the coordinator "
            f"reaches this node, the certificate {d / 'tls/node.pem'} and the certificate of the CA that issued "
            f"it; they register it with: genogate nodes register --name {name} --endpoint HOST:{port} --cert "
            f"{name}.pem (which reads the genome build from the running node)"
        )
    notes += ["next steps:", *(f"  {i}. {step}" for i, step in enumerate(steps, 1))]
    if port == "0":
        notes.append(
            f"  (listen is {listen}: a new free port at every start, so a registered endpoint goes stale; "
            "set [server] listen to a fixed port)"
        )
    return notes


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
