"""Model strings to ChatModels."""

from __future__ import annotations

import pytest

from tether.errors import ConfigError
from tether.models.registry import open_chat_model
from tether.models.traced import TracedChatModel


async def test_extractive_means_no_chat_model() -> None:
    async with open_chat_model("extractive") as model:
        assert model is None
    async with open_chat_model("") as model:
        assert model is None


async def test_openai_compat_spec_builds_a_retrying_client() -> None:
    async with open_chat_model("openai-compat:http://127.0.0.1:9/v1#tiny") as model:
        assert isinstance(model, TracedChatModel)
        assert model.name == "openai-compat:tiny"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:gpt-4.1-mini", "OPENAI_API_KEY"),
        ("openai:", "model name"),
        ("openai-compat:localhost:8080#x", "http"),
        ("anthropic:claude", "ANTHROPIC_API_KEY"),
        ("anthropic:", "model name"),
        ("nonsense", "unknown model"),
        ("local:/no/such/file.gguf", "not found"),
    ],
)
async def test_bad_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        async with open_chat_model(spec):
            pass


async def test_anthropic_with_a_key_builds_the_anthropic_client() -> None:
    async with open_chat_model("anthropic:claude-sonnet-4-20250514", api_key="k") as model:
        assert model is not None and model.name == "anthropic:claude-sonnet-4-20250514"


async def test_openai_with_a_key_targets_the_openai_api() -> None:
    async with open_chat_model("openai:gpt-4.1-mini", api_key="sk-x") as model:
        assert model is not None and model.name == "openai:gpt-4.1-mini"
