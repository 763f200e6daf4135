"""The sample sheet: one row per participant with sex, birth year, ancestry, phenotypes and consent.

TSV with a header line. ``sample_id`` is required; the other columns are optional but, when present,
validated strictly. Every problem names the file, the line and the reason.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path

from genogate import duo
from genogate.errors import IngestError

COLUMNS = ("sample_id", "sex", "birth_year", "ancestry", "phenotypes", "consent")
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "u": "U", "unknown": "U", "": "U"}
_ID_RE = re.compile(r"^[^\s]{1,128}$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TERM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.\-]+$")
MIN_BIRTH_YEAR = 1850


@dataclass(frozen=True, slots=True)
class Participant:
    sample_id: str
    sex: str  # F, M or U
    birth_year: int | None
    ancestry: str | None
    phenotypes: tuple[str, ...]
    consent: tuple[str, ...]

    @property
    def withdrawn(self) -> bool:
        return duo.WITHDRAWN in self.consent


def read_sheet(path: Path) -> list[Participant]:
    """Parse and validate a sample sheet; raise ``IngestError`` naming file, line and reason."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), f"cannot read the sample sheet ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(str(path), f"the sample sheet is not UTF-8 text (byte {exc.start})") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise IngestError(str(path), "the sample sheet is empty (it needs a header line with sample_id)")
    header = [h.strip() for h in lines[0].split("\t")]
    where = f"{path}:1"
    if "sample_id" not in header:
        raise IngestError(where, f"the header has no sample_id column (header: {'|'.join(header)})")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise IngestError(where, f"unknown column(s) {', '.join(unknown)}; allowed: {', '.join(COLUMNS)}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise IngestError(where, f"column(s) given twice: {', '.join(dupes)}")

    this_year = _dt.date.today().year
    seen: dict[str, int] = {}
    out: list[Participant] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        if len(fields) != len(header):
            raise IngestError(where, f"expected {len(header)} tab-separated fields, found {len(fields)}")
        row = dict(zip(header, (f.strip() for f in fields), strict=True))
        out.append(_participant(row, where, this_year))
        sid = out[-1].sample_id
        if sid in seen:
            raise IngestError(where, f"sample id {sid!r} appears twice (first on line {seen[sid]})")
        seen[sid] = lineno
    if not out:
        raise IngestError(str(path), "the sample sheet has a header but no participants")
    return out


def _participant(row: dict[str, str], where: str, this_year: int) -> Participant:
    sid = row["sample_id"]
    if not _ID_RE.match(sid):
        raise IngestError(where, "sample_id is empty or contains white space")
    sex = row.get("sex", "").lower()
    if sex not in _SEX:
        raise IngestError(where, f"sex {row['sex']!r} is not one of M, F, male, female, unknown")
    birth_year = None
    by = row.get("birth_year", "")
    if by:
        if not re.fullmatch(r"\d{4}", by):
            raise IngestError(where, f"birth_year {by!r} is not a four-digit year")
        birth_year = int(by)
        if not MIN_BIRTH_YEAR <= birth_year <= this_year:
            raise IngestError(where, f"birth_year {by} is outside {MIN_BIRTH_YEAR}-{this_year}")
    ancestry = row.get("ancestry", "") or None
    if ancestry is not None and not _GROUP_RE.match(ancestry):
        raise IngestError(where, "ancestry must be 1-64 letters, digits, '_', '.' or '-'")
    phenotypes = tuple(sorted({t.strip() for t in row.get("phenotypes", "").split(";") if t.strip()}))
    for term in phenotypes:
        if not _TERM_RE.match(term):
            raise IngestError(where, f"phenotype term {term!r} is not PREFIX:CODE (e.g. HP:0001250, ICD10:C50)")
    try:
        consent = duo.normalise_codes(row.get("consent", "").split(";"))
    except ValueError as exc:
        raise IngestError(where, str(exc)) from None
    return Participant(sid, _SEX[sex], birth_year, ancestry, phenotypes, consent)
