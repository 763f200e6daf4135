"""GA4GH Data Use Ontology (DUO) consent codes as they appear in sample sheets and study purposes.

Sheets and studies write the short codes (``GRU``, ``HMB``, ``DS-C50``, ``NPU``) or the DUO ids
(``DUO:0000042``); both normalise to the short form. ``WITHDRAWN`` is genogate's marker for a participant
who withdrew consent: it stands alone and such a participant is never counted.
"""

from __future__ import annotations

import re

WITHDRAWN = "WITHDRAWN"

# Data use permissions (what kind of research the participant agreed to).
PERMISSIONS: dict[str, str] = {
    "NRES": "DUO:0000004",  # no restriction
    "GRU": "DUO:0000042",  # general research use
    "HMB": "DUO:0000006",  # health or medical or biomedical research
    "DS": "DUO:0000007",  # disease specific research (written DS-<disease code>)
    "POA": "DUO:0000011",  # population origins or ancestry research only
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
    m = _DS_RE.match(code)
    if m:
        return f"DS-{m.group(1).upper()}"
    if upper == "DS":
        raise ValueError("DS needs a disease, e.g. DS-C50 or DS-MONDO:0007254")
    raise ValueError(
        f"unknown consent code {code!r}; use DUO codes such as GRU, HMB, DS-<disease>, NPU, "
        f"NCU, IRB (or DUO:00000xx ids), or {WITHDRAWN}"
    )


def normalise_codes(codes: list[str]) -> tuple[str, ...]:
    """Normalise a participant's codes; ``WITHDRAWN`` must stand alone. Sorted and de-duplicated."""
    out = sorted({normalise_code(c) for c in codes if c.strip()})
    if WITHDRAWN in out and len(out) > 1:
        raise ValueError(f"{WITHDRAWN} must be the only consent code of a withdrawn participant")
    return tuple(out)
