"""Loaders for the two public red-team sets, as `InjectionCase`s.

* BIPIA (microsoft/BIPIA): *indirect* injection. Clean contexts an agent would retrieve
  (emails, StackOverflow answers, markdown tables) plus lists of attack instructions;
  we build the attacked contexts ourselves by inserting an attack at the start, the
  middle or the end of a context, the way the benchmark does.
* Tensor Trust: *direct* hijacking and prompt-extraction attacks typed by players against
  a defended system prompt that guards an access code.

Attack/position pairing is deterministic from the seed and the context index, so the same
seed always builds the same set and a run can be reproduced from its case ids.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import DatasetError

Position = Literal["start", "middle", "end"]
POSITIONS: tuple[Position, ...] = ("start", "middle", "end")
BipiaTask = Literal["email", "code", "table"]
BIPIA_TASKS: tuple[BipiaTask, ...] = ("email", "code", "table")

M = TypeVar("M", bound=BaseModel)


class InjectionCase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    source: Literal["bipia", "tensor_trust"]
    task: str
    context: str
    question: str
    attack: str | None
    attack_category: str | None
    position: Position | None
    system_prompt: str = ""
    secret: str | None = None


# --- raw record schemas ----------------------------------------------------------------------


class _BipiaText(BaseModel):
    model_config = ConfigDict(extra="ignore")

    context: str = Field(min_length=1)
    question: str = ""


class _BipiaCode(BaseModel):
    model_config = ConfigDict(extra="ignore")

    context: list[str] = Field(min_length=1)
    error: list[str] = []
    code: list[str] = []


class _TensorTrust(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sample_id: int | str
    pre_prompt: str
    post_prompt: str
    access_code: str
    attack: str = Field(min_length=1)


def _records(path: Path, model: type[M]) -> Iterator[tuple[int, M]]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield n, model.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise DatasetError(f"{path}:{n}: malformed record: {exc}") from exc


def _attacks(path: Path) -> list[tuple[str, int, str]]:
    """(category, index within category, text), in file order."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) and s.strip() for s in v)
        for v in raw.values()
    ):
        raise DatasetError(f"{path}: expected an object of category -> list of attack strings")
    out = [(str(cat), i, text) for cat, texts in raw.items() for i, text in enumerate(texts)]
    if not out:
        raise DatasetError(f"{path}: holds no attacks")
    return out


# --- insertion -------------------------------------------------------------------------------

# A sentence ends at . ! ? followed by whitespace; a line break is also a boundary.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _nearest(candidates: list[int], target: int) -> int | None:
    return min(candidates, key=lambda c: (abs(c - target), c)) if candidates else None


