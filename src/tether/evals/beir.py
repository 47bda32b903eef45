"""BEIR-format datasets: corpus.jsonl, queries.jsonl and a qrels TSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from tether.errors import DatasetError


class CorpusDoc(BaseModel):
    id: str
    title: str = ""
    text: str


class BeirQuery(BaseModel):
    id: str
    text: str


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object")
            rows.append(row)
    return rows


def load_corpus(path: Path) -> list[CorpusDoc]:
    try:
        return [
            CorpusDoc(id=str(r["_id"]), title=str(r.get("title") or ""), text=str(r["text"]))
            for r in _jsonl(path)
        ]
    except (KeyError, ValidationError) as exc:
        raise DatasetError(f"{path}: corpus rows need _id and text ({exc})") from exc


def load_queries(path: Path) -> list[BeirQuery]:
    try:
        return [BeirQuery(id=str(r["_id"]), text=str(r["text"])) for r in _jsonl(path)]
    except (KeyError, ValidationError) as exc:
        raise DatasetError(f"{path}: query rows need _id and text ({exc})") from exc


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
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
