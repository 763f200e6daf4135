"""Which of a sample sheet's columns hold what: ``SheetColumns``, from ``--sheet-columns`` or ``--sheet-map``.

Our columns are ``sample_id`` (required), ``sex``, ``birth_year``, ``ancestry``, ``phenotypes`` and
``consent``, plus ``age`` (with a reference year) as the alternative to ``birth_year``. An institution's export
names them its own way (``sample.id``, ``Sex``, ``YOB``); a mapping says which of its columns is which of ours:

* ``--sheet-columns sample_id=sample.id,sex=Sex,birth_year=YOB`` (OURS=THEIRS, comma-separated; a name
  holding a comma needs the file form);
* ``--sheet-map FILE``, a TOML file::

      [columns]
      sample_id = "sample.id"
      sex = "Sex"
      age = "Age at recruitment"
      phenotypes = ""            # the sheet has no phenotype column: ignore look-alikes such as "Phenotype"
      [age]
      reference_year = 2019      # the year the ages were recorded (required with an age column)
      [format]
      delimiter = ","            # default: "," for a .csv file, a tab otherwise

A column of ours not mapped is read from a column of exactly its name, if the sheet has one. An empty
mapping (``phenotypes=""``) says the sheet has no such column. The sheet's other columns are ignored and
listed in the ingest report, except a column whose name looks like one of ours that nothing supplies
(``looks_like``: ``Sex`` or ``Gender`` when no column is read as ``sex``, a typo such as ``consents``): that
is refused as ambiguous rather than guessed or silently dropped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from genogate.errors import IngestError, UsageError
from genogate.normalform import MIN_BIRTH_YEAR

COLUMNS = ("sample_id", "sex", "birth_year", "ancestry", "phenotypes", "consent")
TARGETS = (*COLUMNS, "age")
DELIMITERS = ("\t", ",", ";")
# Header names (lower-case, letters and digits only) that mean one of our columns: an unmapped column of such
# a name, when nothing supplies that column of ours, is refused instead of silently ignored.
LOOK_ALIKES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "sample_id": frozenset({"sampleid", "sample", "samplename", "id", "iid", "individualid", "participantid"}),
        "sex": frozenset({"sex", "gender"}),
        "birth_year": frozenset({"birthyear", "yearofbirth", "yob", "dob", "dateofbirth", "birthdate"}),
        "age": frozenset({"age", "ageyears"}),
        "ancestry": frozenset({"ancestry", "ancestries", "superpop", "superpopulation", "ethnicity"}),
        "phenotypes": frozenset({"phenotype", "phenotypes", "hpo", "hpoterms", "diagnosis", "diagnoses"}),
        "consent": frozenset({"consent", "consents", "consentcode", "consentcodes", "duo", "datause"}),
    }
)


def squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def looks_like(name: str) -> str | None:
    """Which of our columns a sheet's column name looks like: a known synonym (``Gender``, ``DOB``) or, for
    our longer names, a near miss (``consents``, ``phenotpyes``); None for anything else."""
    squashed = squash(name)
    for ours, alikes in LOOK_ALIKES.items():
        if squashed in alikes:
            return ours
    for ours in TARGETS:
        target = squash(ours)
        if len(target) >= 6 and difflib.SequenceMatcher(None, squashed, target).ratio() >= 0.8:
            return ours
    return None


@dataclass(frozen=True)
class SheetColumns:
    """Ours -> theirs ("" for "the sheet has no such column"), the age's reference year, the delimiter."""

    names: Mapping[str, str] = field(default_factory=dict)
    age_reference_year: int | None = None
    delimiter: str | None = None

    @property
    def mapped(self) -> bool:
        """True when the operator described the sheet (unmapped extra columns are then ignored)."""
        return bool(self.names) or self.age_reference_year is not None or self.delimiter is not None

    def override(self, other: SheetColumns) -> SheetColumns:
        """These columns with ``other``'s entries taking precedence (``--sheet-columns`` over ``--sheet-map``)."""
        return SheetColumns(
            {**self.names, **other.names},
            other.age_reference_year if other.age_reference_year is not None else self.age_reference_year,
            other.delimiter if other.delimiter is not None else self.delimiter,
        )

    def digest(self) -> str:
        """Identifies the mapping; part of a store's sheet fingerprint so a new mapping is a new sheet."""
        described = json.dumps([sorted(self.names.items()), self.age_reference_year, self.delimiter])
        return hashlib.sha256(described.encode()).hexdigest()

    @classmethod
    def parse(cls, text: str | None, *, age_reference_year: int | None = None, check: bool = True) -> SheetColumns:
        """``OURS=THEIRS,...`` as given to ``--sheet-columns``; ``UsageError`` naming the bad entry.
        ``check=False`` leaves the consistency check to the caller (after merging with a ``--sheet-map``)."""
        names: dict[str, str] = {}
        try:
            for entry in text.split(",") if text else ():
                ours, eq, theirs = entry.partition("=")
                ours = ours.strip()
                if not eq:
                    raise ValueError(f"{entry.strip()!r} is not OURS=THEIRS (e.g. sample_id=sample.id)")
                _check_target(ours)
                if ours in names:
                    raise ValueError(f"{ours} is mapped twice")
                names[ours] = theirs.strip()
            columns = cls(names, age_reference_year)
            if check:
                columns.check()
        except ValueError as exc:
            raise UsageError(f"--sheet-columns: {exc}") from None
        return columns

    @classmethod
    def load(cls, path: Path) -> SheetColumns:
        """A ``--sheet-map`` TOML file (format in the module docstring); ``IngestError`` naming the file."""
        where = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise IngestError(where, f"cannot read the sheet map ({exc.strerror or exc})") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise IngestError(where, f"the sheet map is not valid TOML ({exc})") from None
        try:
            columns = cls._from_toml(data)
            columns.check()
        except ValueError as exc:
            raise IngestError(where, str(exc)) from None
        return columns

    @classmethod
    def _from_toml(cls, data: dict[str, object]) -> SheetColumns:
        unknown = sorted(set(data) - {"columns", "age", "format"})
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(unknown)}; a sheet map has [columns], [age], [format]")
        table, age, fmt = (data.get(k, {}) for k in ("columns", "age", "format"))
        if not (isinstance(table, dict) and isinstance(age, dict) and isinstance(fmt, dict)):
            raise ValueError("[columns], [age] and [format] must be tables")
        names = {}
        for ours, theirs in table.items():
            _check_target(ours)
            if not isinstance(theirs, str):
                raise ValueError(f"[columns] {ours} must be a column name in quotes")
            names[ours] = theirs.strip()
        if set(age) - {"reference_year"} or set(fmt) - {"delimiter"}:
            raise ValueError("[age] takes reference_year and [format] takes delimiter, nothing else")
        year = age.get("reference_year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
            raise ValueError("[age] reference_year must be a year, e.g. 2019")
        delimiter = fmt.get("delimiter")
        if delimiter is not None and delimiter not in DELIMITERS:
            raise ValueError('[format] delimiter must be "\\t", "," or ";"')
        return cls(names, year, delimiter)

    def check(self) -> None:
        """``ValueError`` unless the mapping is consistent on its own (the header is checked when read)."""
        theirs = [t for t in self.names.values() if t]
        twice = sorted({t for t in theirs if theirs.count(t) > 1})
        if twice:
            raise ValueError(f"column {twice[0]!r} is mapped to two of our columns")
        if self.names.get("age") and self.names.get("birth_year"):
            raise ValueError("map birth_year or age, not both")
        if self.names.get("age") and self.age_reference_year is None:
            raise ValueError(
                "an age column needs the year the ages were recorded (--sheet-age-year, or [age] reference_year "
                "in the sheet map): an age alone does not fix a birth year"
            )
        if self.age_reference_year is not None and not self.names.get("age"):
            raise ValueError("a reference year is given but no age column is mapped (age=COLUMN)")
        if self.age_reference_year is not None and not MIN_BIRTH_YEAR <= self.age_reference_year <= 9999:
            raise ValueError(f"the age reference year {self.age_reference_year} is not a year")


def _check_target(ours: str) -> None:
    if ours not in TARGETS:
        raise ValueError(f"{ours!r} is not one of our columns ({', '.join(TARGETS)})")