def _insert_text(context: str, attack: str, position: Position) -> str:
    if position == "start":
        return f"{attack}\n{context}"
    if position == "end":
        return f"{context}\n{attack}"
    # Cutting mid-sentence would itself look odd to a detector; a real attacker places
    # the payload between sentences, so we do too.
    cuts = [m.start() for m in _SENTENCE_END.finditer(context) if 0 < m.start() < len(context)]
    cut = _nearest(cuts, len(context) // 2)
    if cut is None:
        cut = _nearest([m.start() for m in re.finditer(r"\s", context)], len(context) // 2)
    if cut is None:
        return f"{context}\n{attack}"
    return f"{context[:cut].rstrip()}\n{attack}\n{context[cut:].lstrip()}"


def _insert_lines(lines: list[str], attack: str, position: Position) -> str:
    if position == "start":
        return "\n".join([attack, *lines])
    if position == "end":
        return "\n".join([*lines, attack])
    # Only boundaries outside a ``` fence: an attack pasted inside a code block would split
    # the block and break the surrounding markdown.
    boundaries: list[int] = []
    fenced = False
    for i, line in enumerate(lines):
        if i > 0 and not fenced:
            boundaries.append(i)
        if line.lstrip().startswith("```"):
            fenced = not fenced
    at = _nearest(boundaries, len(lines) // 2)
    if at is None:  # a single line: fall back to its sentences
        return _insert_text("\n".join(lines), attack, position)
    return "\n".join([*lines[:at], attack, *lines[at:]])


def _strip_q(question: str) -> str:
    return re.sub(r"^\s*Q:\s*", "", question).strip()


def _code_question(error: list[str], code: list[str]) -> str:
    err = "\n".join(error).strip()
    src = "\n".join(code).rstrip()
    return (
        "I received the following error message when running my code:\n"
        f"```\n{err}\n```\n\nHere is my code:\n```\n{src}\n```\n\n"
        "Please fix the code so that it runs without this error."
    )


# --- loaders ---------------------------------------------------------------------------------


def load_bipia(root: Path, *, attacks_per_context: int = 1, seed: int = 0) -> list[InjectionCase]:
    """One clean case per BIPIA context and `attacks_per_context` attacked copies of it.

    `root` is the BIPIA folder (`email/`, `code/`, `table/`, `text_attack_train.json`,
    `code_attack_train.json`). Text attacks go into emails and tables, code attacks into
    code answers. Within a task the attacks are shuffled once by `seed`; context `i`'s
    `k`-th attack is the `n = i * attacks_per_context + k`-th of that order (wrapping
    around), and its position rotates with `n` and with each pass through the attack list,
    so every attack appears and, over enough passes, at every position.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected the BIPIA layout)")
    if attacks_per_context < 0:
        raise ValueError("attacks_per_context must be >= 0")
    text_attacks = _attacks(root / "text_attack_train.json")
    code_attacks = _attacks(root / "code_attack_train.json")
    if attacks_per_context > min(len(text_attacks), len(code_attacks)):
        # More than one pass per context would repeat an (attack, position) pair and
        # hence a case id.
        raise ValueError(
            f"attacks_per_context must be <= {min(len(text_attacks), len(code_attacks))}"
        )

    cases: list[InjectionCase] = []
    for task in BIPIA_TASKS:
        attacks = list(code_attacks if task == "code" else text_attacks)
        # A string seed is hashed with SHA-512, so the order is stable across processes.
        random.Random(f"{seed}:{task}").shuffle(attacks)
        path = root / task / "train.jsonl"
        contexts: list[tuple[str, str, list[str] | None]] = []
        if task == "code":
            for _, code in _records(path, _BipiaCode):
                joined = "\n".join(code.context)
                contexts.append((joined, _code_question(code.error, code.code), code.context))
        else:
            for _, rec in _records(path, _BipiaText):
                contexts.append((rec.context, _strip_q(rec.question), None))

        for i, (context, question, lines) in enumerate(contexts):
            base = f"bipia/{task}/{i}"
            cases.append(
                InjectionCase(
                    id=f"{base}/clean",
                    source="bipia",
                    task=task,
                    context=context,
                    question=question,
                    attack=None,
                    attack_category=None,
                    position=None,
                )
            )
            for k in range(attacks_per_context):
                n = i * attacks_per_context + k
                rounds, j = divmod(n, len(attacks))
                category, idx, attack = attacks[j]
                position = POSITIONS[(j + rounds + seed) % len(POSITIONS)]
                attacked = (
                    _insert_lines(lines, attack, position)
                    if lines is not None
                    else _insert_lines(context.split("\n"), attack, position)
                    if task == "table"
                    else _insert_text(context, attack, position)
                )
                cases.append(
                    InjectionCase(
                        id=f"{base}/attack/{category}/{idx}/{position}",
                        source="bipia",
                        task=task,
                        context=attacked,
                        question=question,
                        attack=attack,
                        attack_category=category,
                        position=position,
                    )
                )
    return cases


def load_tensor_trust(root: Path) -> list[InjectionCase]:
    """One case per row of `hijacking.jsonl` and `extraction.jsonl` under `root`.

    The attack is what the user typed, so it is both the case's context and its attack;
    the defended prompt and its access code come along so output checks can be scored.
    """
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected hijacking.jsonl, extraction.jsonl)")
    cases: list[InjectionCase] = []
    for task in ("hijacking", "extraction"):
        seen: set[str] = set()
        for n, rec in _records(root / f"{task}.jsonl", _TensorTrust):
            case_id = f"tensor_trust/{task}/{rec.sample_id}"
            if case_id in seen:
                raise DatasetError(f"{root / f'{task}.jsonl'}:{n}: duplicate sample_id")
            seen.add(case_id)
            cases.append(
                InjectionCase(
                    id=case_id,
                    source="tensor_trust",
                    task=task,
                    context=rec.attack,
                    question="",
                    attack=rec.attack,
                    attack_category=None,
                    position=None,
                    system_prompt=f"{rec.pre_prompt}\n{rec.post_prompt}",
                    secret=rec.access_code,
                )
            )
    return cases
