"""One cell of a sample sheet into its stored form: the normalisation table of ``docs/operations/sheets.md``.

Each function takes the cell's text (already stripped of white space and enclosing quotes) and returns the
stored value, or raises ``ValueError`` with the reason a person can act on; ``node.ingest.sheet`` adds the
file, line and column. Nothing here guesses: a spelling is accepted only when it has one meaning.

* **sex**: ``M``/``male``/``m``/``1`` is M; ``F``/``female``/``f``/``2`` is F; ``U``/``unknown``/``0``/``NA``/
  empty is U (case-insensitive). ``1`` and ``2`` are PLINK's ``.fam``/``.ped`` convention (1 = male,
  2 = female, 0 = unknown). Anything else (``X``, ``other``, ``-9``) is refused: the store holds F, M or U.
* **birth year**: a four-digit year (``1984``; ``1984.0`` as spreadsheets and pandas write whole numbers),
  or an ISO 8601 date ``1984-03-12`` / ``1984-03`` (the year is kept). ``12/03/1984`` is refused (day and
  month order differ between countries) and so is ``84`` (which century?).
* **age**: whole years at a reference year the operator states; the birth year stored is the reference year
  minus the age (one year early for someone whose birthday had not yet come that year). Without a
  reference year an age column is refused (``node.ingest.sheet_columns``).
* **ancestry**: a label of letters, digits, ``_``, ``.``, ``-``, stored upper-case (``eur`` is ``EUR``).
* **lists** (phenotypes, consent): items separated by ``;``, ``,``, ``|`` or white space.
* **consent**: DUO short codes (``GRU``, ``hmb``, ``DS-C50``) or DUO ids in any case (``DUO:0000042``,
  ``duo:0000042``, ``DUO_0000042``, ``http://purl.obolibrary.org/obo/DUO_0000042``), all stored as short
  codes (``genogate.duo``).
* ``NA``, ``N/A`` (any case) and an empty cell mean "not recorded" in every column but ``sample_id``.
"""

from __future__ import annotations

import datetime as _dt
import re

from genogate import duo
from genogate.errors import GenogateError
from genogate.normalform import MIN_BIRTH_YEAR  # the age fold of the canonical filter relies on it
from genogate.ontology import canonical_label, canonical_term

MISSING = frozenset({"", "na", "n/a"})
SEX = {
    "m": "M",
    "male": "M",
    "1": "M",
    "f": "F",
    "female": "F",
    "2": "F",
    "u": "U",
    "unknown": "U",
    "0": "U",
    "na": "U",
    "n/a": "U",
    "": "U",
}
MAX_AGE = 150
_ID_RE = re.compile(r"^[^\s]{1,128}$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TERM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.\-]+$")
_SEPARATORS = re.compile(r"[;,|\s]+")
_YEAR_RE = re.compile(r"^(\d{4})(?:\.0+)?$")
_ISO_RE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
_AGE_RE = re.compile(r"^(\d{1,3})(?:\.0+)?$")
_DUO_ID_RE = re.compile(r"^(?:https?://purl\.obolibrary\.org/obo/)?DUO[:_](\d{7})$", re.IGNORECASE)


def is_missing(text: str) -> bool:
    return text.lower() in MISSING


def sample_id(text: str) -> str:
    if not _ID_RE.match(text):
        raise ValueError("the sample id is empty or contains white space")
    return text


def sex(text: str) -> str:
    found = SEX.get(text.lower())
    if found is None:
        raise ValueError(
            f"{text!r} is not a sex this store records: M (male, m, 1), F (female, f, 2) or U (unknown, 0, NA, "
            "empty); 1 and 2 are PLINK's codes"
        )
    return found


def birth_year(text: str, this_year: int) -> int | None:
    if is_missing(text):
        return None
    year = _YEAR_RE.match(text)
    iso = _ISO_RE.match(text)
    if year:
        value = int(year.group(1))
    elif iso:
        y, m, d = int(iso.group(1)), int(iso.group(2)), int(iso.group(3) or 1)
        try:
            _dt.date(y, m, d)
        except ValueError:
            raise ValueError(f"{text!r} is not a real date (ISO 8601 is YYYY-MM-DD)") from None
        value = y
    elif "/" in text or re.fullmatch(r"\d{1,2}[.\-]\d{1,2}[.\-]\d{2,4}", text):
        raise ValueError(f"{text!r}: day and month order is ambiguous; write a year (1984) or an ISO date (1984-03-12)")
    elif re.fullmatch(r"\d{1,3}", text):
        raise ValueError(f"{text!r} is not a four-digit year (which century?); an age needs the age mapping")
    else:
        raise ValueError(f"{text!r} is not a four-digit year or an ISO date (YYYY-MM-DD)")
    return _in_range(value, text, this_year)


def birth_year_from_age(text: str, reference_year: int, this_year: int) -> int | None:
    if is_missing(text):
        return None
    age = _AGE_RE.match(text)
    if not age or int(age.group(1)) > MAX_AGE:
        raise ValueError(f"{text!r} is not an age in whole years (0-{MAX_AGE})")
    return _in_range(reference_year - int(age.group(1)), f"age {text} at {reference_year}", this_year)


def _in_range(year: int, text: str, this_year: int) -> int:
    if not MIN_BIRTH_YEAR <= year <= this_year:
        shown = f"birth year {year}" + ("" if text == str(year) else f" ({text})")
        raise ValueError(f"{shown} is outside {MIN_BIRTH_YEAR}-{this_year}")
    return year


def ancestry(text: str) -> str | None:
    if is_missing(text):
        return None
    if not _GROUP_RE.match(text):
        raise ValueError(f"{text!r}: an ancestry label is 1-64 letters, digits, '_', '.' or '-'")
    return canonical_label(text)  # labels compare case-insensitively: eur is EUR


def items(text: str) -> list[str]:
    """The items of a list cell; NA or empty is no items."""
    if is_missing(text):
        return []
    return [t for t in _SEPARATORS.split(text) if t]


def phenotypes(text: str) -> tuple[str, ...]:
    terms = set()
    for term in items(text):
        if not _TERM_RE.match(term):
            raise ValueError(f"phenotype term {term!r} is not PREFIX:CODE (e.g. HP:0001250, ICD10:C50)")
        try:
            terms.add(canonical_term(term))
        except GenogateError as exc:
            raise ValueError(exc.detail) from None
    return tuple(sorted(terms))


def consent(text: str) -> tuple[str, ...]:
    codes = []
    for code in items(text):
        duo_id = _DUO_ID_RE.match(code)
        codes.append(f"DUO:{duo_id.group(1)}" if duo_id else code)
    return duo.normalise_codes(codes)


def shown(value: object) -> str:
    """How a stored value reads in the sheet's own notation (to count the cells normalisation changed)."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ";".join(value)
    return str(value)
