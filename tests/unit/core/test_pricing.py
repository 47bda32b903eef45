"""The bundled price table and the cost formula."""

from __future__ import annotations

import pytest

from tether.pricing import Price, cost_usd, default_table
from tether.types import Usage


def test_bundled_table_is_versioned_and_complete() -> None:
    table = default_table()
    assert table.version >= "2026-01-01"
    assert len(table.models) >= 5
    for name, price in table.models.items():
        assert ":" in name and price.effective and price.output >= price.input > 0


def test_cost_formula_with_cache_reads_and_writes() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5, cache_write=2.5, effective="x")
    usage = Usage(
        input_tokens=1_000, output_tokens=500, cached_input_tokens=200, cache_write_tokens=100
    )
    expected = (700 * 2.0 + 200 * 0.5 + 100 * 2.5 + 500 * 8.0) / 1_000_000
    assert cost_usd(usage, price) == pytest.approx(expected)
    no_cache_rates = Price(input=1.0, output=1.0, effective="x")
    assert cost_usd(usage, no_cache_rates) == pytest.approx(1_500 / 1_000_000)


def test_lookup_by_provider_neutral_name_and_local_is_free() -> None:
    table = default_table()
    assert table.price("openai-compat:gpt-4.1-mini") == table.models["openai:gpt-4.1-mini"]
    assert table.price("local:/models/x.gguf") is not None
    assert cost_usd(Usage(input_tokens=10**6, output_tokens=10**6), table.price("local:x")) == 0  # type: ignore[arg-type]
    assert table.price("openai-compat:unknown-model") is None
