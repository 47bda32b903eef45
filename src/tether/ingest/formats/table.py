"""CSV/TSV: runs of rows, each chunk restating the column names so a row reads alone."""

from __future__ import annotations

import csv
import io
from pathlib import PurePath

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats.textsplit import collapse_spaces, decode_utf8

_SNIFF_BYTES = 16_384


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    text = decode_utf8(data)
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_dialect(text, name))
    header: list[str] | None = None
    rows: list[list[str]] = []
    line = 0
    try:
        for record in reader:
            record_line, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = _column_names(record)
            elif len(record) != len(header):
                raise UnreadableDocument(
                    f"CSV line {record_line} has {len(record)} fields, header has {len(header)}"
                )
            else:
                rows.append([collapse_spaces(cell) for cell in record])
    except csv.Error as exc:
        raise UnreadableDocument(f"CSV line {reader.line_num}: {exc}") from None
    if header is None:
        raise EmptyDocument("no text found")
    if not rows:
        raise EmptyDocument("CSV has a header but no rows")
    return ParsedDocument(title=None, drafts=_drafts(header, rows, options))


def _dialect(text: str, name: str) -> type[csv.Dialect] | csv.Dialect:
    if PurePath(name).suffix.lower() == ".tsv":
        return csv.excel_tab
    sample = text[:_SNIFF_BYTES]
    if len(text) > _SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a cut-off last line would mislead the sniffer
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _column_names(record: list[str]) -> list[str]:
    names: list[str] = []
    for index, cell in enumerate(record, start=1):
        base = collapse_spaces(cell) or f"column_{index}"
        candidate, suffix = base, 2
        # Repeated names would make "a: 1 | a: 2" ambiguous.
        while candidate in names:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        names.append(candidate)
    return names


def _drafts(header: list[str], rows: list[list[str]], options: ChunkOptions) -> list[ChunkDraft]:
    columns_line = "columns: " + " | ".join(header)
    drafts: list[ChunkDraft] = []
    batch: list[str] = []
    first_row = 1
    for number, row in enumerate(rows, start=1):
        rendered = " | ".join(
            f"{column}: {value}" for column, value in zip(header, row, strict=True)
        )
        size = len(columns_line) + sum(len(r) + 1 for r in batch) + 1 + len(rendered)
        # Wide rows close a batch early: rows_per_chunk is a cap, max_chars still holds.
        if batch and (len(batch) >= options.rows_per_chunk or size > options.max_chars):
            drafts.append(_draft(columns_line, batch, header, first_row))
            batch, first_row = [], number
        batch.append(rendered)
    drafts.append(_draft(columns_line, batch, header, first_row))
    return drafts


def _draft(columns_line: str, batch: list[str], header: list[str], first_row: int) -> ChunkDraft:
    last_row = first_row + len(batch) - 1
    return ChunkDraft(
        text="\n".join([columns_line, *batch]),
        section=f"rows {first_row}-{last_row}",
        kind="table",
        metadata={"columns": list(header), "row_start": first_row, "row_end": last_row},
    )
