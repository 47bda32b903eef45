"""Metadata filters: the `key=value` parser, the SQLite compiler and real query results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import InvalidFilter
from tether.models.fake import HashEmbedder
from tether.store.filters import Filter, compile_sqlite, normalise_time, parse_filter
from tether.store.protocol import DocumentRecord, Scope
from tether.store.sqlite import SQLiteStore
from tether.types import Chunk, MetaValue

TENANT = "acme"
SCOPE = Scope(TENANT)


# -- parse_filter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "op", "value"),
    [
        ("status=open", "status", "eq", "open"),
        ("  status = open  ", "status", "eq", "open"),
        ("status!=open", "status", "ne", "open"),
        ("owner=ana|ben", "owner", "in", ("ana", "ben")),
        ("owner!=ana|ben", "owner", "ne", ("ana", "ben")),
        ("owner=ana|", "owner", "in", ("ana",)),
        ("page>=3", "page", "gte", 3),
        ("page>3", "page", "gt", 3),
        ("page<=3", "page", "lte", 3),
        ("page<3", "page", "lt", 3),
        ("page=-2", "page", "eq", -2),
        ("score>=2.5", "score", "gte", 2.5),
        ("urgent=true", "urgent", "eq", True),
        ("urgent=false", "urgent", "eq", False),
        ("updated_at>=2024-01-01", "updated_at", "gte", "2024-01-01"),
        ("created_at<2024-01-01T10:00:00+02:00", "created_at", "lt", "2024-01-01T10:00:00+02:00"),
        ("ticket-type=bug", "ticket-type", "eq", "bug"),
        ("note=a=b", "note", "eq", "a=b"),
    ],
)
def test_parse_filter_forms(text: str, field: str, op: str, value: object) -> None:
    flt = parse_filter(text)
    assert flt == Filter(field=field, op=op, value=value)  # type: ignore[arg-type]
    # bool must stay bool, not collapse to int (and vice versa).
    assert type(flt.value) is type(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a",
        "=x",
        "==x",
        "a=",
        "a!=",
        "a>=  ",
        "a b=c",
        "1abc=x",
        'a"b=1',
        "a'b=1",
        "a;DROP=1",
        "a.b=1",
        ">=3",
        "x" * 65 + "=1",
    ],
)
def test_parse_filter_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_filter(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_filter_raises_only_invalid_filter(text: str) -> None:
    try:
        flt = parse_filter(text)
    except InvalidFilter:
        return
    # Whatever parses must also compile, or fail to compile with InvalidFilter.
    try:
        where, params = compile_sqlite([flt])
    except InvalidFilter:
        return
    assert where.count("?") == len(params)


@pytest.mark.parametrize(
    "text",
    [
        "updated_at>=yesterday",
        "updated_at>=2024",
        "updated_at>=2024-13-01",
        "created_at<=31/12/2024",
        "created_at=last week",
        "updated_at=2024-01-01|soon",
    ],
)
def test_unknown_dates_on_date_columns_fail_at_compile_time(text: str) -> None:
    flt = parse_filter(text)  # parsing alone does not know the column is a date
    with pytest.raises(InvalidFilter):
        compile_sqlite([flt])


def test_range_filters_take_exactly_one_value() -> None:
    with pytest.raises(InvalidFilter):
        compile_sqlite([Filter(field="page", op="gte", value=(1, 2))])
    with pytest.raises(InvalidFilter):
        compile_sqlite([Filter(field="owner", op="in", value=())])


def test_filter_field_names_are_validated() -> None:
    for bad in ("", "a b", 'x"', "x)--", "1x", "é"):
        with pytest.raises(ValueError):
            Filter(field=bad, value="v")


def test_compile_empty_is_true_and_params_line_up() -> None:
    assert compile_sqlite([]) == ("1", [])
    where, params = compile_sqlite(
        [
            parse_filter("page>=3"),
            parse_filter("owner=ana|ben"),
            parse_filter("updated_at<2024-02-01"),
        ]
    )
    assert where.count("?") == len(params)
    assert "2024-02-01T00:00:00+00:00" in params


def test_normalise_time_is_utc_seconds() -> None:
    assert normalise_time("2024-01-01") == "2024-01-01T00:00:00+00:00"
    assert normalise_time("2024-01-01T10:00:00Z") == "2024-01-01T10:00:00+00:00"
    assert normalise_time("2024-01-01T01:00:00+02:00") == "2023-12-31T23:00:00+00:00"
    naive = datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert normalise_time(naive) == "2024-05-06T07:08:09+00:00"


# -- real queries --------------------------------------------------------------------------


def _chunk(
    cid: str,
    *,
    kind: str = "text",
    title: str = "Report",
    page: int | None = None,
    updated: datetime | None = None,
    metadata: dict[str, MetaValue] | None = None,
) -> Chunk:
    return Chunk(
        id=cid,
        source_id=f"/docs/{cid}.md",
        tenant_id=TENANT,
        text=f"quarterly report {cid} shipping warehouse",
        title=title,
        page=page,
        kind=kind,
        created_at=updated,
        updated_at=updated,
        metadata=metadata or {},
    )


CHUNKS = [
    _chunk(
        "c1",
        title="Alpha",
        page=1,
        updated=datetime(2024, 1, 10, tzinfo=UTC),
        metadata={
            "status": "open",
            "owner": "ana",
            "tags": ["red", "blue"],
            "priority": 1,
            "urgent": True,
        },
    ),
    _chunk(
        "c2",
        kind="table",
        title="Beta",
        page=3,
        updated=datetime(2024, 2, 15, 12, 0, tzinfo=UTC),
        metadata={
            "status": "closed",
            "owner": "ben",
            "tags": ["blue"],
            "priority": 2,
            "urgent": False,
        },
    ),
    _chunk(
        "c3",
        kind="code",
        title="Gamma",
        page=5,
        # 2024-03-21T01:30:00 in UTC: on the 20th locally, on the 21st in UTC.
        updated=datetime(2024, 3, 20, 23, 30, tzinfo=timezone(timedelta(hours=-2))),
        metadata={"status": "open", "owner": "cy", "tags": [], "priority": 3},
    ),
    _chunk("c4", kind="note", title="Delta"),
]
ALL = {c.id for c in CHUNKS}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    embedder = HashEmbedder()
    db = SQLiteStore(tmp_path / "filters.db", embed_model=embedder.model_id, dim=embedder.dim)
    vectors = await embedder.embed([c.text for c in CHUNKS])
    await db.replace_documents(
        TENANT,
        [
            (
                DocumentRecord(TENANT, c.source_id, c.title, f"h-{c.id}", 1, datetime.now(UTC)),
                [c],
                vectors[i : i + 1],
            )
            for i, c in enumerate(CHUNKS)
        ],
    )
    yield db
    await db.close()


async def _matching(db: SQLiteStore, filters: Sequence[Filter]) -> set[str]:
    """Ids the filters select, asserted identical through keyword and vector search."""
    keyword = {cid for cid, _ in await db.keyword_search(SCOPE, "report", filters, 50)}
    query = np.asarray((await HashEmbedder().embed(["quarterly report"]))[0])
    dense = {cid for cid, _ in await db.vector_search(SCOPE, query, filters, 50)}
    assert keyword == dense
    return keyword


async def test_no_filter_matches_everything(store: SQLiteStore) -> None:
    assert await _matching(store, []) == ALL


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        # columns
        (["kind=table"], {"c2"}),
        (["kind!=text"], {"c2", "c3", "c4"}),
        (["kind=code|note"], {"c3", "c4"}),
        (["title=Beta"], {"c2"}),
        (["source_id=/docs/c3.md"], {"c3"}),
        (["page=3"], {"c2"}),
        (["page!=3"], {"c1", "c3", "c4"}),
        (["page>=3"], {"c2", "c3"}),
        (["page>3"], {"c3"}),
        (["page<=3"], {"c1", "c2"}),
        (["page<3"], {"c1"}),
        (["page=1|5"], {"c1", "c3"}),
        (["page>=2", "page<=4"], {"c2"}),
        # date ranges, compared in UTC
        (["updated_at>=2024-02-01"], {"c2", "c3"}),
        (["updated_at<2024-02-01"], {"c1"}),
        (["updated_at>=2024-01-01", "updated_at<2024-03-01"], {"c1", "c2"}),
        (["updated_at<2024-03-21"], {"c1", "c2"}),
        (["updated_at<=2024-03-21T01:30:00Z"], {"c1", "c2", "c3"}),
        (["updated_at>2024-03-20T23:00:00-02:00"], {"c3"}),
        (["updated_at>=2024-02-15T13:00:00+01:00"], {"c2", "c3"}),
        (["created_at>=2030-01-01"], set()),
        # metadata scalars
        (["status=open"], {"c1", "c3"}),
        (["status!=open"], {"c2", "c4"}),
        (["owner=ana|ben"], {"c1", "c2"}),
        (["owner!=ana|ben"], {"c3", "c4"}),
        (["priority>=2"], {"c2", "c3"}),
        (["priority<2"], {"c1"}),
        (["urgent=true"], {"c1"}),
        (["urgent=false"], {"c2"}),
        (["nokey=x"], set()),
        # metadata lists: membership
        (["tags=blue"], {"c1", "c2"}),
        (["tags=red"], {"c1"}),
        (["tags=red|green"], {"c1"}),
        (["tags=green"], set()),
        (["tags!=blue"], {"c3", "c4"}),
        # combined
        (["status=open", "page>=3"], {"c3"}),
        (["tags=blue", "updated_at>=2024-02-01"], {"c2"}),
        (["status=open", "kind=table"], set()),
    ],
)
async def test_filters_select_the_right_chunks(
    store: SQLiteStore, texts: list[str], expected: set[str]
) -> None:
    assert await _matching(store, [parse_filter(t) for t in texts]) == expected


async def test_typed_filters_match_parsed_ones(store: SQLiteStore) -> None:
    typed = [
        Filter(field="page", op="in", value=(1, 5)),
        Filter(field="updated_at", op="lte", value="2024-03-31"),
    ]
    assert await _matching(store, typed) == {"c1", "c3"}


async def test_invalid_date_filter_raises_in_searches(store: SQLiteStore) -> None:
    bad = [parse_filter("updated_at>=someday")]
    with pytest.raises(InvalidFilter):
        await store.keyword_search(SCOPE, "report", bad, 10)
    query = np.asarray((await HashEmbedder().embed(["report"]))[0])
    with pytest.raises(InvalidFilter):
        await store.vector_search(SCOPE, query, bad, 10)


async def test_filter_values_are_parameters_not_sql(store: SQLiteStore) -> None:
    hostile = [parse_filter("status=open' OR '1'='1"), parse_filter("title=x) OR 1=1 --")]
    for flt in hostile:
        assert await _matching(store, [flt]) == set()
    # The table is intact afterwards.
    assert await store.count_chunks(SCOPE) == len(CHUNKS)
