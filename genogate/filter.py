"""The cohort filter, who a query counts: its structured form (frozen, self-validating dataclasses, part of
the query model ``genogate.query``), the size limits every filter obeys, and a readable language for people
compiled to that form (``parse_filter``). The canonical form of a filter is ``genogate.normalform``'s.

The language's grammar (keywords are case-insensitive)::

    expr     := term ("or" term)*
    term     := factor ("and" factor)*
    factor   := "not" factor | "(" expr ")" | test
    test     := "sex" ("=" | "!=") (F | M | U | female | male | unknown)
              | "age" (">=" | "<=" | ">" | "<" | "=") YEARS
              | "ancestry" ("=" | "!=") GROUP
              | "ancestry" ["not"] "in" "(" GROUP ("," GROUP)* ")"
              | "phenotype" ("=" | "!=") TERM          (has / has not the term)

Examples: ``sex=F and ancestry in (EUR,AFR) and phenotype=HP:0001250``,
``age>=40 and not (phenotype=ICD10:C50 or phenotype=ICD10:C61)``. An empty string means everyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from genogate.errors import InvalidArgument, Reason
from genogate.ontology import canonical_term

_TERM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.\-]+$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


# Filter types ---------------------------------------------------------------------------------------------

Sex = Literal["F", "M", "U"]


def bad_filter(detail: str) -> InvalidArgument:
    """INVALID_FILTER: the cohort filter is malformed (``detail`` goes to logs)."""
    return InvalidArgument(detail, reason=Reason.INVALID_FILTER, message="the cohort filter is malformed")


@dataclass(frozen=True, slots=True)
class Everyone:
    """No restriction (consent still applies)."""


@dataclass(frozen=True, slots=True)
class SexIs:
    sex: Sex

    def __post_init__(self) -> None:
        if self.sex not in ("F", "M", "U"):
            raise bad_filter("sex must be F, M or U")


@dataclass(frozen=True, slots=True)
class AgeRange:
    """Age in whole years (this year minus birth year), inclusive bounds; ``None`` is unbounded."""

    min_years: int | None = None
    max_years: int | None = None

    def __post_init__(self) -> None:
        for v in (self.min_years, self.max_years):
            if v is not None and not 0 <= v <= 200:
                raise bad_filter("age bounds must be between 0 and 200 years")
        if self.min_years is None and self.max_years is None:
            raise bad_filter("an age range needs a lower or an upper bound")
        if self.min_years is not None and self.max_years is not None and self.min_years > self.max_years:
            raise bad_filter("the lower age bound exceeds the upper one")


@dataclass(frozen=True, slots=True)
class AncestryIn:
    """Participants whose ancestry group is one of ``groups`` (case-insensitive: canonical upper case)."""

    groups: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.groups:
            raise bad_filter("an ancestry filter needs at least one group")
        for g in self.groups:
            if not _GROUP_RE.match(g):
                raise bad_filter("ancestry groups are 1-64 letters, digits, '_', '.' or '-'")


@dataclass(frozen=True, slots=True)
class PhenotypeHas:
    """Participants annotated with a phenotype term such as ``HP:0001250`` (HPO) or ``ICD10:C50``, or with any
    of its descendants (see ``genogate.ontology`` for the spellings)."""

    term: str

    def __post_init__(self) -> None:
        if not _TERM_RE.match(self.term):
            raise bad_filter("a phenotype term is PREFIX:CODE, e.g. HP:0001250 or ICD10:C50")
        canonical_term(self.term)  # refuses malformed HPO and ICD-10 ids (HP:1250) at once


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Filter, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.items) < 2:
            raise bad_filter("AND needs at least two operands")


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Filter, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.items) < 2:
            raise bad_filter("OR needs at least two operands")


@dataclass(frozen=True, slots=True)
class Not:
    item: Filter


Filter = Everyone | SexIs | AgeRange | AncestryIn | PhenotypeHas | And | Or | Not

MAX_FILTER_DEPTH = 16
MAX_FILTER_NODES = 256


def check_filter_size(f: Filter) -> None:
    """Refuse filters too deep or too large to compile (protects the node's planner)."""
    count = 0

    def walk(node: Filter, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > MAX_FILTER_DEPTH:
            raise bad_filter(f"filters nest at most {MAX_FILTER_DEPTH} levels deep")
        if count > MAX_FILTER_NODES:
            raise bad_filter(f"filters have at most {MAX_FILTER_NODES} terms")
        if isinstance(node, And | Or):
            for item in node.items:
                walk(item, depth + 1)
        elif isinstance(node, Not):
            walk(node.item, depth + 1)

    walk(f, 0)


# The readable language ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(>=|<=|!=|=|>|<|\(|\)|,)|([A-Za-z0-9_.:\-]+))")
_SEX = {"f": "F", "female": "F", "m": "M", "male": "M", "u": "U", "unknown": "U"}


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise bad_filter(f"unexpected character at column {pos + 1}: {text[pos : pos + 10]!r}")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0  # open "not"s and parentheses: bounded, so no input can exhaust the stack

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None:
            raise bad_filter("the filter ends too early" + (f" (expected {expected!r})" if expected else ""))
        if expected is not None and tok.lower() != expected:
            raise bad_filter(f"expected {expected!r} but found {tok!r}")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.lower() == word:
            self.i += 1
            return True
        return False

    def expr(self) -> Filter:
        items = [self.term()]
        while self.keyword("or"):
            items.append(self.term())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def term(self) -> Filter:
        items = [self.factor()]
        while self.keyword("and"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> Filter:
        if self.peek() is not None and (self.peek() == "(" or str(self.peek()).lower() == "not"):
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise bad_filter(f"filters nest at most {MAX_FILTER_DEPTH} levels deep")
            try:
                if self.keyword("not"):
                    return Not(self.factor())
                self.take("(")
                inner = self.expr()
                self.take(")")
                return inner
            finally:
                self.depth -= 1
        return self.test()

    def test(self) -> Filter:
        field_name = self.take().lower()
        if field_name == "sex":
            op = self.take()
            value = self.take().lower()
            if value not in _SEX or op not in ("=", "!="):
                raise bad_filter("write sex=F, sex=M or sex=U (or !=)")
            sex: Sex = _SEX[value]  # type: ignore[assignment]
            return SexIs(sex) if op == "=" else Not(SexIs(sex))
        if field_name == "age":
            op = self.take()
            value = self.take()
            if not value.isdigit():
                raise bad_filter("age is compared with a whole number of years")
            years = int(value)
            bounds = {
                ">=": (years, None),
                ">": (years + 1, None),
                "<=": (None, years),
                "<": (None, years - 1),
                "=": (years, years),
            }
            if op not in bounds or (op == "<" and years == 0):
                raise bad_filter("age takes >=, >, <=, < or = and a whole number of years")
            lo, hi = bounds[op]
            return AgeRange(lo, hi)
        if field_name == "ancestry":
            negate = self.keyword("not")
            op = self.take()
            if op.lower() == "in":
                self.take("(")
                groups = [self.take()]
                while self.peek() == ",":
                    self.take(",")
                    groups.append(self.take())
                self.take(")")
                f: Filter = AncestryIn(tuple(groups))
                return Not(f) if negate else f
            if negate or op not in ("=", "!="):
                raise bad_filter("write ancestry=EUR, ancestry!=EUR or ancestry in (EUR,AFR)")
            f = AncestryIn((self.take(),))
            return f if op == "=" else Not(f)
        if field_name == "phenotype":
            op = self.take()
            if op not in ("=", "!="):
                raise bad_filter("write phenotype=HP:0001250 or phenotype!=HP:0001250")
            f = PhenotypeHas(self.take())
            return f if op == "=" else Not(f)
        raise bad_filter(f"unknown field {field_name!r}; filters use sex, age, ancestry and phenotype")


def parse_filter(text: str | None) -> Filter:
    """Parse the readable syntax; raise ``InvalidArgument`` (reason INVALID_FILTER) naming the problem."""
    if text is None or not text.strip():
        return Everyone()
    parser = _Parser(text)
    result = parser.expr()
    if parser.peek() is not None:
        raise bad_filter(f"unexpected {parser.peek()!r} after a complete filter")
    check_filter_size(result)
    return result


def format_filter(f: Filter) -> str:
    """The readable form of a filter; ``parse_filter(format_filter(f)) == f`` for parser-made filters."""
    if isinstance(f, Everyone):
        return ""
    if isinstance(f, SexIs):
        return f"sex={f.sex}"
    if isinstance(f, AgeRange):
        if f.min_years is not None and f.max_years is not None:
            if f.min_years == f.max_years:
                return f"age={f.min_years}"
            return f"(age>={f.min_years} and age<={f.max_years})"
        return f"age>={f.min_years}" if f.min_years is not None else f"age<={f.max_years}"
    if isinstance(f, AncestryIn):
        return f"ancestry={f.groups[0]}" if len(f.groups) == 1 else f"ancestry in ({','.join(f.groups)})"
    if isinstance(f, PhenotypeHas):
        return f"phenotype={f.term}"
    if isinstance(f, Not):
        return f"not {_wrap(f.item)}"
    joiner = " and " if isinstance(f, And) else " or "
    return joiner.join(_wrap(item) for item in f.items)


def _wrap(f: Filter) -> str:
    text = format_filter(f)
    return f"({text})" if isinstance(f, And | Or) else text
