"""``NodeConfig``: every setting of a node, one frozen section per component, loaded by ``load_node_config``.

Each component receives only its own section (the ledger its ``LedgerSettings``, the policy its
``PolicySettings``). ``deploy/config/node.example.toml`` documents every setting; a contract test keeps it
complete. Environment variables ``GENOGATE_NODE_<SECTION>__<KEY>`` override the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from genogate import config, duo
from genogate.errors import ConfigError, GenogateError
from genogate.query import Kind
from genogate.settings import (
    LogSettings,
    ServerSettings,
    TlsSettings,
    check_name,
)
from genogate.settings import (
    at_least as _at_least,
)
from genogate.settings import (
    non_negative_float as _non_negative_float,
)
from node.ledger import MAX_AMOUNT, MAX_PERIOD_DAYS

ENV_PREFIX = "GENOGATE_NODE_"

ALL_KINDS = tuple(k.label for k in Kind)


# Checks (each returns the value, normalised, or raises ValueError) ----------------------------------------


def _positive_decimal(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return value


def _cap(value: Decimal) -> Decimal:
    """A cap on total ε: positive and no larger than the ledger can hold."""
    if not 0 < value <= MAX_AMOUNT:
        raise ValueError(f"must be greater than 0 and at most {MAX_AMOUNT}, got {value}")
    return value


def _days(value: int) -> int:
    if not 1 <= value <= MAX_PERIOD_DAYS:
        raise ValueError(f"must be 1 to {MAX_PERIOD_DAYS} days, got {value}")
    return value


def _probability(value: Decimal) -> Decimal:
    if not 0 < value < 1:
        raise ValueError(f"must be greater than 0 and less than 1, got {value}")
    return value


def check_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for text in kinds:
        try:
            label = Kind.parse(text).label
        except GenogateError as exc:
            raise ValueError(exc.detail) from None
        if label not in out:
            out.append(label)
    return tuple(out)


def check_purposes(codes: tuple[str, ...]) -> tuple[str, ...]:
    """DUO permissions, short form. ``DS`` admits every disease-specific purpose; ``DS-<x>`` only that one."""
    out: list[str] = []
    for text in codes:
        code = "DS" if text.strip().upper() == "DS" else ""
        if not code:
            try:
                code = duo.normalise_code(text)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        if code != "DS" and code not in duo.PERMISSIONS and not code.startswith("DS-"):
            raise ValueError(f"{text!r} is not a DUO permission; use GRU, HMB, DS, DS-<disease>, POA, CC or NRES")
        if code not in out:
            out.append(code)
    return tuple(out)


# Sections -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSettings:
    name: str = field(
        metadata={
            "help": "This node's name: 1-64 letters, digits, '_', '.' or '-'. It is the common name of the node's "
            "certificate and the site name that study grants must name.",
            "check": check_name,
        }
    )
    genome_build: Literal["", "GRCh37", "GRCh38"] = field(
        default="",
        metadata={
            "help": "The reference genome build of the store's data. Empty: the build ingest recorded from the data "
            "(the VCF header or `ingest --build`); set, the node refuses to start unless the store agrees. Queries "
            "on another build are refused (liftover is not supported)."
        },
    )


@dataclass(frozen=True)
class KeySettings:
    identity_key: Path = field(
        metadata={"help": "Ed25519 private key (PEM) the node signs its release receipts and audit log with."}
    )
    pseudonym_key: Path = field(
        default=Path("pseudonym.key"),
        metadata={
            "help": "Key of the keyed hash that pseudonymises sample ids at ingest (64 hex digits). Ingest "
            "needs the same key to add to an existing store; anyone holding it and a list of sample ids can "
            "link them to their pseudonyms."
        },
    )


@dataclass(frozen=True)
class StoreSettings:
    path: Path = field(
        default=Path("store.duckdb"),
        metadata={"help": "The DuckDB file holding the ingested genotypes and participants."},
    )
    backend: Literal["auto", "memory", "duckdb"] = field(
        default="auto",
        metadata={
            "help": "Where queries read genotype calls from. 'auto': a read-only copy in memory when it fits in "
            "memory_mb, else through DuckDB (logged at start). 'memory': always the copy; the node refuses to "
            "start when it would take more than memory_mb. 'duckdb': always through DuckDB (memory_mb unused). "
            "Answers are the same either way; only speed and memory differ.",
        },
    )
    memory_mb: int = field(
        default=1024,
        metadata={
            "help": "Keep a read-only copy of the store's genotype calls in memory when it fits in this many MiB "
            "(about 9 bytes per stored non-reference call, plus the bitsets of common variants; loaded at start, "
            "logged with its size): queries then read their rows from memory instead of running a DuckDB "
            "statement each. A larger store is read through DuckDB (backend = 'auto') or refused (backend = "
            "'memory'). 0: always through DuckDB.",
            "check": _at_least(0),
        },
    )
    covered_regions: Path | None = field(
        default=None,
        metadata={
            "help": "For exome or array data: a BED file of the regions the data covers (canonical or UCSC contig "
            "names). A variant or region outside them is refused as not covered (NOT_COVERED) instead of being "
            "counted as reference. Unset: the data covers every position of its contigs (genome data), unless "
            "ingest recorded covered regions (`ingest --covered-regions`); with both, a position must be in both.",
        },
    )


@dataclass(frozen=True)
class LedgerSettings:
    path: Path = field(
        default=Path("ledger.sqlite"),
        metadata={
            "help": "The SQLite file of privacy budget spent per study, and the node's tamper-evident audit log of "
            "every query (a release and its audit entry commit together; `genogate-node audit verify`). Never "
            "delete it: that would reset every study's budget at this node and lose its audit trail."
        },
    )


@dataclass(frozen=True)
class PolicySettings:
    epsilon_per_query_cap: Decimal = field(
        default=Decimal("1.0"),
        metadata={
            "help": "Largest epsilon one query may spend at this node, whatever the study grant allows.",
            "check": _positive_decimal,
        },
    )
    epsilon_per_query_min: Decimal = field(
        default=Decimal("0.001"),
        metadata={
            "help": "Smallest epsilon one query may ask for; smaller is refused before anything is charged. A tiny "
            "epsilon buys no useful answer (the noise scale is 1/epsilon) but makes every combination of noise "
            "distributions that large: a floor bounds the work and memory any one query can cause.",
            "check": _positive_decimal,
        },
    )
    epsilon_per_study_cap: Decimal = field(
        default=Decimal("4.0"),
        metadata={
            "help": "Largest total epsilon one study may spend at this node; a study's budget here is the "
            "smaller of this and its grant. 4 rather than 10: a single-target differencing attack ('everyone' vs "
            "'everyone not of the target's sex, age and ancestry') reached AUC 0.72 at 10 and 0.64 at 4 "
            "(SECURITY.md).",
            "check": _cap,
        },
    )
    epsilon_per_researcher_cap: Decimal = field(
        default=Decimal("8.0"),
        metadata={
            "help": "Largest total epsilon one researcher (a grant's researcher key, or a local study's certificate "
            "name) may spend at this node across all their studies within budget_period_days: spreading a question "
            "over many studies buys no more than this (default: twice the per-study cap; SECURITY.md).",
            "check": _cap,
        },
    )
    epsilon_per_node_cap: Decimal = field(
        default=Decimal("100.0"),
        metadata={
            "help": "Largest total epsilon this node spends across all researchers and studies within "
            "budget_period_days (the privacy loss any one participant here can suffer in that period).",
            "check": _cap,
        },
    )
    budget_period_days: int = field(
        default=365,
        metadata={
            "help": "The rolling period, in days, of epsilon_per_researcher_cap and epsilon_per_node_cap: a charge "
            "counts toward them for this many days (by whole UTC days: up to one day more, never less).",
            "check": _days,
        },
    )
    delta_per_query: Decimal = field(
        default=Decimal("1e-7"),
        metadata={
            "help": "Delta charged per query by the Gaussian mechanism, used only for vectors over many "
            "variants; pure epsilon-DP counts charge no delta.",
            "check": _probability,
        },
    )
    delta_per_study_cap: Decimal = field(
        default=Decimal("1e-5"),
        metadata={"help": "Largest total delta one study may spend at this node.", "check": _probability},
    )
    min_reportable_count: int = field(
        default=10,
        metadata={
            "help": "Noisy counts below this are reported as 'fewer than k' (applied to the noisy value, so "
            "it reveals nothing about the true count). 0 reports every count.",
            "check": _at_least(0),
        },
    )
    allowed_kinds: tuple[str, ...] = field(
        default=ALL_KINDS,
        metadata={
            "help": "Query kinds this node answers: " + ", ".join(ALL_KINDS) + ".",
            "check": check_kinds,
        },
    )
    allowed_purposes: tuple[str, ...] = field(
        default=("GRU", "HMB", "DS", "POA"),
        metadata={
            "help": "DUO permissions a study's purpose may have for this node to answer it: GRU, HMB, DS (any "
            "disease-specific purpose), DS-<disease> (only that disease), POA, CC (clinical care use: not research, "
            "so not accepted by default), NRES.",
            "check": check_purposes,
        },
    )
    max_variants_per_query: int = field(
        default=1000,
        metadata={"help": "Most variants one query may ask about.", "check": _at_least(1)},
    )
    rate_limit_per_study_per_minute: int = field(
        default=600,
        metadata={"help": "Most queries one study may make per minute at this node.", "check": _at_least(1)},
    )
    public_site_catalogue: bool = field(
        default=False,
        metadata={
            "help": "Whether this node treats the list of variant sites in its store as public. Region-based "
            "allele-frequency and carrier-count queries need it: their answers depend on which positions in the "
            "region carry a variant in this cohort, and the presence of a rare variant can single out a "
            "participant or a family. Set true only if that list is public anyway (e.g. a fixed genotyping array "
            "or a published call set). While false, such region queries are refused; queries that name their "
            "variants are unaffected (absent variants are answered as zero).",
        },
    )

    preview_participants: bool = field(
        default=False,
        metadata={
            "help": "Whether the coordinator's study preview may learn how many participants' consent admits a "
            "study's purpose here, as a power-of-ten bucket only (fewer than 10, 10-99, 100-999, ...; never the "
            "count, never under a filter). Not noised and charged to no budget: see docs/operations/preview.md "
            "for what a bucket can reveal. Off by default: any researcher with a federation certificate can ask for a "
            "preview of any purpose, and a bucket that moves when the count crosses a power of ten shows a "
            "consent change at that boundary.",
        },
    )

    @property
    def kinds(self) -> frozenset[Kind]:
        return frozenset(Kind.parse(k) for k in self.allowed_kinds)

    def admits_permission(self, permission: str) -> bool:
        """Whether a study purpose's DUO permission (short form, e.g. ``DS-C50``) is accepted here."""
        if permission.startswith("DS-") and "DS" in self.allowed_purposes:
            return True
        return permission in self.allowed_purposes

    def config_problems(self) -> list[str]:
        problems = []
        if self.epsilon_per_query_cap > self.epsilon_per_study_cap:
            problems.append("epsilon_per_query_cap must not exceed epsilon_per_study_cap")
        if self.epsilon_per_study_cap > self.epsilon_per_researcher_cap:
            problems.append("epsilon_per_study_cap must not exceed epsilon_per_researcher_cap")
        if self.epsilon_per_researcher_cap > self.epsilon_per_node_cap:
            problems.append("epsilon_per_researcher_cap must not exceed epsilon_per_node_cap")
        if self.delta_per_query > self.delta_per_study_cap:
            problems.append("delta_per_query must not exceed delta_per_study_cap")
        return problems


