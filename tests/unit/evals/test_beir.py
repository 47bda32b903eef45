"""BEIR loaders: good files parse, bad ones raise DatasetError naming file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tether.errors import DatasetError
from tether.evals.beir import load_corpus, load_qrels, load_queries


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_corpus(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "First", "text": "alpha"},
            {"_id": 2, "text": "beta", "metadata": {}},
            {"_id": "d3", "title": None, "text": "gamma"},
        ],
    )
    docs = load_corpus(path)
    assert [(d.id, d.title, d.text) for d in docs] == [
        ("d1", "First", "alpha"),
        ("2", "", "beta"),
        ("d3", "", "gamma"),
    ]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    path.write_text('\n{"_id": "q1", "text": "what"}\n\n   \n{"_id": "q2", "text": "why"}\n')
    assert [(q.id, q.text) for q in load_queries(path)] == [("q1", "what"), ("q2", "why")]


def test_load_qrels(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n\nq2\td3\t0\n")
    assert load_qrels(path) == {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 0}}


def test_qrels_header_tolerates_spaces_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id \tcorpus-id\tscore\textra\nq1\td1\t1\tx\n")
    assert load_qrels(path) == {"q1": {"d1": 1}}


@pytest.mark.parametrize("loader", [load_corpus, load_queries, load_qrels])
def test_missing_file(tmp_path: Path, loader: object) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DatasetError, match=r"nope\.jsonl"):
        loader(path)  # type: ignore[operator]


@pytest.mark.parametrize(
    "header", ["qid\tdocid\tscore", "query-id,corpus-id,score", "q1\td1\t1", "query-id\tcorpus-id"]
)
def test_qrels_bad_header_names_the_file(tmp_path: Path, header: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(header + "\nq1\td1\t1\n")
    with pytest.raises(DatasetError) as info:
        load_qrels(path)
    assert str(path) in str(info.value)
    assert "header" in str(info.value)


def test_qrels_empty_file_is_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.tsv"
    path.write_text("")
    with pytest.raises(DatasetError, match=r"empty\.tsv"):
        load_qrels(path)


def test_qrels_short_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\n")
    with pytest.raises(DatasetError, match=re.escape(f"{path}:3:")):
        load_qrels(path)


def test_qrels_non_integer_score_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t1\nq2\td3\thigh\n")
    with pytest.raises(DatasetError, match=re.escape(f"{path}:4: score must be an integer")):
        load_qrels(path)


@pytest.mark.parametrize("loader", [load_corpus, load_queries])
def test_bad_json_names_file_and_line(tmp_path: Path, loader: object) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": \n')
    with pytest.raises(DatasetError, match=re.escape(f"{path}:3: invalid JSON")):
        loader(path)  # type: ignore[operator]


def test_non_object_row_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "x"}, ["not", "an", "object"]])
    with pytest.raises(DatasetError, match=re.escape(f"{path}:2: expected a JSON object")):
        load_corpus(path)


@pytest.mark.parametrize(
    ("loader", "name", "data"),
    [
        (load_corpus, "corpus.jsonl", b'{"_id": "a", "text": "caf\xe9"}\n'),
        (load_queries, "queries.jsonl", b'{"_id": "q", "text": "caf\xe9?"}\n'),
        (load_qrels, "test.tsv", b"query-id\tcorpus-id\tscore\nq\xe9\td1\t1\n"),
    ],
    ids=["corpus", "queries", "qrels"],
)
def test_invalid_utf8_is_a_dataset_error(
    tmp_path: Path, loader: object, name: str, data: bytes
) -> None:
    """A Latin-1 file must fail as a DatasetError naming the file (the CLI turns those into
    a one-line error), not as a bare UnicodeDecodeError traceback."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=re.escape(name)):
        loader(path)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("loader", "rows"),
    [
        (
            load_corpus,
            [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}, {"title": "t", "text": "z"}],
        ),
        (
            load_corpus,
            [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}, {"_id": "c", "title": "t"}],
        ),
        (load_queries, [{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}, {"text": "z"}]),
    ],
    ids=["corpus-no-id", "corpus-no-text", "queries-no-id"],
)
def test_row_missing_a_required_key_names_file_and_line(
    tmp_path: Path, loader: object, rows: list[object]
) -> None:
    path = _jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DatasetError) as info:
        loader(path)  # type: ignore[operator]
    message = str(info.value)
    assert str(path) in message
    # The bad row is the third line: a big corpus is unfixable without the line number.
    assert f"{path}:3" in message
