"""Builders for real nodes in tests: a development CA, a node directory made by ``init`` with a CA-signed
certificate, an ingested store, trusted studies, and client identities."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genogate.nodeclient import ClientTLS
from node.admin import dev_ca_client, dev_ca_init, dev_ca_issue, init_node


@dataclass(frozen=True)
class Node:
    dir: Path
    name: str

    @property
    def config(self) -> Path:
        return self.dir / "node.toml"

    @property
    def store(self) -> Path:
        return self.dir / "store.duckdb"


def make_ca(directory: Path) -> Path:
    dev_ca_init(directory)
    return directory


def client_tls(ca: Path, name: str, out: Path) -> ClientTLS:
    dev_ca_client(ca, name, out)
    return ClientTLS.from_files(ca / "ca.pem", out / f"{name}.key", out / f"{name}.pem")


def make_node(directory: Path, name: str, ca: Path, *, client: bool = False) -> Node:
    """``client``: the node's certificate also authenticates it as a client (to fetch revocations)."""
    init_node(directory, name, "127.0.0.1:0")  # a port the OS picks: many nodes on one machine
    dev_ca_issue(ca, directory / "tls" / "node.csr", directory / "tls" / "node.pem", server=True, client=client)
    shutil.copy(ca / "ca.pem", directory / "tls" / "ca.pem")
    return Node(directory, name)


def study_toml(
    study_id: str,
    *,
    purpose: str = "HMB",
    kinds: str = "all",
    epsilon_total: str = "10",
    cap: str = "1.0",
    researchers: tuple[str, ...] = ("alice",),
    not_after: str = "2099-01-01T00:00:00Z",
) -> str:
    kind_list = (
        '["cohort_count", "allele_frequency", "genotype_counts", "case_control", "carrier_count"]'
        if kinds == "all"
        else kinds
    )
    people = ", ".join(f'"{r}"' for r in researchers)
    return (
        f'[[study]]\nid = "{study_id}"\npurpose = "{purpose}"\nkinds = {kind_list}\nepsilon_total = {epsilon_total}\n'
        f"epsilon_per_query_cap = {cap}\nnot_after = {not_after}\nresearchers = [{people}]\n\n"
    )


def make_coordinator(
    root: Path, ca: Path, *, operators: tuple[str, ...] = ("op",), members: Sequence[tuple[str, bytes]] = ()
) -> Path:
    """A coordinator directory made by ``init``, its certificate signed by ``ca`` for server and client use
    (it calls the nodes), with committee ``members`` (name, raw public key) added. Returns the directory."""
    from coordinator.admin import add_member, init_coordinator

    d = root / "coord"
    init_coordinator(d, "coord", operators=operators)
    dev_ca_issue(ca, d / "tls" / "coordinator.csr", d / "tls" / "coordinator.pem", server=True, client=True)
    shutil.copy(ca / "ca.pem", d / "tls" / "ca.pem")
    for name, public_key in members:
        add_member(d / "coordinator.toml", name, public_key.hex(), env={})
    return d


def write_profile(path: Path, name: str, coordinator: str, ca: Path, clients: Path, signing_key: Path) -> Path:
    """A ``genogate`` profile for ``name``: its client certificate from ``client_tls`` (in ``clients``)."""
    path.write_text(
        "[profile]\n"
        f'name = "{name}"\ncoordinator = "{coordinator}"\n'
        f'ca_cert = "{ca / "ca.pem"}"\ncert = "{clients / f"{name}.pem"}"\n'
        f'key = "{clients / f"{name}.key"}"\nsigning_key = "{signing_key}"\n'
    )
    return path
