"""Cohort filters evaluated in memory: participant attributes are loaded once per store (``participants()`` of
its ``node.backend.GenotypeBackend``), and a filter
becomes a boolean mask over sample ids with a few numpy operations (~0.1 ms for 100k participants,
against ~4 ms for the same filter as SQL over the samples table).

Semantics are those of ``node.planner`` (which a test uses as the reference): every atom is definite, an
unknown birth year or ancestry never matches, and ``NOT f`` is exactly the complement of ``f``. Ancestry
labels compare in canonical upper case. A phenotype term matches every participant annotated with it or with
any of its descendants: the store's ``term_closure`` (``node.ontology``) gives, once at start, the set of
participants under each term, so a filter on a term costs one mask, whatever the size of its subtree. A term
that is in the vocabulary but under which nobody is annotated matches nobody; a term outside the vocabulary
is refused (``TermIndex.check``, before any data is touched).

Consent: ``consent_groups`` are the participants by their consent codes in force. A node applying live
consent changes (``node.consent_view``) makes a ``Cohorts`` per consent state with ``with_consent``, which
shares every attribute mask and replaces the codes only; ``consented`` is the mask of participants whose
codes admit a study purpose, computed once per purpose and ``Cohorts``.

Thread-safety: a ``Cohorts`` is immutable after construction (its memo of ``consented`` masks is guarded by a
lock) and may be shared by threads.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from genogate.ontology import canonical_label
from genogate.query import AgeRange, AncestryIn, And, Everyone, Filter, Not, Or, PhenotypeHas, SexIs
from node.backend import ParticipantSource

Mask = npt.NDArray[np.bool_]


class Cohorts:
    def __init__(self, source: ParticipantSource):
        people = source.participants()
        n = len(people)
        self.n = n
        self.sex = np.array(people.sex, dtype="<U1")
        self.birth_year = np.array([-1 if y is None else y for y in people.birth_year], dtype=np.int32)
        groups = sorted({canonical_label(a) for a in people.ancestry if a})
        self.ancestry_groups: tuple[str, ...] = tuple(groups)
        self._ancestry_code = {g: i for i, g in enumerate(groups)}
        self.ancestry = np.array(
            [self._ancestry_code.get(canonical_label(a), -1) if a else -1 for a in people.ancestry], dtype=np.int32
        )
        self.terms = source.terms()
        # Participants under each term (annotated with it or a descendant), from the store's is-a closure: a
        # bool mask for a term held by more than 1/16 of everyone (a copy is the cheapest mask; at most 16 x
        # the closure's size in such masks), else the participants' ids (a scatter of a few microseconds).
        self._dense: dict[str, Mask] = {}
        self._sparse: dict[str, npt.NDArray[np.int32]] = {}
        for ancestor, ids in people.under.items():
            k = len(ids)
            if k == 0:
                continue
            if 16 * k > n:
                dense = np.zeros(n, dtype=bool)
                dense[ids] = True
                self._dense[ancestor] = dense
            else:
                self._sparse[ancestor] = ids
        self.consent: tuple[tuple[str, ...], ...] = people.consent
        self.consent_groups = _groups(people.consent, n)
        self._consented: dict[object, Mask] = {}
        self._lock = threading.Lock()

    def with_consent(self, consent: Sequence[tuple[str, ...]]) -> Cohorts:
        """These cohorts with each participant's consent codes replaced by ``consent`` (in sid order)."""
        if len(consent) != self.n:
            raise ValueError(f"{len(consent)} participants' consent for {self.n} participants")
        other = copy.copy(self)
        other.consent = tuple(consent)
        other.consent_groups = _groups(other.consent, self.n)
        other._consented, other._lock = {}, threading.Lock()
        return other

    def consented(self, purpose: object, admits: Callable[[tuple[str, ...]], bool]) -> Mask:
        """Participants whose consent codes ``admits`` accepts, remembered per ``purpose`` (the caller's key
        for ``admits``); read-only."""
        with self._lock:
            mask = self._consented.get(purpose)
        if mask is None:
            mask = np.zeros(self.n, dtype=bool)
            for codes, members in self.consent_groups:
                if admits(codes):
                    mask |= members
            mask.flags.writeable = False
            with self._lock:
                mask = self._consented.setdefault(purpose, mask)
        return mask

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
            wanted = {canonical_label(g) for g in f.groups}
            codes = [self._ancestry_code[g] for g in wanted if g in self._ancestry_code]
            return np.isin(self.ancestry, codes) if codes else np.zeros(self.n, dtype=bool)
        if isinstance(f, PhenotypeHas):
            primary = self.terms.primary(f.term)  # refuses a term outside the vocabulary
            dense = self._dense.get(primary)
            if dense is not None:
                return dense.copy()
            out = np.zeros(self.n, dtype=bool)
            sparse = self._sparse.get(primary)
            if sparse is not None:
                out[sparse] = True
            return out
        if isinstance(f, Not):
            return ~self.mask(f.item, this_year)
        masks = [self.mask(item, this_year) for item in f.items]
        out = masks[0]
        for m in masks[1:]:
            out = out & m if isinstance(f, And) else out | m
        assert isinstance(f, And | Or)
        return out


def _groups(consent: Sequence[tuple[str, ...]], n: int) -> list[tuple[tuple[str, ...], Mask]]:
    """The participants holding each distinct tuple of consent codes, as masks."""
    by_consent: dict[tuple[str, ...], list[int]] = {}
    for sid, codes in enumerate(consent):
        by_consent.setdefault(codes, []).append(sid)
    groups = []
    for codes, sids in by_consent.items():
        mask = np.zeros(n, dtype=bool)
        mask[sids] = True
        groups.append((codes, mask))
    return groups
