"""``CoordinatorConfig``: every setting of the coordinator, one frozen section per concern, loaded by
``load_coordinator_config``; and the committee members file the server reads at start (``load_members``).

``deploy/config/coordinator.example.toml`` documents every setting; a contract test keeps it complete.
Environment variables ``GENOGATE_COORDINATOR_<SECTION>__<KEY>`` override the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from genogate import config
from genogate.errors import ConfigError
from genogate.settings import LogSettings, ServerSettings, TlsSettings, at_least, between, check_name

ENV_PREFIX = "GENOGATE_COORDINATOR_"
_HEX_KEY_RE = re.compile(r"[0-9a-f]{64}")


# Checks (each returns the value, normalised, or raises ValueError) ----------------------------------------


def check_common_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Certificate common names: non-empty, at most 64 characters, no surrounding spaces; duplicates dropped."""
    out: list[str] = []
    for name in names:
        if not name or len(name) > 64 or name != name.strip():
            raise ValueError(f"{name!r} is not a certificate common name (1-64 characters, no surrounding spaces)")
        if name not in out:
            out.append(name)
    return tuple(out)


def check_public_key_hex(text: str) -> bytes:
    """A raw Ed25519 public key written as 64 hex digits (either case) -> its 32 bytes."""
    word = text.strip().lower()
    if not _HEX_KEY_RE.fullmatch(word):
        raise ValueError("a public key is 64 hex digits (a raw 32-byte Ed25519 key)")
    return bytes.fromhex(word)


# Sections -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoordinatorSettings:
    name: str = field(
        metadata={
            "help": "The coordinator's name: 1-64 letters, digits, '_', '.' or '-'. It is the common name of the "
            "coordinator's certificate.",
            "check": check_name,
        }
    )


@dataclass(frozen=True)
class CommitteeSettings:
    signing_key: Path = field(
        metadata={
            "help": "Ed25519 private key (PEM) that signs study grants and revocation lists; nodes trust its "
            "public key. Keep it mode 0600."
        }
    )
    approvals_required: int = field(
        default=2,
        metadata={
            "help": "Approvals by distinct committee members that issue a study's grant (k of n); one rejection "
            "rejects. Applies to studies proposed from now on.",
            "check": at_least(1),
        },
    )
    members_file: Path = field(
        default=Path("committee.toml"),
        metadata={
            "help": "TOML file listing the committee members whose signed reviews count, one [[member]] table "
            "each with name and public_key_hex; read at start (genogate-coordinator committee add appends)."
        },
    )


@dataclass(frozen=True)
class RolesSettings:
    operators: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Client-certificate common names allowed to register nodes and researchers. Empty: nobody "
            "can, until operators are listed.",
            "check": check_common_names,
        },
    )
    nodes: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Client-certificate common names allowed to fetch the revocation list. Empty: any client "
            "with a trusted certificate (the list is signed and names only study ids).",
            "check": check_common_names,
        },
    )


#: The coordinator state implementations ``[state] backend`` may name (``coordinator.state.open_state``).
StateBackend = Literal["sqlite"]


@dataclass(frozen=True)
class StateSettings:
    backend: StateBackend = field(
        default="sqlite",
        metadata={
            "help": "Where the coordinator keeps its state. 'sqlite': one SQLite file at path, the only "
            "implementation today. A PostgreSQL implementation (for replicated coordinators) plugs in here: one "
            "more class behind coordinator.state.CoordinatorState, chosen by this setting.",
        },
    )
    path: Path = field(
        default=Path("state.sqlite"),
        metadata={
            "help": "The SQLite file of the registry, studies, reviews, grants and revocations. Back it up; "
            "never delete it (revocations would be forgotten)."
        },
    )


@dataclass(frozen=True)
class FanoutSettings:
    site_timeout_ms: int = field(
        default=10_000,
        metadata={
            "help": "Default per-site deadline of a federated query, first attempt to last outcome, in ms (a "
            "query may ask for another, up to max_site_timeout_ms). A site that misses it is reported timed_out; "
            "the others are not held.",
            "check": between(100, 600_000),
        },
    )
    max_site_timeout_ms: int = field(
        default=120_000,
        metadata={"help": "The longest per-site deadline a query may ask for, in ms.", "check": between(100, 600_000)},
    )
    max_attempts: int = field(
        default=3,
        metadata={
            "help": "Attempts per site, retries included. Only UNAVAILABLE and DEADLINE_EXCEEDED are retried, "
            "always with the same signed bytes (same query id): a node that answered already returns its stored "
            "release, so a retry never spends budget twice or draws fresh noise.",
            "check": between(1, 10),
        },
    )
    retry_backoff_ms: int = field(
        default=100,
        metadata={
            "help": "Pause before the first retry, doubled before each further one, in ms.",
            "check": at_least(0),
        },
    )


