"""The sample sheet: one row per participant with sex, birth year, ancestry, phenotypes and consent.

A TSV (or, for a ``.csv`` file, CSV) file with a header line, as an institution exports it: its columns are
mapped to ours by ``SheetColumns`` (``node.ingest.sheet_columns``; without a mapping the header uses our names),
each cell is normalised by ``node.ingest.sheet_values`` (the table in ``docs/operations/sheets.md``), and
anything ambiguous is refused naming the file, the line, the column and why; nothing is guessed.
``sample_id`` is required and unique; the other columns are optional but, when present, validated strictly.
Enclosing double quotes (R's ``write.table``), a UTF-8 byte-order mark (Excel) and empty trailing header
cells are accepted.

A sheet may list more participants than a VCF holds (``node.ingest.pipeline`` keeps those of the VCF's
samples and counts the others); it is read whole and every row is validated, used or not.

Phenotype terms are HPO ids or WHO ICD-10 codes (spellings in ``genogate.ontology``), validated against the
releases ``node.ontology`` loads, and stored as the primary id they stand for (an obsolete HPO id as its
replacement).

``read_sheet(path, columns)`` returns the participants; ``load_sheet`` also what the ingest report shows
(columns used and ignored, cells normalised). Other commands that read a sheet call these.
"""

from __future__ import annotations

import csv
import datetime as _dt
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from genogate import duo
from genogate.errors import IngestError
from genogate.words import plural
from node import ontology
from node.ingest import sheet_values as values
from node.ingest.sheet_columns import COLUMNS, TARGETS, SheetColumns, looks_like

__all__ = ["COLUMNS", "Participant", "Sheet", "SheetColumns", "load_sheet", "read_sheet"]

T = TypeVar("T")
_DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon"}


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


@dataclass(frozen=True)
class Sheet:
    """A sheet read and validated: its participants (in sheet order) and what reading it did."""

    path: Path
    participants: tuple[Participant, ...]
    used: Mapping[str, str]  # our column -> the sheet's column it was read from
    ignored: tuple[str, ...] = ()  # the sheet's columns read as none of ours
    normalised: Mapping[str, int] = field(default_factory=dict)  # our column -> cells whose spelling changed

    def report(self) -> list[str]:
        """Lines for the ingest report: the mapping, ignored columns, normalised cells."""
        out = []
        renamed = [f"{ours}={theirs}" for ours, theirs in self.used.items() if ours != theirs]
        if renamed:
            out.append("columns      " + ", ".join(renamed))
        if self.ignored:
            out.append(f"ignored      {plural(len(self.ignored), 'column')} of the sheet: {', '.join(self.ignored)}")
        if self.normalised:
            parts = ", ".join(f"{ours} {n}" for ours, n in self.normalised.items())
            out.append(f"normalised   {plural(sum(self.normalised.values()), 'cell')}: {parts}")
        return out


def read_sheet(path: Path, columns: SheetColumns | None = None) -> list[Participant]:
    """Parse and validate a sample sheet; raise ``IngestError`` naming file, line, column and reason."""
    return list(load_sheet(path, columns).participants)


