"""Metadata filters: a typed form, a parser for `key=value` strings and a SQLite compiler.

Fields are the chunk columns below or, failing that, metadata keys. For a metadata key
holding a list (e.g. `speakers`), `eq` and `in` mean "contains".
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, field_validator

from tether.errors import InvalidFilter

Op: TypeAlias = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte"]
Scalar: TypeAlias = str | int | float | bool
COLUMNS: frozenset[str] = frozenset(
    {"source_id", "kind", "title", "section", "page", "created_at", "updated_at"}
)
DATE_COLUMNS: frozenset[str] = frozenset({"created_at", "updated_at"})
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_SQL_OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PARSE = re.compile(r"^\s*([^=<>!\s]+)\s*(>=|<=|!=|=|>|<)\s*(.*?)\s*$", re.S)
_TEXT_OPS = {"=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


class Filter(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    op: Op = "eq"
    value: Scalar | tuple[Scalar, ...]

    @field_validator("field")
    @classmethod
    def _safe_field(cls, value: str) -> str:
        if not _FIELD.match(value):
            raise ValueError(f"invalid filter field {value!r}")
        return value


def normalise_time(value: datetime | date | str) -> str:
    """The one text form timestamps are stored and compared in (UTC, ISO 8601)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidFilter(f"not an ISO date or time: {value!r}") from exc
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _coerce(text: str) -> Scalar:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*", text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def parse_filter(text: str) -> Filter:
    """`status=open`, `owner=ana|ben` (any of), `page>=3`, `updated_at>=2024-01-01`."""
    match = _PARSE.match(text)
    if not match or not match.group(3):
        raise InvalidFilter(f"cannot parse filter {text!r}; use key=value, key>=value, ...")
    field, sign, raw = match.groups()
    op: Op = _TEXT_OPS[sign]  # type: ignore[assignment]
    try:
        if "|" in raw and op in ("eq", "ne"):
            values = tuple(_coerce(v) for v in raw.split("|") if v)
            return Filter(field=field, op="in" if op == "eq" else "ne", value=values)
        return Filter(field=field, op=op, value=_coerce(raw))
    except ValueError as exc:
        raise InvalidFilter(str(exc)) from exc


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def whole_day(field: str, value: Scalar) -> tuple[str, str] | None:
    if field not in DATE_COLUMNS or not isinstance(value, str) or not _DATE_ONLY.match(value):
        return None
    try:
        first = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidFilter(f"not an ISO date: {value!r}") from exc
    return normalise_time(first), normalise_time(first + timedelta(days=1))


def _value(field: str, value: Scalar) -> Scalar:
    return normalise_time(str(value)) if field in DATE_COLUMNS else value


def compile_sqlite(
    filters: list[Filter] | tuple[Filter, ...], alias: str = "c"
) -> tuple[str, list[object]]:
    """AND of all filters as a SQL fragment with its parameters ('1' when empty)."""
    clauses: list[str] = []
    params: list[object] = []
    for flt in filters:
        values = flt.value if isinstance(flt.value, tuple) else (flt.value,)
        if not values:
            raise InvalidFilter(f"filter on {flt.field!r} has no values")
        if flt.op in ("gt", "gte", "lt", "lte") and len(values) != 1:
            raise InvalidFilter(f"range filter on {flt.field!r} takes one value")
        marks = ",".join("?" * len(values))
        params_for = [_value(flt.field, v) for v in values]
        day = whole_day(flt.field, values[0]) if len(values) == 1 else None
        if day is not None and flt.op in ("eq", "lte", "gt"):
            # A date without a time names the whole day: "<= 2024-01-31" includes Jan 31.
            column = f"{alias}.{flt.field}"
            start, end = day
            clause = {
                "eq": f"({column} >= ? AND {column} < ?)",
                "lte": f"{column} < ?",
                "gt": f"{column} >= ?",
            }[flt.op]
            clauses.append(clause)
            params.extend([start, end] if flt.op == "eq" else [end])
            continue
        if flt.field in COLUMNS:
            column = f"{alias}.{flt.field}"
            if flt.op == "in":
                clauses.append(f"{column} IN ({marks})")
            elif flt.op == "ne":
                clauses.append(f"({column} IS NULL OR {column} NOT IN ({marks}))")
            else:
                clauses.append(f"{column} {_SQL_OPS[flt.op]} ?")
            params.extend(params_for)
            continue
        path = f'$."{flt.field}"'
        each = f"SELECT 1 FROM json_each({alias}.metadata, ?) AS m WHERE m.value"
        if flt.op in ("eq", "in"):
            clauses.append(f"EXISTS ({each} IN ({marks}))")
        elif flt.op == "ne":
            clauses.append(f"NOT EXISTS ({each} IN ({marks}))")
        else:
            clauses.append(f"EXISTS ({each} {_SQL_OPS[flt.op]} ?)")
        params.append(path)
        params.extend(params_for)
    return (" AND ".join(clauses) or "1"), params
