"""Prompts as code: one module per prompt id and version, and a registry to find them."""

from __future__ import annotations

from typing import Any

from tether.errors import ConfigError
from tether.prompts.agent_step_v1 import AgentStepV1
from tether.prompts.base import Prompt
from tether.prompts.eval_faithfulness_v1 import FaithfulnessJudgeV1
from tether.prompts.memory_summary_v1 import MemorySummaryV1
from tether.prompts.qa_answer_v1 import QAAnswerV1

_REGISTRY: dict[str, dict[int, Prompt[Any, Any]]] = {}


def register(prompt: Prompt[Any, Any]) -> None:
    versions = _REGISTRY.setdefault(prompt.id, {})
    if prompt.version in versions:
        raise ConfigError(f"prompt {prompt.key} is registered twice")
    versions[prompt.version] = prompt


def get(prompt_id: str, version: int | None = None) -> Prompt[Any, Any]:
    """A prompt by id, at `version` or the latest one."""
    versions = _REGISTRY.get(prompt_id)
    if not versions:
        raise ConfigError(f"unknown prompt {prompt_id!r}; known: {sorted(_REGISTRY)}")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        raise ConfigError(f"prompt {prompt_id!r} has no version {version}: {sorted(versions)}")
    return versions[version]


def known() -> dict[str, list[int]]:
    return {pid: sorted(v) for pid, v in sorted(_REGISTRY.items())}


register(QAAnswerV1())
register(FaithfulnessJudgeV1())
register(AgentStepV1())
register(MemorySummaryV1())

__all__ = ["Prompt", "get", "known", "register"]