def load_sheet(path: Path, columns: SheetColumns | None = None) -> Sheet:
    """``read_sheet`` with what the report shows (``Sheet``)."""
    path = Path(path)
    columns = columns or SheetColumns()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(str(path), f"cannot read the sample sheet ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as exc:
        raise IngestError(str(path), f"the sample sheet is not UTF-8 text (byte {exc.start})") from None
    delimiter = columns.delimiter or ("," if path.suffix.lower() == ".csv" else "\t")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise IngestError(str(path), "the sample sheet is empty (it needs a header line with sample_id)")
    header = _fields(lines[0], delimiter, f"{path}:1")
    while header and not header[-1]:
        header.pop()  # empty trailing header cells: a spreadsheet's stray delimiters
    width = len(header)
    used, ignored = _resolve(path, header, columns)
    index = {ours: header.index(theirs) for ours, theirs in used.items()}
    label = {ours: ours if theirs == ours else f"{theirs} ({ours})" for ours, theirs in used.items()}

    this_year = _dt.date.today().year
    seen: dict[str, int] = {}
    out: list[Participant] = []
    lines_of: list[int] = []
    normalised: Counter[str] = Counter()
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        fields = _fields(line, delimiter, where)
        if len(fields) < width or any(fields[width:]):
            raise IngestError(
                where, f"expected {width} {_DELIMITER_NAMES[delimiter]}-separated fields, found {len(fields)}"
            )
        cells = {ours: fields[i] for ours, i in index.items()}
        p = _participant(_Row(cells, where, label, normalised), columns.age_reference_year, this_year)
        sid = p.sample_id
        if sid in seen:
            raise IngestError(where, f"sample id {sid!r} appears twice (first on line {seen[sid]})")
        seen[sid] = lineno
        out.append(p)
        lines_of.append(lineno)
    if not out:
        raise IngestError(str(path), "the sample sheet has a header but no participants")
    if any(p.phenotypes for p in out):
        out = _resolve_terms(path, out, lines_of, ontology.load())
    counts = {ours: normalised[ours] for ours in TARGETS if normalised[ours]}
    return Sheet(path, tuple(out), used, ignored, counts)


def _fields(line: str, delimiter: str, where: str) -> list[str]:
    try:
        rows = list(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        why = "unbalanced double quotes" if '"' in line else "unreadable line"
        raise IngestError(where, f"{why} ({exc})") from None
    return [f.strip() for f in rows[0]] if rows else []


def _resolve(path: Path, header: list[str], columns: SheetColumns) -> tuple[dict[str, str], tuple[str, ...]]:
    """Which sheet column each of ours is read from, and the sheet's columns left unused."""
    where = f"{path}:1"
    shown = ", ".join(repr(h) for h in header)
    used: dict[str, str] = {}
    for ours in TARGETS:
        theirs = columns.names.get(ours)
        if theirs is None and ours != "age" and ours in header:
            if not (ours == "birth_year" and columns.names.get("age")):
                used[ours] = ours
        elif theirs:
            if theirs not in header:
                raise IngestError(where, f"column {theirs!r} (mapped to {ours}) is not in the header; it has {shown}")
            used[ours] = theirs
    if "sample_id" not in used:
        raise IngestError(
            where,
            f"the header has no sample_id column (header: {'|'.join(header)}); name the column that holds the "
            "sample ids with --sheet-columns sample_id=COLUMN",
        )
    dupes = sorted({t for t in used.values() if header.count(t) > 1})
    if dupes:
        raise IngestError(where, f"column(s) given twice: {', '.join(dupes)}")
    unused = [h or f"(unnamed column {i + 1})" for i, h in enumerate(header) if h not in used.values()]
    for name in unused:
        alike = looks_like(name)
        if alike is None or alike in used or alike in columns.names:
            continue
        if {"age": "birth_year", "birth_year": "age"}.get(alike) in used:
            continue  # a second column about the birth year, while one is read: an extra
        raise IngestError(
            where,
            f"column {name!r} looks like our {alike} column but is not read as one: map it ({alike}={name}) or "
            f"say the sheet has none ({alike}=) rather than have it ignored",
        )
    return used, tuple(unused)


class _Row:
    """One row's cells by our column; each conversion's failure names the line and the column."""

    def __init__(self, cells: dict[str, str], where: str, label: dict[str, str], normalised: Counter[str]):
        self.cells, self.where, self.label, self.normalised = cells, where, label, normalised

    def get(self, ours: str, convert: Callable[[str], T], default: T) -> T:
        if ours not in self.cells:
            return default
        text = self.cells[ours]
        try:
            value = convert(text)
        except ValueError as exc:
            raise IngestError(self.where, f"column {self.label[ours]}: {exc}") from None
        if ours == "age" or values.shown(value) != text:
            self.normalised[ours] += 1
        return value


def _participant(row: _Row, reference_year: int | None, this_year: int) -> Participant:
    birth_year = row.get("birth_year", lambda t: values.birth_year(t, this_year), None)
    if reference_year is not None:
        birth_year = row.get("age", lambda t: values.birth_year_from_age(t, reference_year, this_year), birth_year)
    return Participant(
        row.get("sample_id", values.sample_id, ""),
        row.get("sex", values.sex, "U"),
        birth_year,
        row.get("ancestry", values.ancestry, None),
        row.get("phenotypes", values.phenotypes, ()),
        row.get("consent", values.consent, ()),
    )


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
