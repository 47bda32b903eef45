"""The bundled MiniLM embedder: shape, normalisation, batching order, truncation, semantics."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tether.models.embedder import Embedder
from tether.models.minilm import DIM, MODEL_ID, MiniLMEmbedder, model_files

TEXTS = [
    "A cat sleeps on the warm windowsill.",
    "ok",
    "The quarterly report shows revenue grew by twelve percent compared to last year, "
    "driven mostly by subscriptions in the European market and lower churn.",
    "Refunds are issued within five business days.",
    "word " * 150,
    "How do I reset my password?",
    "Espresso beans, medium roast, 500 g bag.",
]


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    # batch_size=3 forces several length-sorted batches over TEXTS.
    return MiniLMEmbedder(batch_size=3, threads=2)


def test_model_files_exist() -> None:
    model, tokenizer = model_files()
    assert model.is_file() and model.suffix == ".onnx"
    assert tokenizer.is_file() and tokenizer.name == "tokenizer.json"


def test_identity_and_protocol(minilm: MiniLMEmbedder) -> None:
    assert minilm.model_id == MODEL_ID
    assert minilm.dim == DIM == 384
    assert isinstance(minilm, Embedder)


async def test_shape_dtype_and_unit_norms(minilm: MiniLMEmbedder) -> None:
    vectors = await minilm.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_empty_list_gives_zero_rows(minilm: MiniLMEmbedder) -> None:
    vectors = await minilm.embed([])
    assert vectors.shape == (0, 384)
    assert minilm.embed_sync([]).shape == (0, 384)


def test_batched_rows_equal_each_text_embedded_alone(minilm: MiniLMEmbedder) -> None:
    together = minilm.embed_sync(TEXTS)
    alone = np.stack([minilm.embed_sync([text])[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    # Distinct texts get distinct rows: the length sort did not scramble or collapse them.
    assert np.linalg.norm(together[0] - together[1]) > 0.1


async def test_order_is_input_order_for_reversed_input(minilm: MiniLMEmbedder) -> None:
    forward = await minilm.embed(TEXTS)
    backward = await minilm.embed(list(reversed(TEXTS)))
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-4)


async def test_async_and_sync_paths_agree(minilm: MiniLMEmbedder) -> None:
    # Small and large batches (padded differently) give the same vectors.
    small = await minilm.embed(TEXTS[:2])
    large = await minilm.embed(TEXTS)
    np.testing.assert_allclose(small, large[:2], atol=1e-4)


async def test_concurrent_calls_do_not_interfere(minilm: MiniLMEmbedder) -> None:
    expected = minilm.embed_sync(TEXTS)
    results = await asyncio.gather(*(minilm.embed(TEXTS) for _ in range(3)))
    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-4)


def test_long_text_is_truncated_at_max_tokens(minilm: MiniLMEmbedder) -> None:
    long_text = " ".join(f"word{i % 97}" for i in range(5000))
    vector = minilm.embed_sync([long_text])
    assert vector.shape == (1, 384)
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_text_beyond_max_tokens_does_not_change_the_embedding() -> None:
    small = MiniLMEmbedder(max_tokens=16, threads=1)
    head = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"
    a = small.embed_sync([head + " rho sigma tau"])
    b = small.embed_sync([head + " completely different tail about bananas and trains"])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_paraphrase_is_closer_than_an_unrelated_sentence(minilm: MiniLMEmbedder) -> None:
    anchor, paraphrase, unrelated = minilm.embed_sync(
        [
            "How can I change my account password?",
            "What are the steps to reset the password of my account?",
            "The tides are driven by the gravity of the moon.",
        ]
    )
    close = float(anchor @ paraphrase)
    far = float(anchor @ unrelated)
    assert close > far + 0.3
    assert close > 0.6


def test_identical_texts_get_identical_vectors(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed_sync(["same text", "other words entirely", "same text"])
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