def _positive_decimal(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError(f"must be a finite number greater than 0, got {value}")
    return value


@dataclass(frozen=True)
class PolicySettings:
    epsilon_per_query_min: Decimal = field(
        default=Decimal("0.001"),
        metadata={
            "help": "Smallest epsilon per query the coordinator fans out where a target site publishes no floor of "
            "its own (a site's published floor applies where it has one). A smaller query is refused before any "
            "site is asked, so a tiny epsilon cannot charge every site and return nothing useful.",
            "check": _positive_decimal,
        },
    )
    max_variants_per_query: int = field(
        default=10_000,
        metadata={
            "help": "Most variants one query may name. It sets the largest query envelope the coordinator accepts "
            "(256 bytes per variant plus 64 KiB), checked before the envelope is decoded or its signature "
            "verified, and the server's largest accepted message (that plus 1 MiB).",
            "check": between(1, 1_000_000),
        },
    )


@dataclass(frozen=True)
class AuditSettings:
    path: Path = field(
        default=Path("audit.sqlite"),
        metadata={
            "help": "The coordinator's append-only, hash-chained audit log: every federated query with who asked, "
            "the study, each site's outcome and the digests and signature of each node's signed receipt (the values "
            "stay in the node's ledger). Verify with `genogate-coordinator "
            "audit verify`; back it up with the state."
        },
    )


@dataclass(frozen=True)
class CoordinatorConfig:
    coordinator: CoordinatorSettings = field(metadata={"help": "Who this coordinator is."})
    server: ServerSettings = field(metadata={"help": "The gRPC server."})
    tls: TlsSettings = field(metadata={"help": "Mutual TLS: every caller must present a client certificate."})
    committee: CommitteeSettings = field(
        metadata={"help": "The access committee: its signing key, its members and how many approvals it takes."}
    )
    roles: RolesSettings = field(metadata={"help": "Who may call what, by client-certificate common name."})
    state: StateSettings = field(metadata={"help": "Durable state."})
    fanout: FanoutSettings = field(metadata={"help": "Federated queries: how the coordinator asks the sites."})
    policy: PolicySettings = field(metadata={"help": "Limits on the queries the coordinator fans out."})
    audit: AuditSettings = field(metadata={"help": "The tamper-evident audit log."})
    log: LogSettings = field(metadata={"help": "Logging."})


def load_coordinator_config(path: Path, env: Mapping[str, str] = os.environ) -> CoordinatorConfig:
    """Load the coordinator's configuration file plus ``GENOGATE_COORDINATOR_*`` overrides; one ``ConfigError``
    lists every problem. Files are not opened here; ``check_files`` checks those needed to start."""
    return config.load(CoordinatorConfig, path, ENV_PREFIX, env)


def check_files(cfg: CoordinatorConfig) -> None:
    """Refuse (one ``ConfigError``) if a file the coordinator needs before it can serve is missing."""
    needed = {
        "[tls] ca_certs": cfg.tls.ca_certs,
        "[tls] cert": cfg.tls.cert,
        "[tls] key": cfg.tls.key,
        "[committee] signing_key": cfg.committee.signing_key,
        "[committee] members_file": cfg.committee.members_file,
    }
    missing = [f"{setting}: {path} does not exist" for setting, path in needed.items() if not path.is_file()]
    if missing:
        raise ConfigError("; ".join(missing))


# The committee members file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A committee member as the members file lists them: a name and a raw 32-byte Ed25519 public key."""

    name: str
    public_key: bytes


MEMBERS_TEMPLATE = """\
# The access committee: members whose signed reviews count (k of them approve a study).
# Add members with: genogate-coordinator committee add --config CONFIG --name NAME --public-key HEX
# or by hand, one table each; the coordinator reads this file when it starts.
#
# [[member]]
# name = "carol"
# public_key_hex = "<64 hex digits: the member's raw Ed25519 public key>"
"""


def parse_members(text: str, where: str) -> list[Member]:
    """The members listed in a members file's text; one ``ConfigError`` lists every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    problems = [f"{where}: unknown key {key!r} (expected [[member]] tables)" for key in data if key != "member"]
    tables = data.get("member", [])
    if not isinstance(tables, list):
        problems.append(f"{where}: member must be [[member]] tables")
        tables = []
    members: list[Member] = []
    for i, table in enumerate(tables, 1):
        loc = f"{where}: member {i}"
        if not isinstance(table, dict):
            problems.append(f"{loc}: not a table")
            continue
        problems += [f"{loc}: unknown key {key!r}" for key in table if key not in ("name", "public_key_hex")]
        name, key_hex = table.get("name"), table.get("public_key_hex")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            problems.append(f"{loc}: name must be a non-empty string of at most 200 characters")
            continue
        try:
            key = check_public_key_hex(key_hex if isinstance(key_hex, str) else "")
        except ValueError as exc:
            problems.append(f"{loc} ({name}): public_key_hex: {exc}")
            continue
        if any(m.public_key == key for m in members):
            problems.append(f"{loc} ({name}): the same public key is listed twice")
            continue
        members.append(Member(name, key))
    if problems:
        raise ConfigError("; ".join(problems))
    return members


def load_members(path: Path) -> list[Member]:
    """The committee members listed in ``path`` (``ConfigError`` naming the file if it is missing or bad)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the committee members file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the committee members file is not UTF-8 text") from None
    return parse_members(text, str(path))


def example_toml() -> str:
    """The text of ``deploy/config/coordinator.example.toml``: every setting with its help and default."""
    return config.render_toml(
        CoordinatorConfig,
        {
            "coordinator.name": "example-coordinator",
            "tls.ca_certs": Path("tls/ca.pem"),
            "tls.cert": Path("tls/coordinator.pem"),
            "tls.key": Path("tls/coordinator.key"),
            "committee.signing_key": Path("keys/committee.key"),
        },
        header=EXAMPLE_HEADER,
    )


EXAMPLE_HEADER = """\
genogate coordinator configuration. Relative paths resolve against this file's directory.
Every setting can be overridden by an environment variable GENOGATE_COORDINATOR_<SECTION>__<KEY>,
e.g. GENOGATE_COORDINATOR_ROLES__OPERATORS=alice,bob (lists: comma-separated).
Settings without a default: [coordinator] name, [tls] ca_certs, cert, key, [committee] signing_key.
"""
