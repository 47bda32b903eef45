"""The price table shipped as package data, and what a call costs."""

from __future__ import annotations

import functools
import tomllib
from importlib.resources import files

from pydantic import BaseModel, Field

from tether.errors import ConfigError
from tether.types import Usage

PER_TOKENS = 1_000_000


class Price(BaseModel):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    effective: str


class PriceTable(BaseModel):
    version: str
    models: dict[str, Price]

    def price(self, model: str) -> Price | None:
        """Exact name, else the provider-neutral name (`openai-compat:x` finds `openai:x`);
        local models are free."""
        if model.startswith("local:"):
            return Price(input=0.0, output=0.0, effective="always")
        if model in self.models:
            return self.models[model]
        _, _, bare = model.partition(":")
        for name, price in self.models.items():
            if name.partition(":")[2] == bare:
                return price
        return None


@functools.cache
def default_table() -> PriceTable:
    text = files("tether.data").joinpath("prices.toml").read_text(encoding="utf-8")
    try:
        return PriceTable.model_validate(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"the bundled price table is invalid: {exc}") from exc


def cost_usd(usage: Usage, price: Price) -> float:
    """input * in_rate + output * out_rate, with cache reads and writes at their own rates.
    `usage.input_tokens` counts every prompt token, cached ones included."""
    cached = usage.cached_input_tokens
    written = usage.cache_write_tokens
    plain = max(usage.input_tokens - cached - written, 0)
    total = (
        plain * price.input
        + cached * (price.cached_input if price.cached_input is not None else price.input)
        + written * (price.cache_write if price.cache_write is not None else price.input)
        + usage.output_tokens * price.output
    )
    return total / PER_TOKENS
