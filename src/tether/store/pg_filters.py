"""Metadata filters compiled for PostgreSQL (the SQLite compiler's twin, same meaning)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tether.errors import InvalidFilter
from tether.store.filters import COLUMNS, DATE_COLUMNS, Filter, Scalar, normalise_time, whole_day

_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _column_value(field: str, value: Scalar) -> object:
    if field in DATE_COLUMNS:
        return datetime.fromisoformat(normalise_time(str(value)))
    return value


def compile_pg(filters: Sequence[Filter], alias: str = "c") -> tuple[str, list[object]]:
    """AND of all filters as a SQL fragment with %s parameters ('TRUE' when empty)."""
    clauses: list[str] = []
    params: list[object] = []
    for flt in filters:
        values = flt.value if isinstance(flt.value, tuple) else (flt.value,)
        if not values:
            raise InvalidFilter(f"filter on {flt.field!r} has no values")
        if flt.op in ("gt", "gte", "lt", "lte") and len(values) != 1:
            raise InvalidFilter(f"range filter on {flt.field!r} takes one value")
        if flt.field in COLUMNS:
            column = f"{alias}.{flt.field}"
            day = whole_day(flt.field, values[0]) if len(values) == 1 else None
            if day is not None and flt.op in ("eq", "lte", "gt"):
                start, end = (datetime.fromisoformat(d) for d in day)
                if flt.op == "eq":
                    clauses.append(f"({column} >= %s AND {column} < %s)")
                    params += [start, end]
                else:
                    clauses.append(f"{column} {'<' if flt.op == 'lte' else '>='} %s")
                    params.append(end)
                continue
            converted = [_column_value(flt.field, v) for v in values]
            if flt.op == "in":
                clauses.append(f"{column} = ANY(%s)")
                params.append(converted)
            elif flt.op == "ne":
                clauses.append(f"({column} IS NULL OR NOT ({column} = ANY(%s)))")
                params.append(converted)
            else:
                clauses.append(f"{column} {_SQL_OPS[flt.op]} %s")
                params.append(converted[0])
            continue
        # Metadata: a scalar or a list; eq/in/ne compare as text, ranges numerically when
        # the value is a number and as text (ISO dates sort as text) otherwise.
        elements = (
            f"jsonb_array_elements_text(CASE jsonb_typeof({alias}.metadata -> %s) "
            f"WHEN 'array' THEN {alias}.metadata -> %s "
            f"ELSE jsonb_build_array({alias}.metadata -> %s) END)"
        )
        key = [flt.field] * 3
        if flt.op in ("eq", "in", "ne"):
            texts = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
            exists = f"EXISTS (SELECT 1 FROM {elements} AS m(v) WHERE m.v = ANY(%s))"
            clauses.append(exists if flt.op != "ne" else f"NOT {exists}")
            params += [*key, texts]
        else:
            value = values[0]
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            # CASE, not AND: SQL does not promise to test the pattern before the cast.
            cast = (
                "(CASE WHEN m.v ~ '^-?[0-9]+(\\.[0-9]+)?$' THEN m.v::numeric END)"
                if numeric
                else "m.v"
            )
            clauses.append(
                f"EXISTS (SELECT 1 FROM {elements} AS m(v) WHERE {cast} {_SQL_OPS[flt.op]} %s)"
            )
            params += [*key, value if numeric else str(value)]
    return (" AND ".join(clauses) or "TRUE"), params
