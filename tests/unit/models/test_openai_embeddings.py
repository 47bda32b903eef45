"""OpenAI-compatible embeddings over an httpx MockTransport: requests, ordering, errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from tether.errors import EmbeddingError
from tether.models.openai_embeddings import OpenAICompatibleEmbedder

KEY = "sk-test-DO-NOT-LEAK-0123456789"
DIM = 4


def _vector(text: str) -> list[float]:
    """A deterministic, text-dependent vector (not normalised)."""
    seed = sum(map(ord, text))
    return [float(seed % 7 + 1), float(len(text)), 1.0, float(seed % 3)]


def _ok(request: httpx.Request, *, reverse: bool = True) -> httpx.Response:
    body = json.loads(request.content)
    rows = [
        {"object": "embedding", "index": i, "embedding": _vector(text)}
        for i, text in enumerate(body["input"])
    ]
    if reverse:
        rows.reverse()  # servers may return rows out of order; `index` says where they go
    return httpx.Response(200, json={"object": "list", "data": rows, "model": body["model"]})


class Server:
    def __init__(self, handler: Callable[[httpx.Request], httpx.Response] = _ok) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def _embedder(server: Server, **kwargs: object) -> OpenAICompatibleEmbedder:
    options: dict[str, object] = {"dim": DIM, "api_key": KEY, **kwargs}
    return OpenAICompatibleEmbedder(
        "http://models.local:8000/v1/",
        "text-embed-small",
        transport=httpx.MockTransport(server),
        **options,  # type: ignore[arg-type]
    )


def _expected(texts: list[str]) -> np.ndarray:
    matrix = np.asarray([_vector(t) for t in texts], dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


async def test_request_url_body_and_authorization() -> None:
    server = Server()
    embedder = _embedder(server)
    await embedder.embed(["hello", "world"])
    await embedder.aclose()
    (request,) = server.requests
    assert request.method == "POST"
    assert str(request.url) == "http://models.local:8000/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"model": "text-embed-small", "input": ["hello", "world"]}


async def test_base_url_without_trailing_slash_keeps_its_path() -> None:
    server = Server()
    embedder = OpenAICompatibleEmbedder(
        "http://models.local:8000/v1", "m", dim=DIM, transport=httpx.MockTransport(server)
    )
    await embedder.embed(["x"])
    assert str(server.requests[0].url) == "http://models.local:8000/v1/embeddings"
    assert "authorization" not in server.requests[0].headers  # no key, no header


async def test_identity() -> None:
    embedder = _embedder(Server())
    assert embedder.model_id == "openai-compat:text-embed-small"
    assert embedder.dim == DIM


async def test_rows_are_placed_by_index_and_normalised() -> None:
    texts = ["first text", "second", "the third one"]
    vectors = await _embedder(Server()).embed(texts)
    assert vectors.shape == (3, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, _expected(texts), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


async def test_batching_splits_requests_and_keeps_order() -> None:
    server = Server()
    texts = [f"text {i}" * (i + 1) for i in range(7)]
    vectors = await _embedder(server, batch_size=3).embed(texts)
    sent = [json.loads(r.content)["input"] for r in server.requests]
    assert sent == [texts[0:3], texts[3:6], texts[6:7]]
    np.testing.assert_allclose(vectors, _expected(texts), rtol=1e-6)


async def test_empty_input_sends_nothing() -> None:
    server = Server()
    vectors = await _embedder(server).embed([])
    assert vectors.shape == (0, DIM)
    assert server.requests == []


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_non_200_raises_embedding_error_with_status(status: int) -> None:
    server = Server(lambda _: httpx.Response(status, text="upstream says no"))
    with pytest.raises(EmbeddingError) as info:
        await _embedder(server).embed(["x"])
    message = str(info.value)
    assert str(status) in message
    assert "upstream says no" in message
    assert KEY not in message


async def test_error_body_is_truncated() -> None:
    server = Server(lambda _: httpx.Response(500, text="E" * 5000))
    with pytest.raises(EmbeddingError) as info:
        await _embedder(server).embed(["x"])
    assert len(str(info.value)) < 400


async def test_api_key_echoed_by_the_server_is_not_in_the_error() -> None:
    """Some gateways echo the rejected credential in their 401 body; the error message
    (which the CLI prints) must still not carry the key."""
    server = Server(
        lambda request: httpx.Response(
            401, json={"error": f"invalid key: {request.headers['authorization']}"}
        )
    )
    with pytest.raises(EmbeddingError) as info:
        await _embedder(server).embed(["x"])
    assert "401" in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


async def test_transport_failure_is_an_embedding_error_without_the_key() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(EmbeddingError, match="unreachable") as info:
        await _embedder(Server(refuse)).embed(["x"])
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"object": "list"}',
        b'{"data": [{"embedding": [1, 2, 3, 4]}]}',
        b'{"data": [{"index": 0}]}',
        b'{"data": "nope"}',
        b'{"data": [{"index": 0, "embedding": ["a", "b", "c", "d"]}]}',
        b'{"data": [{"index": 0, "embedding": null}]}',
        b"[1, 2, 3]",
    ],
)
async def test_malformed_body_raises_embedding_error(body: bytes) -> None:
    server = Server(lambda _: httpx.Response(200, content=body))
    with pytest.raises(EmbeddingError):
        await _embedder(server).embed(["x"])


async def test_wrong_dimension_raises_embedding_error() -> None:
    def short(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["input"])
        return httpx.Response(
            200, json={"data": [{"index": i, "embedding": [1.0, 2.0]} for i in range(n)]}
        )

    with pytest.raises(EmbeddingError, match="dim 4"):
        await _embedder(Server(short)).embed(["x", "y"])


async def test_missing_rows_raise_embedding_error() -> None:
    def one_row(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0, 0, 0]}]})

    with pytest.raises(EmbeddingError):
        await _embedder(Server(one_row)).embed(["x", "y", "z"])


async def test_ragged_rows_raise_embedding_error() -> None:
    def ragged(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "data": [
                    {"index": 0, "embedding": [1.0, 0, 0, 0]},
                    {"index": 1, "embedding": [1.0]},
                ]
            },
        )

    with pytest.raises(EmbeddingError):
        await _embedder(Server(ragged)).embed(["x", "y"])
