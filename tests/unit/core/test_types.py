"""The shared pydantic types reject values outside their contract."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.types import PUBLIC, Answer, Chunk, Citation, Message


@pytest.mark.parametrize("confidence", [-0.01, 1.01, -1.0, 2.0, float("inf")])
def test_answer_confidence_outside_unit_interval_is_rejected(confidence: float) -> None:
    with pytest.raises(ValidationError):
        Answer(summary="x", confidence=confidence)


@pytest.mark.parametrize("confidence", [0.0, 0.5, 1.0])
def test_answer_confidence_inside_unit_interval_is_accepted(confidence: float) -> None:
    answer = Answer(summary="x", confidence=confidence)
    assert answer.confidence == confidence
    assert answer.citations == []
    assert answer.declined is False


def test_answer_requires_confidence() -> None:
    with pytest.raises(ValidationError):
        Answer(summary="x")  # type: ignore[call-arg]


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_known_roles_are_accepted(role: str) -> None:
    assert Message(role=role, content="hi").role == role  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["robot", "User", "", "function"])
def test_unknown_role_is_rejected(role: str) -> None:
    with pytest.raises(ValidationError):
        Message(role=role, content="hi")  # type: ignore[arg-type]


def test_message_and_chunk_are_frozen() -> None:
    message = Message(role="user", content="hi")
    with pytest.raises(ValidationError):
        message.content = "changed"  # type: ignore[misc]
    chunk = Chunk(id="c1", source_id="s", tenant_id="t", text="x")
    with pytest.raises(ValidationError):
        chunk.text = "changed"  # type: ignore[misc]


def test_chunk_defaults_are_public_and_independent() -> None:
    a = Chunk(id="c1", source_id="s", tenant_id="t", text="x")
    b = Chunk(id="c2", source_id="s", tenant_id="t", text="y")
    assert a.acl == (PUBLIC,)
    assert a.kind == "text"
    assert a.metadata == {} and a.metadata is not b.metadata


def test_citation_round_trips_through_json() -> None:
    citation = Citation(chunk_id="c0", source_id="s", page=3, quote="q")
    assert Citation.model_validate_json(citation.model_dump_json()) == citation
