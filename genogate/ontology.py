"""How phenotype terms and categorical labels are spelled: one canonical form for each, shared by both sides.

Phenotype terms name a concept of one of the ontologies a node validates against:

* ``HP:nnnnnnn`` — the Human Phenotype Ontology; exactly seven digits (``hp:0001250`` is ``HP:0001250``;
  ``HP:1250`` is refused, not padded: a short id is more likely a typo than a shorthand).
* ``ICD10:<code>`` — WHO ICD-10: a category (``ICD10:G40``), a subcategory (``ICD10:G40.9``; ``G409`` is
  written with its dot), a block (``ICD10:G40-G47``) or a chapter in Roman numerals (``ICD10:VI``). The prefix
  is ``ICD10`` in any case; ICD-10-CM codes such as ``G40.91`` are not WHO ICD-10.

Other prefixes pass this syntax check unchanged; a node refuses them as unknown terms (``UNKNOWN_TERM``),
since they name no ontology it holds. Which terms exist is the node's business (``node.ontology``): this
module only decides spelling, without any vocabulary, so the researcher's client refuses malformed ids before
anything is sent.

Labels of categorical attributes (ancestry groups) compare case-insensitively: their canonical form is
upper case, at ingest and in a filter's canonical form alike.
"""

from __future__ import annotations

import re

from genogate.errors import InvalidArgument, Reason

HPO = "HP"
ICD10 = "ICD10"
PREFIXES = (HPO, ICD10)
"""Canonical prefixes of the ontologies phenotype terms may come from."""

_HPO_CODE = re.compile(r"^\d{7}$")
_ICD10_CODE = re.compile(r"^(?:[A-Z]\d\d(?:\.[0-9A-Z]{1,2})?|[A-Z]\d\d-[A-Z]\d\d|[IVX]{1,5})$")
_ICD10_UNDOTTED = re.compile(r"^([A-Z]\d\d)([0-9A-Z]{1,2})$")


def _malformed(detail: str) -> InvalidArgument:
    return InvalidArgument(detail, reason=Reason.INVALID_FILTER, message="the cohort filter is malformed")


def canonical_term(term: str) -> str:
    """The canonical spelling of a phenotype term; ``InvalidArgument`` (INVALID_FILTER) when an HPO or ICD-10
    id is malformed. Terms of other prefixes are returned unchanged."""
    prefix, sep, code = term.strip().partition(":")
    if not sep:
        raise _malformed(f"phenotype term {term!r} is not PREFIX:CODE, e.g. HP:0001250 or ICD10:C50")
    upper = prefix.upper()
    if upper == HPO:
        if not _HPO_CODE.match(code):
            raise _malformed(f"{term!r} is not an HPO id: HPO ids are HP: and seven digits, e.g. HP:0001250")
        return f"{HPO}:{code}"
    if upper == ICD10:
        code = code.upper()
        undotted = _ICD10_UNDOTTED.match(code)
        if undotted:
            code = f"{undotted.group(1)}.{undotted.group(2)}"
        if not _ICD10_CODE.match(code):
            raise _malformed(
                f"{term!r} is not a WHO ICD-10 code: write a category (ICD10:G40), a subcategory (ICD10:G40.9), "
                "a block (ICD10:G40-G47) or a chapter (ICD10:VI)"
            )
        return f"{ICD10}:{code}"
    return term.strip()


def canonical_label(label: str) -> str:
    """The canonical (upper-case) form of a categorical label such as an ancestry group."""
    return label.strip().upper()
