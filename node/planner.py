"""Compiles structured cohort filters into parameterised SQL over the ``samples`` table.

Filter values only ever travel as bound parameters, never as SQL text. Every atom is made definite
(``coalesce(..., FALSE)``) so that ``NOT f`` is exactly the complement of ``f`` even where a participant's
birth year or ancestry is unknown.
"""

from __future__ import annotations

from genogate.query import AgeRange, AncestryIn, And, Everyone, Filter, Not, Or, PhenotypeHas, SexIs


def compile_filter(f: Filter, this_year: int) -> tuple[str, list[object]]:
    """(SQL boolean expression, parameters) selecting the samples that satisfy ``f``."""
    params: list[object] = []

    def emit(node: Filter) -> str:
        if isinstance(node, Everyone):
            return "TRUE"
        if isinstance(node, SexIs):
            params.append(node.sex)
            return "(sex = ?)"
        if isinstance(node, AgeRange):
            parts = []
            if node.min_years is not None:  # age >= min  <=>  birth_year <= this_year - min
                params.append(this_year - node.min_years)
                parts.append("birth_year <= ?")
            if node.max_years is not None:
                params.append(this_year - node.max_years)
                parts.append("birth_year >= ?")
            return f"coalesce({' AND '.join(parts)}, FALSE)"
        if isinstance(node, AncestryIn):
            params.extend(node.groups)
            return f"coalesce(ancestry IN ({', '.join('?' * len(node.groups))}), FALSE)"
        if isinstance(node, PhenotypeHas):
            params.append(node.term)
            return "list_contains(phenotypes, ?)"
        if isinstance(node, Not):
            return f"(NOT {emit(node.item)})"
        joiner = " AND " if isinstance(node, And) else " OR "
        assert isinstance(node, And | Or)
        return "(" + joiner.join(emit(item) for item in node.items) + ")"

    return emit(f), params
