"""Compiles structured cohort filters into parameterised SQL over the ``samples`` table.

Filter values only ever travel as bound parameters, never as SQL text. Every atom is made definite
(``coalesce(..., FALSE)``) so that ``NOT f`` is exactly the complement of ``f`` even where a participant's
birth year or ancestry is unknown.

Ancestry compares in canonical upper case. A phenotype term matches participants annotated with it or any
of its descendants: the term is mapped to its primary id through ``term_vocab`` and matched against the
annotated terms whose ``term_closure`` names it as an ancestor (``node.ontology``). Terms outside the
vocabulary match nobody here; callers refuse them first (``TermIndex.check``).
"""

from __future__ import annotations

from genogate.ontology import canonical_label, canonical_term
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
            params.extend(canonical_label(g) for g in node.groups)
            return f"coalesce(upper(ancestry) IN ({', '.join('?' * len(node.groups))}), FALSE)"
        if isinstance(node, PhenotypeHas):
            params.append(canonical_term(node.term))
            return (
                "coalesce(list_has_any(phenotypes, (SELECT list(c.term) FROM term_closure c JOIN term_vocab v "
                "ON c.ancestor = v.primary_term WHERE v.term = ?)), FALSE)"
            )
        if isinstance(node, Not):
            return f"(NOT {emit(node.item)})"
        joiner = " AND " if isinstance(node, And) else " OR "
        assert isinstance(node, And | Or)
        return "(" + joiner.join(emit(item) for item in node.items) + ")"

    return emit(f), params