@dataclass(frozen=True)
class StudiesSettings:
    local: bool = field(
        default=False,
        metadata={
            "help": "Also answer the studies listed in trusted_file, approved by this institution's own data steward "
            "rather than by a federation committee (queries under them are authenticated by the caller's "
            "certificate name only). Off by default: committee-signed grants are the approval chain."
        },
    )
    trusted_file: Path = field(
        default=Path("studies.toml"),
        metadata={"help": "The local trusted-studies file ([[study]] entries), read only when local is true."},
    )


def check_public_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    for k in keys:
        try:
            raw = bytes.fromhex(k)
        except ValueError:
            raise ValueError(f"{k[:16]!r}... is not hex") from None
        if len(raw) != 32:
            raise ValueError("each committee key is a raw Ed25519 public key: 64 hex digits")
    return keys


@dataclass(frozen=True)
class GrantsSettings:
    committee_keys: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Raw Ed25519 public keys (64 hex digits each) of the access committees whose signed study grants "
            "this node accepts. Empty: the node accepts no grants, only its local trusted studies.",
            "check": check_public_keys,
        },
    )
    coordinator: str = field(
        default="",
        metadata={
            "help": "HOST:PORT of the coordinator the node fetches the committee-signed revocation list from (mTLS, "
            "with this node's certificate, which must then allow client authentication). Empty: no refresh, so "
            "queries under grants are refused until a fresh list is held (REVOCATION_UNCONFIRMED)."
        },
    )
    coordinator_common_name: str = field(
        default="",
        metadata={
            "help": "The common name of the coordinator's client certificate. Under a grant that does not allow the "
            "per-site breakdown, only this caller is answered (anyone else could otherwise read this site's own "
            "value), and budgets under grants are given only to it. Empty: such queries and budget requests are "
            "refused (NOT_AUTHORIZED).",
        },
    )
    revocation_refresh_seconds: float = field(
        default=30.0, metadata={"help": "How often the node fetches the revocation list.", "check": _non_negative_float}
    )
    revocation_max_staleness_seconds: float = field(
        default=300.0,
        metadata={
            "help": "A revocation list signed (or fetched) longer ago than this no longer confirms a grant: queries "
            "under grants are refused until a fresh one arrives.",
            "check": _non_negative_float,
        },
    )
    timestamp_window_seconds: float = field(
        default=300.0,
        metadata={
            "help": "A signed query's timestamp must lie within this many seconds of the node's clock.",
            "check": _non_negative_float,
        },
    )
    nonce_store: Path = field(
        default=Path("nonces.sqlite"),
        metadata={
            "help": "Deprecated, read only: the separate nonce file of versions before ledger schema 5. Nonces are "
            "kept in the ledger file, committed with each query's charge; if this file exists at start, its nonces "
            "are imported into the ledger (idempotent) and it may then be deleted."
        },
    )
    require_opt_in: bool = field(
        default=False,
        metadata={"help": "Answer only studies listed in opted_in (this node's own data steward's approval)."},
    )
    opted_in: tuple[str, ...] = field(
        default=(), metadata={"help": "Study ids this node's data steward approved (used with require_opt_in)."}
    )
    refused: tuple[str, ...] = field(
        default=(), metadata={"help": "Study ids this node refuses whatever their grant says."}
    )


