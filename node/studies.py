"""Studies a node will answer for: the ``Study`` value the service checks every query against, and the local
trusted-studies file.

A study normally reaches a node as a committee-signed grant, which ``node.grants.GrantVerifier`` turns into a
``Study``. With ``[studies] local = true`` a node also answers for local studies, approved by its own data
steward in a trusted-studies TOML file (``[studies] trusted_file``), whose researchers are authenticated by
their certificate common name only::

    [[study]]
    id = "S-2026-001"
    purpose = "HMB;NPU"                 # DUO permission, then the conditions the study meets
    kinds = ["allele_frequency", "cohort_count"]
    epsilon_total = 4.0                 # the study's budget at this node
    epsilon_per_query_cap = 1.0
    not_before = 2026-01-01T00:00:00Z   # optional
    not_after = 2027-12-31T00:00:00Z
    researchers = ["alice"]             # client-certificate common names allowed to query
    assembly = "GRCh38"                 # optional: the build of the study's coordinates (default: the node's)

A local study is the same value a verified grant becomes; the budgets above the study (the researcher's and
the node's caps, ``node.ledger``) apply to both alike.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from genogate import duo
from genogate.errors import ConfigError
from genogate.genome import BUILDS
from genogate.query import Kind


@dataclass(frozen=True)
class Study:
    study_id: str
    purpose: tuple[str, frozenset[str]]
    purpose_text: str
    kinds: frozenset[Kind]
    epsilon_total: Decimal
    epsilon_per_query_cap: Decimal
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    researchers: frozenset[str]
    assembly: str = ""  # the genome build the study's coordinates are on; "" = the node's own (local studies)


_FIELDS = {
    "id",
    "purpose",
    "kinds",
    "epsilon_total",
    "epsilon_per_query_cap",
    "not_before",
    "not_after",
    "researchers",
    "assembly",
}


def load_studies(path: Path) -> dict[str, Study]:
    """Parse the trusted-studies file, reporting every problem at once (``ConfigError``)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the trusted-studies file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    problems: list[str] = []
    out: dict[str, Study] = {}
    for i, raw in enumerate(data.get("study", []), start=1):
        where = f"{path}: study #{i}"
        try:
            study = _study(raw)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if study.study_id in out:
            problems.append(f"{where}: study id {study.study_id!r} appears twice")
        out[study.study_id] = study
    unknown = set(data) - {"study"}
    if unknown:
        problems.append(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; only [[study]] entries belong here")
    if problems:
        raise ConfigError("; ".join(problems))
    return out


def _study(raw: dict[str, object]) -> Study:
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_FIELDS))}")
    for required in ("id", "purpose", "kinds", "epsilon_total", "epsilon_per_query_cap", "researchers"):
        if required not in raw:
            raise ValueError(f"missing field {required!r}")
    sid = str(raw["id"])
    if not sid or len(sid) > 128:
        raise ValueError("id must be 1-128 characters")
    purpose = duo.parse_purpose(str(raw["purpose"]))
    kinds_raw = raw["kinds"]
    if not isinstance(kinds_raw, list) or not kinds_raw:
        raise ValueError("kinds must be a non-empty list")
    try:
        kinds = frozenset(Kind.parse(str(k)) for k in kinds_raw)
    except Exception as exc:  # noqa: BLE001 - InvalidArgument from Kind.parse becomes a config problem
        raise ValueError(str(exc)) from None
    total, cap = (
        _epsilon(raw["epsilon_total"], "epsilon_total"),
        _epsilon(raw["epsilon_per_query_cap"], "epsilon_per_query_cap"),
    )
    researchers = raw["researchers"]
    if not isinstance(researchers, list) or not all(isinstance(r, str) and r for r in researchers):
        raise ValueError("researchers must be a list of client-certificate common names")
    assembly = str(raw.get("assembly", ""))
    if assembly and assembly not in BUILDS:
        raise ValueError(f"assembly must be one of {', '.join(BUILDS)}")
    return Study(
        sid,
        purpose,
        str(raw["purpose"]),
        kinds,
        total,
        cap,
        _time(raw.get("not_before")),
        _time(raw.get("not_after")),
        frozenset(researchers),
        assembly,
    )


def _epsilon(value: object, name: str) -> Decimal:
    try:
        eps = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} must be a number") from None
    if not eps.is_finite() or eps <= 0:
        raise ValueError(f"{name} must be a positive number")
    return eps


def _time(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise ValueError("not_before / not_after must be TOML dates or date-times")
