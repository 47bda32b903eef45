from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import table

FIXTURES = Path(__file__).parents[3] / "fixtures"
PRICES = (FIXTURES / "docs" / "prices.csv").read_bytes()
COLUMNS = ["sku", "product", "size", "price_eur", "in_stock"]


def _parse(data: bytes, name: str = "prices.csv", **options: int) -> ParsedDocument:
    return table.parse(data, name=name, options=ChunkOptions(**options))


def test_rows_per_chunk_and_row_ranges() -> None:
    drafts = _parse(PRICES, max_chars=10_000).drafts
    assert [d.section for d in drafts] == ["rows 1-20", "rows 21-40", "rows 41-45"]
    assert [(d.metadata["row_start"], d.metadata["row_end"]) for d in drafts] == [
        (1, 20),
        (21, 40),
        (41, 45),
    ]
    assert all(d.kind == "table" and d.metadata["columns"] == COLUMNS for d in drafts)


def test_every_chunk_restates_the_columns() -> None:
    drafts = _parse(PRICES, rows_per_chunk=10, max_chars=10_000).drafts
    for draft in drafts:
        lines = draft.text.split("\n")
        assert lines[0] == "columns: sku | product | size | price_eur | in_stock"
        assert (
            len(lines) - 1
            == int(str(draft.metadata["row_end"])) - int(str(draft.metadata["row_start"])) + 1
        )
        assert all(line.startswith("sku: SKU-") for line in lines[1:])
    first = drafts[0].text.split("\n")[1]
    assert first == (
        "sku: SKU-1001 | product: Espresso beans | size: small | price_eur: 30.50 | in_stock: yes"
    )


def test_quoted_delimiter_stays_in_its_cell() -> None:
    text = "\n".join(d.text for d in _parse(PRICES).drafts)
    assert "product: Mug, ceramic (set of 2) | size: medium" in text


def test_wide_rows_close_a_chunk_before_max_chars() -> None:
    drafts = _parse(PRICES).drafts  # 20 rows of ~90 chars would pass 1200
    assert len(drafts) > 3
    assert all(len(d.text) <= 1200 for d in drafts)
    assert drafts[-1].metadata["row_end"] == 45


def test_ragged_row_fails_the_file_naming_the_line() -> None:
    with pytest.raises(UnreadableDocument, match=r"^CSV line 5 has 4 fields, header has 3$"):
        _parse((FIXTURES / "bad" / "ragged.csv").read_bytes(), name="ragged.csv")


def test_line_number_counts_multiline_quoted_cells() -> None:
    data = b'a,b\n1,"two\nlines"\n3,4,5\n'
    with pytest.raises(UnreadableDocument, match="CSV line 4 has 3 fields"):
        _parse(data)


def test_empty_header_cells_get_column_names() -> None:
    drafts = _parse(b"name,,name\nx,y,z\n").drafts
    assert drafts[0].metadata["columns"] == ["name", "column_2", "name_2"]
    assert drafts[0].text.split("\n")[1] == "name: x | column_2: y | name_2: z"


def test_tsv_by_extension_and_semicolons_sniffed() -> None:
    tsv = _parse(b"city\tpop\nOslo\t709000\n", name="cities.tsv").drafts[0]
    assert tsv.text.split("\n")[1] == "city: Oslo | pop: 709000"
    semi = _parse(b"city;pop\nBergen;291000\nTromso;77000\n", name="cities.csv").drafts[0]
    assert semi.metadata["columns"] == ["city", "pop"]
    assert "city: Tromso | pop: 77000" in semi.text


def test_bom_is_not_part_of_the_first_column() -> None:
    drafts = _parse(b"\xef\xbb\xbfid,v\n1,2\n").drafts
    assert drafts[0].metadata["columns"] == ["id", "v"]


def test_header_only_and_empty_files() -> None:
    with pytest.raises(EmptyDocument, match="no rows"):
        _parse(b"a,b,c\n")
    with pytest.raises(EmptyDocument):
        _parse(b"\n\n")