@dataclass(frozen=True)
class OntologiesSettings:
    mondo: Path | None = field(
        default=None,
        metadata={
            "help": "The MONDO disease ontology as an OBO file (mondo.obo from the MONDO releases). With it, a "
            "participant's DS-MONDO:x consent admits studies of any disease under x (is_a); without it, a "
            "DS-MONDO:x consent admits only studies of exactly MONDO:x. DS-<ICD-10 code> consents always follow "
            "the WHO ICD-10 hierarchy (DS-C50 admits DS-C50.9). Read once at start.",
        },
    )


@dataclass(frozen=True)
class NodeConfig:
    node: NodeSettings = field(metadata={"help": "Who this node is."})
    server: ServerSettings = field(metadata={"help": "The gRPC server."})
    tls: TlsSettings = field(metadata={"help": "Mutual TLS: every caller must present a client certificate."})
    keys: KeySettings = field(metadata={"help": "The node's own keys (paths only; keep the files mode 0600)."})
    store: StoreSettings = field(metadata={"help": "Genotype store."})
    ledger: LedgerSettings = field(metadata={"help": "Privacy budget ledger."})
    policy: PolicySettings = field(
        metadata={"help": "The node's own limits, enforced whatever a study grant or the coordinator asks."}
    )
    studies: StudiesSettings = field(metadata={"help": "Which studies the node answers for."})
    grants: GrantsSettings = field(
        metadata={"help": "Signed study grants: whom the node trusts, and replay protection."}
    )
    log: LogSettings = field(metadata={"help": "Logging."})
    ontologies: OntologiesSettings = field(
        metadata={"help": "Disease ontologies for disease-specific (DS-<disease>) consent."},
    )


