"""Turning a free-text question into a safe FTS5 MATCH expression."""

from __future__ import annotations

from tether.lexical import query_terms


def match_expression(text: str) -> str:
    """OR of the quoted query terms: quoting neutralises FTS5 syntax in user text."""
    return " OR ".join(f'"{term}"' for term in query_terms(text))
