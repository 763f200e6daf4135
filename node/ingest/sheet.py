"""The sample sheet: one row per participant with sex, birth year, ancestry, phenotypes and consent.

TSV with a header line. ``sample_id`` is required; the other columns are optional but, when present,
validated strictly. Every problem names the file, the line and the reason.

Ancestry labels are stored upper-case (``eur`` is ``EUR``). Phenotype terms are HPO ids or WHO ICD-10 codes
(spellings in ``genogate.ontology``), validated against the releases ``node.ontology`` loads, and stored as the
primary id they stand for (an obsolete HPO id as its replacement).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path

from genogate import duo
from genogate.errors import GenogateError, IngestError
from genogate.normalform import MIN_BIRTH_YEAR  # the age fold of the canonical filter relies on it
from genogate.ontology import canonical_label, canonical_term
from node import ontology

COLUMNS = ("sample_id", "sex", "birth_year", "ancestry", "phenotypes", "consent")
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "u": "U", "unknown": "U", "": "U"}
_ID_RE = re.compile(r"^[^\s]{1,128}$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TERM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.\-]+$")


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
    lines_of: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        if len(fields) != len(header):
            raise IngestError(where, f"expected {len(header)} tab-separated fields, found {len(fields)}")
        row = dict(zip(header, (f.strip() for f in fields), strict=True))
        out.append(_participant(row, where, this_year))
        lines_of.append(lineno)
        sid = out[-1].sample_id
        if sid in seen:
            raise IngestError(where, f"sample id {sid!r} appears twice (first on line {seen[sid]})")
        seen[sid] = lineno
    if not out:
        raise IngestError(str(path), "the sample sheet has a header but no participants")
    if any(p.phenotypes for p in out):
        out = _resolve_terms(path, out, lines_of, ontology.load())
    return out


def _resolve_terms(
    path: Path, participants: list[Participant], lines_of: list[int], onto: ontology.Ontologies
) -> list[Participant]:
    """Every phenotype term replaced by the primary id it stands for; an unknown term is refused naming the
    file, the line, the term and the ontology releases."""
    out = []
    for p, lineno in zip(participants, lines_of, strict=True):
        primaries = set()
        for term in p.phenotypes:
            primary = onto.vocabulary.get(term)
            if primary is None:
                prefix = term.partition(":")[0]
                known = prefix in ("HP", "ICD10")
                raise IngestError(
                    f"{path}:{lineno}",
                    f"phenotype term {term} is not in {onto.describe()}"
                    if known
                    else f"phenotype term {term}: phenotypes are HPO (HP:0001250) or WHO ICD-10 (ICD10:G40.9) terms",
                )
            primaries.add(primary)
        out.append(Participant(p.sample_id, p.sex, p.birth_year, p.ancestry, tuple(sorted(primaries)), p.consent))
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
    if ancestry is not None:
        ancestry = canonical_label(ancestry)  # labels compare case-insensitively: eur is EUR
    terms = set()
    for term in (t.strip() for t in row.get("phenotypes", "").split(";")):
        if not term:
            continue
        if not _TERM_RE.match(term):
            raise IngestError(where, f"phenotype term {term!r} is not PREFIX:CODE (e.g. HP:0001250, ICD10:C50)")
        try:
            terms.add(canonical_term(term))
        except GenogateError as exc:
            raise IngestError(where, exc.detail) from None
    phenotypes = tuple(sorted(terms))
    try:
        consent = duo.normalise_codes(row.get("consent", "").split(";"))
    except ValueError as exc:
        raise IngestError(where, str(exc)) from None
    return Participant(sid, _SEX[sex], birth_year, ancestry, phenotypes, consent)
