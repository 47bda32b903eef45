"""BEIR-format datasets: corpus.jsonl, queries.jsonl and a qrels TSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import BaseModel

from tether.errors import DatasetError


class CorpusDoc(BaseModel):
    id: str
    title: str = ""
    text: str


class BeirQuery(BaseModel):
    id: str
    text: str


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _jsonl(path: Path) -> list[tuple[int, dict[str, object]]]:
    rows: list[tuple[int, dict[str, object]]] = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object")
        rows.append((number, row))
    return rows


def _need(path: Path, number: int, row: dict[str, object], *keys: str) -> list[str]:
    missing = [k for k in keys if row.get(k) is None]
    if missing:
        raise DatasetError(f"{path}:{number}: row lacks {', '.join(missing)}")
    return [str(row[k]) for k in keys]


def load_corpus(path: Path) -> list[CorpusDoc]:
    docs = []
    for number, row in _jsonl(path):
        doc_id, text = _need(path, number, row, "_id", "text")
        docs.append(CorpusDoc(id=doc_id, title=str(row.get("title") or ""), text=text))
    return docs


def load_queries(path: Path) -> list[BeirQuery]:
    queries = []
    for number, row in _jsonl(path):
        query_id, text = _need(path, number, row, "_id", "text")
        queries.append(BeirQuery(id=query_id, text=text))
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    reader = csv.reader(_lines(path), delimiter="\t")
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
        raise DatasetError(f"{path}: qrels need the header 'query-id corpus-id score'")
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 3:
            raise DatasetError(f"{path}:{number}: expected 3 tab-separated fields")
        try:
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: score must be an integer") from exc
    return qrels