def load_node_config(path: Path, env: Mapping[str, str] = os.environ) -> NodeConfig:
    """Load a node's configuration file plus ``GENOGATE_NODE_*`` overrides; one ``ConfigError`` lists every
    problem. Files are not opened here; ``check_files`` checks that those the node needs to start exist."""
    return config.load(NodeConfig, path, ENV_PREFIX, env)


def check_files(cfg: NodeConfig) -> None:
    """Refuse (one ``ConfigError``) if a file the node needs before it can serve is missing."""
    needed = {
        "[tls] ca_certs": cfg.tls.ca_certs,
        "[tls] cert": cfg.tls.cert,
        "[tls] key": cfg.tls.key,
        "[keys] identity_key": cfg.keys.identity_key,
        "[keys] pseudonym_key": cfg.keys.pseudonym_key,
        **({"[studies] trusted_file": cfg.studies.trusted_file} if cfg.studies.local else {}),
        **({"[store] covered_regions": cfg.store.covered_regions} if cfg.store.covered_regions is not None else {}),
        **({"[ontologies] mondo": cfg.ontologies.mondo} if cfg.ontologies.mondo is not None else {}),
    }
    missing = [f"{setting}: {path} does not exist" for setting, path in needed.items() if not path.is_file()]
    if missing:
        raise ConfigError("; ".join(missing))


def example_toml() -> str:
    """The text of ``deploy/config/node.example.toml``: every setting with its help and default."""
    return config.render_toml(
        NodeConfig,
        {
            "node.name": "example-node",
            "tls.ca_certs": Path("tls/ca.pem"),
            "tls.cert": Path("tls/node.pem"),
            "tls.key": Path("tls/node.key"),
            "keys.identity_key": Path("keys/identity.key"),
        },
        header=EXAMPLE_HEADER,
    )


EXAMPLE_HEADER = """\
genogate node configuration. Relative paths resolve against this file's directory.
Every setting can be overridden by an environment variable GENOGATE_NODE_<SECTION>__<KEY>,
e.g. GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT=20 (lists: comma-separated).
Settings without a default: [node] name, [tls] ca_certs, cert, key, [keys] identity_key.
"""
