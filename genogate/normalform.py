"""The canonical form of a cohort filter, computed from the filter alone (and the year), never from data.

Two phrasings with the same canonical form are one question: the node answers the second with the first's
stored release at no cost, within one consent epoch (``genogate.kinds.canonical``). So the form may merge two
filters only where they select the same participants for **every** row a store can hold, never because of who
happens to be in it: two filters equal only by coincidence of the data must stay different, or the free stored
answer would leak.

**The semantics it preserves** are the evaluator's (``node.cohort.Cohorts.mask``, ``node.planner``): every
atom is definite (true or false) for every participant, and ``NOT f`` is exactly the complement of ``f``.

* ``sex=X``: sex is always one of F, M, U (the column is NOT NULL; ``node.ingest.sheet`` maps every spelling,
  the empty one included, to these three). So ``not (sex=M or sex=U)`` is ``sex=F`` and ``sex!=F`` is
  ``sex in {M, U}``.
* ``age`` in [lo, hi]: false when the birth year is unknown. So ``not age<40`` is "age >= 40 **or age
  unknown**", and is *not* merged with ``age>=40``. Age is the year minus the birth year; a stored birth year
  is at least ``MIN_BIRTH_YEAR`` (``node.ingest.sheet`` refuses earlier ones), so in year Y nobody is older than
  Y - 1850: an upper bound at or beyond that is no bound (``age>=40 and age<=200`` is ``age>=40`` until
  2050), and a lower bound beyond it selects nobody. The fold uses Y + 1, so a filter canonicalised on
  New Year's Eve and evaluated a moment later is still exact. Nothing is folded at the bottom: a birth year
  after the node's year (a clock behind the ingest) gives a negative age, which ``age>=0`` excludes.
* ``ancestry in G``: false when the ancestry is unknown; labels are an open set. So ``ancestry not in
  (ZZZ)`` is "everyone whose ancestry is not ZZZ, or unknown": **not** everyone, since a store may hold a ZZZ
  participant (that none is there is a fact about the data). Sets merge exactly: ``ancestry=EUR or
  ancestry=AFR`` is ``ancestry in (AFR,EUR)``, ``ancestry in (EUR,AFR) and ancestry!=AFR`` is
  ``ancestry=EUR``, ``ancestry=EUR or ancestry!=EUR`` is everyone.
* ``phenotype=T``: a participant has T (or a descendant) or not. Each term is its own yes/no attribute,
  spelled canonically; term relations (``T`` implies its ancestors) are not used: that would be the
  ontology's business, and leaving it out never merges wrongly.

**The form.** Negations are pushed down to the atoms (De Morgan, double negation). Each attribute's atoms
under one AND or OR merge into one *value set* (a set of sexes; a set of age intervals plus "unknown"; a
finite set of labels, or all labels but a finite set plus "unknown"; has / has not), and constant sets are
absorbed: a value set that is everything makes an OR everyone and drops out of an AND; an empty one makes
an AND nobody and drops out of an OR. Nested ANDs and ORs are flattened, duplicates removed, an operand
implied by another (``a or (a and b)``: ``a``) absorbed, and operands sorted. Each value set is then written
back in one fixed way with the existing atoms (``_Form.write``), so the result is an ordinary
filter the wire, the planner and the evaluator already understand, and canonicalising it again gives it
back unchanged (idempotent).

A filter that is everyone becomes ``Everyone``. A filter that selects nobody whatever the data (``age>=40
and age<30``, ``sex=F and sex=M``) is refused (INVALID_FILTER) rather than asked: its answer is known, and
asking would only spend ε.

This is a normal form, not a decision procedure: some equivalent filters still differ (``(a and b) or (a
and not b)`` is not reduced to ``a``, nor ``sex=F and (age>=40 or sex=M)`` to ``sex=F and age>=40``: a
literal does not restrict the literals inside a sibling operand); they are then two questions, each charged,
as before.

**Bounded work.** The input is bounded by ``check_filter_size`` (depth 16, 256 terms); each step is linear
or quadratic in the operands of one AND or OR, and value sets never hold more pieces than the atoms that made
them (one more). Written back, a value set takes at most three nodes per atom that made it (a lone ``age<=200``
folded is ``age<=0 or age>=1``); AND and OR nodes only disappear, and a written value set is at most four
levels deep, so the form stays within 3 x 256 nodes and 16 + 4 levels. It is checked against
``MAX_CANONICAL_NODES`` and ``MAX_CANONICAL_DEPTH`` anyway and refused rather than returned larger.
Measured: 241 terms in 2-50 ms on a shared 2-core VM (``tests/unit/test_normalform.py``), ~0.1 ms for a
typical filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union, cast

from genogate.filter import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_NODES,
    AgeRange,
    AncestryIn,
    And,
    Everyone,
    Filter,
    Not,
    Or,
    PhenotypeHas,
    SexIs,
    bad_filter,
    check_filter_size,
)
from genogate.ontology import canonical_label, canonical_term

MIN_BIRTH_YEAR = 1850  # the earliest birth year a store holds (node.ingest.sheet refuses earlier ones)
MAX_CANONICAL_NODES = 4 * MAX_FILTER_NODES
MAX_CANONICAL_DEPTH = MAX_FILTER_DEPTH + 4
_BOTTOM = -(10**6)  # an age interval's unbounded lower end
_UNBOUNDED = 10**6  # an age interval's unbounded upper end when no year is given
_SEXES = frozenset({"F", "M", "U"})

# Value sets, one kind per attribute (all hashable, equal exactly when they select the same rows):
#   sex:        frozenset of "F", "M", "U"
#   age:        (unknown included, ((lo, hi), ...) disjoint, non-adjacent, sorted, within [_BOTTOM, top])
#   ancestry:   (finite, labels): finite -> exactly these labels; else all labels but these, and unknown
#   phenotype:  frozenset of True (has the term) and False (has not)
Ages = tuple[bool, tuple[tuple[int, int], ...]]
Labels = tuple[bool, frozenset[str]]
Value = Union[frozenset[str], Ages, Labels, frozenset[bool]]  # noqa: UP007


def _age(v: Value) -> Ages:
    return cast(Ages, v)


def _anc(v: Value) -> Labels:
    return cast(Labels, v)


def _set(v: Value) -> frozenset[object]:
    return cast(frozenset[object], v)


@dataclass(frozen=True, slots=True)
class _Const:
    value: bool


@dataclass(frozen=True, slots=True)
class _Lit:
    attr: str  # "age", "ancestry", "sex" or "phenotype:<term>"
    value: Value


@dataclass(frozen=True, slots=True)
class _Op:
    conj: bool  # AND (else OR)
    items: tuple[_Lit | _Op, ...]
    written: Filter  # the filter it is written back as
    key: str  # its repr: sorts, de-duplicates


_Node = _Const | _Lit | _Op


class _Form:
    """One canonicalisation: ``top`` is the oldest age any stored birth year can have."""

    def __init__(self, this_year: int | None) -> None:
        folds = this_year is not None and MIN_BIRTH_YEAR <= this_year < _UNBOUNDED  # else a clock not to trust
        self.top = this_year + 1 - MIN_BIRTH_YEAR if folds and this_year is not None else _UNBOUNDED
        self._written: dict[_Lit, tuple[Filter, str]] = {}  # each literal written (and its repr) once

    # Ages -------------------------------------------------------------------------------------------------

    def _ivs(self, pieces: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
        """Clipped to the domain, sorted, overlapping or adjacent pieces merged."""
        out: list[tuple[int, int]] = []
        for lo, hi in sorted((max(lo, _BOTTOM), min(hi, self.top)) for lo, hi in pieces):
            if lo > hi:
                continue
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return tuple(out)

    def _ivs_and(self, a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        out, i, j = [], 0, 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return self._ivs(out)

    def _ivs_not(self, a: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        out, start = [], _BOTTOM
        for lo, hi in a:
            if lo > start:
                out.append((start, lo - 1))
            start = hi + 1
        if start <= self.top:
            out.append((start, self.top))
        return self._ivs(out)

    # Value sets -------------------------------------------------------------------------------------------

    def atom(self, f: Filter) -> _Lit:
        if isinstance(f, SexIs):
            return _Lit("sex", frozenset({f.sex}))
        if isinstance(f, AgeRange):
            lo = _BOTTOM if f.min_years is None else f.min_years
            hi = _UNBOUNDED if f.max_years is None else f.max_years
            return _Lit("age", (False, self._ivs([(lo, hi)])))
        if isinstance(f, AncestryIn):
            return _Lit("ancestry", (True, frozenset(canonical_label(g) for g in f.groups)))
        assert isinstance(f, PhenotypeHas)
        return _Lit("phenotype:" + canonical_term(f.term), frozenset({True}))

    def negate(self, lit: _Lit) -> _Lit:
        v = lit.value
        if lit.attr == "sex":
            assert isinstance(v, frozenset)
            return _Lit("sex", _SEXES - v)
        if lit.attr == "age":
            unknown, ivs = _age(v)
            return _Lit("age", (not unknown, self._ivs_not(ivs)))
        if lit.attr == "ancestry":
            finite, labels = _anc(v)
            return _Lit("ancestry", (not finite, labels))
        assert isinstance(v, frozenset)
        return _Lit(lit.attr, frozenset({True, False}) - v)

    def merge(self, conj: bool, attr: str, a: Value, b: Value) -> Value:
        if attr == "age":
            (ua, ia), (ub, ib) = _age(a), _age(b)
            if conj:
                return (ua and ub, self._ivs_and(ia, ib))
            return (ua or ub, self._ivs(list(ia) + list(ib)))
        if attr == "ancestry":
            (fa, la), (fb, lb) = _anc(a), _anc(b)
            if not conj:  # a or b = not (not a and not b)
                fa, fb = not fa, not fb
            if fa and fb:
                out = (True, la & lb)
            elif fa or fb:
                out = (True, la - lb) if fa else (True, lb - la)
            else:
                out = (False, la | lb)
            return out if conj else (not out[0], out[1])
        sa, sb = _set(a), _set(b)
        return cast(Value, sa & sb if conj else sa | sb)

    def constant(self, lit: _Lit) -> bool | None:
        """True where the value set is every row, False where it is none, else None."""
        v = lit.value
        if lit.attr == "age":
            unknown, ivs = _age(v)
            if unknown and ivs == ((_BOTTOM, self.top),):
                return True
            return False if not unknown and not ivs else None
        if lit.attr == "ancestry":
            finite, labels = _anc(v)
            return None if labels else not finite
        assert isinstance(v, frozenset)
        full = _SEXES if lit.attr == "sex" else frozenset({True, False})
        return True if v == full else False if not v else None

    def implies(self, a: _Lit | _Op, b: _Lit | _Op) -> bool:
        """Every row satisfying ``a`` satisfies ``b`` (literals of one attribute; otherwise only a == b)."""
        if not (isinstance(a, _Lit) and isinstance(b, _Lit)):
            return a == b
        if a.attr != b.attr:
            return False
        va, vb = a.value, b.value
        if a.attr == "age":
            (ua, ia), (ub, ib) = _age(va), _age(vb)
            if ua and not ub:
                return False
            j = 0
            for lo, hi in ia:  # each piece of a inside a piece of b (both sorted and disjoint)
                while j < len(ib) and ib[j][1] < lo:
                    j += 1
                if j == len(ib) or ib[j][0] > lo or ib[j][1] < hi:
                    return False
            return True
        if a.attr == "ancestry":
            (fa, la), (fb, lb) = _anc(va), _anc(vb)
            if fa:
                return la <= lb if fb else not la & lb
            return not fb and lb <= la
        assert isinstance(va, frozenset) and isinstance(vb, frozenset)
        return va <= vb

    # Writing back -----------------------------------------------------------------------------------------

    def write(self, n: _Lit | _Op) -> Filter:
        return n.written if isinstance(n, _Op) else self.written(n)[0]

    def key(self, n: _Lit | _Op) -> tuple[bool, str]:
        return (True, n.key) if isinstance(n, _Op) else (False, self.written(n)[1])

    def op(self, conj: bool, items: tuple[_Lit | _Op, ...]) -> _Op:
        parts: list[Filter] = []
        for item in items:
            f = self.write(item)
            if isinstance(f, And) and conj or isinstance(f, Or) and not conj:
                parts.extend(f.items)
            else:
                parts.append(f)
        written = And(tuple(parts)) if conj else Or(tuple(parts))
        return _Op(conj, items, written, repr(written))

    def written(self, n: _Lit) -> tuple[Filter, str]:
        out = self._written.get(n)
        if out is None:
            f = self._write(n)
            out = self._written[n] = (f, repr(f))
        return out

    def _write(self, n: _Lit) -> Filter:
        v = n.value
        if n.attr == "sex":
            assert isinstance(v, frozenset)
            return SexIs(next(iter(v))) if len(v) == 1 else Not(SexIs(next(iter(_SEXES - v))))  # type: ignore[arg-type]
        if n.attr == "age":
            unknown, ivs = _age(v)
            return Not(self._ages(self._ivs_not(ivs))) if unknown else self._ages(ivs)
        if n.attr == "ancestry":
            finite, labels = _anc(v)
            f = AncestryIn(tuple(sorted(labels)))
            return f if finite else Not(f)
        assert isinstance(v, frozenset)
        term = PhenotypeHas(n.attr.partition(":")[2])
        return term if True in v else Not(term)

    def _ages(self, ivs: tuple[tuple[int, int], ...]) -> Filter:
        """Known ages in ``ivs`` (not empty), with the atoms: one ``AgeRange`` a piece, except three pieces
        no single range can say: every known age, negative ages, and ages past 200."""
        pieces: list[Filter] = []
        for lo, hi in ivs:
            low = None if lo == _BOTTOM else lo
            high = None if hi == self.top else hi
            if low is None and high is None:
                return Or((AgeRange(None, 0), AgeRange(1, None)))  # the only piece: age known
            if high is not None and high < 0:
                assert low is None and high == -1
                pieces.append(And((AgeRange(None, 0), Not(AgeRange(0, 0)))))
            elif low is not None and low > 200:
                assert low == 201 and high is None
                pieces.append(And((AgeRange(200, None), Not(AgeRange(200, 200)))))
            else:
                pieces.append(AgeRange(low, high))
        return pieces[0] if len(pieces) == 1 else Or(tuple(pieces))

    # Building -----------------------------------------------------------------------------------------------

    def build(self, f: Filter, negated: bool) -> _Node:
        if isinstance(f, Everyone):
            return _Const(not negated)
        if isinstance(f, Not):
            return self.build(f.item, not negated)
        if isinstance(f, And | Or):
            return self.combine(isinstance(f, And) != negated, [self.build(i, negated) for i in f.items])
        lit = self.atom(f)
        return self.lit(self.negate(lit) if negated else lit)

    def lit(self, lit: _Lit) -> _Const | _Lit:
        c = self.constant(lit)
        return lit if c is None else _Const(c)

    def combine(self, conj: bool, children: list[_Node]) -> _Node:
        lits: dict[str, Value] = {}
        others: dict[str, _Op] = {}
        stack = list(children)
        while stack:
            c = stack.pop()
            if isinstance(c, _Const):
                if c.value != conj:  # FALSE in an AND, TRUE in an OR
                    return c
            elif isinstance(c, _Op) and c.conj == conj:
                stack.extend(c.items)
            elif isinstance(c, _Lit):
                lits[c.attr] = self.merge(conj, c.attr, lits[c.attr], c.value) if c.attr in lits else c.value
            else:
                others[c.key] = c
        items: list[_Lit | _Op] = []
        for attr in sorted(lits):
            merged = self.lit(_Lit(attr, lits[attr]))
            if isinstance(merged, _Const):
                if merged.value != conj:
                    return merged
            else:
                items.append(merged)
        # Absorption: in an OR, an AND implied by another operand goes (a or (a and b) = a); dually in an AND.
        # An operand X goes where another Y has, for each of its parts, a part of X implying it (in an OR;
        # the reverse in an AND). Operands equivalent both ways are equal (one literal per attribute each),
        # so only strictly dominated operands go and the survivors absorb nothing more: idempotent.
        ops = [others[k] for k in sorted(others)]

        def parts(n: _Lit | _Op) -> tuple[_Lit | _Op, ...]:
            return n.items if isinstance(n, _Op) else (n,)

        # Each operand's parts by attribute (a literal can imply only a literal of its attribute; an operand
        # that is itself an AND or OR, only an equal one): a pair is then compared in one pass over its parts.
        index = {id(x): {p.attr if isinstance(p, _Lit) else p.key: p for p in x.items} for x in ops}

        def covers(y: _Lit | _Op, x: _Op) -> bool:
            """``y`` absorbs ``x``. In an OR, x (an AND) goes where x implies y: each part of y is implied by
            the part of x on the same attribute. In an AND, x (an OR) goes where y implies x: each part of y
            implies the part of x on its attribute."""
            by = index[id(x)]
            for py in parts(y):
                px = by.get(py.attr if isinstance(py, _Lit) else py.key)
                if px is None or not (self.implies(py, px) if conj else self.implies(px, py)):
                    return False
            return True

        kept = [x for x in ops if not any(y is not x and covers(y, x) for y in (*items, *ops))]
        items.extend(kept)
        if not items:
            return _Const(conj)
        if len(items) == 1:
            return items[0]
        items.sort(key=self.key)
        return self.op(conj, tuple(items))


def normal_form(f: Filter, this_year: int | None = None) -> Filter:
    """The canonical form of ``f`` (see the module docstring). ``this_year`` is the node's year, which
    bounds the oldest possible age; without it no bound is folded. ``Everyone`` for a filter true of every
    row; INVALID_FILTER for one true of none, or (never seen within the input limits) a form too large."""
    check_filter_size(f)
    form = _Form(this_year)
    node = form.build(f, False)
    if isinstance(node, _Const):
        if node.value:
            return Everyone()
        raise bad_filter("the cohort filter contradicts itself: it selects nobody whatever the data")
    out = form.write(node)
    nodes, depth = _size(out)
    if nodes > MAX_CANONICAL_NODES or depth > MAX_CANONICAL_DEPTH:
        raise bad_filter("the cohort filter is too complex to reduce to its canonical form")
    return out


def _size(f: Filter) -> tuple[int, int]:
    if isinstance(f, And | Or):
        sizes = [_size(i) for i in f.items]
        return 1 + sum(n for n, _ in sizes), 1 + max(d for _, d in sizes)
    if isinstance(f, Not):
        n, d = _size(f.item)
        return n + 1, d + 1
    return 1, 0
