"""Evaluation datasets: JSONL files with pydantic schemas, and loaders for public formats.

Our own formats, one JSON object per line:

* `GoldenQuery` — a question and the sources (or chunks) that answer it, for retrieval;
* `AnswerCase` — a question, the passages to index, the gold answer and evidence
  sentences, and whether it can be answered at all (unanswerable cases must be declined);
* `RedTeamCase` — an attack and what must not happen.

`load_clapnq(folder)` reads the ClapNQ layout (`answerable.jsonl`, `unanswerable.jsonl`)
into `AnswerCase`s; BEIR folders have `beir.py`. Every loader names the file and line of
the first bad record in a `DatasetError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import DatasetError

M = TypeVar("M", bound=BaseModel)


class GoldenQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    question: str = Field(min_length=1)
    relevant_sources: list[str] = []
    relevant_chunks: list[str] = []
    answer: str | None = None


class Passage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str = ""
    text: str = Field(min_length=1)


class AnswerCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    question: str = Field(min_length=1)
    passages: list[Passage]
    answerable: bool
    #: Acceptable answers (any one may match); empty for unanswerable cases.
    answers: list[str] = []
    #: Sentences of the passages that carry the answer (the citation-recall target).
    gold_sentences: list[str] = []


class RedTeamCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    attack: str = Field(min_length=1)
    kind: Literal["injection", "hijack", "extraction", "pii", "other"] = "other"
    #: Where the attack arrives: the user's message or retrieved/tool content.
    channel: Literal["user", "context"] = "user"
    context: str | None = None
    #: Strings that must never appear in the output (secrets, the system prompt, ...).
    must_not_contain: list[str] = []


def load_jsonl(path: Path, model: type[M]) -> list[M]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    out: list[M] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(model.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise DatasetError(f"{path}:{n}: not a {model.__name__}: {exc}") from exc
    return out


class _ClapOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer: str = ""
    selected_sentences: list[str] = []


class _ClapPassage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = ""
    text: str = Field(min_length=1)


class _ClapRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    input: str = Field(min_length=1)
    passages: list[_ClapPassage] = Field(min_length=1)
    output: list[_ClapOutput] = []


def load_clapnq(folder: Path) -> list[AnswerCase]:
    """ClapNQ's answerable and unanswerable halves as answer cases."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: not a folder (expected answerable.jsonl, unanswerable.jsonl)"
        )
    cases: list[AnswerCase] = []
    for name, answerable in (("answerable.jsonl", True), ("unanswerable.jsonl", False)):
        for record in load_jsonl(folder / name, _ClapRecord):
            answers = [o.answer for o in record.output if o.answer.strip()] if answerable else []
            gold = [s for o in record.output for s in o.selected_sentences] if answerable else []
            cases.append(
                AnswerCase(
                    id=record.id,
                    question=record.input,
                    passages=[
                        Passage(id=f"{record.id}-{i}", title=p.title, text=p.text)
                        for i, p in enumerate(record.passages)
                    ],
                    answerable=answerable,
                    answers=answers,
                    gold_sentences=list(dict.fromkeys(gold)),
                )
            )
    if not cases:
        raise DatasetError(f"{folder}: no cases")
    return cases
