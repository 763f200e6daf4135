"""Cohort filters evaluated in memory: participant attributes are loaded once per store, and a filter
becomes a boolean mask over sample ids with a few numpy operations (~0.1 ms for 100k participants,
against ~4 ms for the same filter as SQL over the samples table).

Semantics are those of ``node.planner`` (which a test uses as the reference): every atom is definite, an
unknown birth year or ancestry never matches, and ``NOT f`` is exactly the complement of ``f``.

Thread-safety: a ``Cohorts`` is immutable after construction and may be shared by threads.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from genogate.query import AgeRange, AncestryIn, And, Everyone, Filter, Not, Or, PhenotypeHas, SexIs
from node.store import Store

Mask = npt.NDArray[np.bool_]


class Cohorts:
    def __init__(self, store: Store):
        rows = store.con.execute(
            "SELECT sid, sex, coalesce(birth_year, -1), coalesce(ancestry, ''), phenotypes, consent "
            "FROM samples ORDER BY sid"
        ).fetchall()
        n = len(rows)
        self.n = n
        self.sex = np.array([r[1] for r in rows], dtype="<U1")
        self.birth_year = np.array([r[2] for r in rows], dtype=np.int32)
        groups = sorted({r[3] for r in rows if r[3]})
        self._ancestry_code = {g: i for i, g in enumerate(groups)}
        self.ancestry = np.array([self._ancestry_code.get(r[3], -1) for r in rows], dtype=np.int32)
        self._terms: dict[str, Mask] = {}
        for sid, *_, phenotypes, _consent in rows:
            for term in phenotypes:
                mask = self._terms.get(term)
                if mask is None:
                    mask = self._terms[term] = np.zeros(n, dtype=bool)
                mask[sid] = True
        self.consent_groups: list[tuple[tuple[str, ...], Mask]] = []
        by_consent: dict[tuple[str, ...], list[int]] = {}
        for r in rows:
            by_consent.setdefault(tuple(r[5]), []).append(r[0])
        for codes, sids in by_consent.items():
            mask = np.zeros(n, dtype=bool)
            mask[sids] = True
            self.consent_groups.append((codes, mask))

    def mask(self, f: Filter, this_year: int) -> Mask:
        """Participants satisfying ``f`` (ages are this year minus the birth year)."""
        if isinstance(f, Everyone):
            return np.ones(self.n, dtype=bool)
        if isinstance(f, SexIs):
            same: Mask = self.sex == f.sex
            return same
        if isinstance(f, AgeRange):
            known = self.birth_year >= 0
            if f.min_years is not None:
                known &= self.birth_year <= this_year - f.min_years
            if f.max_years is not None:
                known &= self.birth_year >= this_year - f.max_years
            return known
        if isinstance(f, AncestryIn):
            codes = [self._ancestry_code[g] for g in f.groups if g in self._ancestry_code]
            return np.isin(self.ancestry, codes) if codes else np.zeros(self.n, dtype=bool)
        if isinstance(f, PhenotypeHas):
            term = self._terms.get(f.term)
            return term.copy() if term is not None else np.zeros(self.n, dtype=bool)
        if isinstance(f, Not):
            return ~self.mask(f.item, this_year)
        masks = [self.mask(item, this_year) for item in f.items]
        out = masks[0]
        for m in masks[1:]:
            out = out & m if isinstance(f, And) else out | m
        assert isinstance(f, And | Or)
        return out
