"""Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, llama.cpp...)."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np

from tether.errors import EmbeddingError
from tether.models.embedder import TextKind, Vectors, l2_normalise


class OpenAICompatibleEmbedder:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        dim: int,
        api_key: str | None = None,
        batch_size: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            transport=transport,
            timeout=timeout or httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=5.0),
        )
        self._model = model
        self._dim = dim
        self._batch_size = batch_size
        self._secrets = [api_key] if api_key else []

    @property
    def model_id(self) -> str:
        return f"openai-compat:{self._model}"

    @property
    def dim(self) -> int:
        return self._dim

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            part = list(texts[start : start + self._batch_size])
            try:
                response = await self._client.post(
                    "embeddings", json={"model": self._model, "input": part}
                )
            except httpx.HTTPError as exc:
                raise EmbeddingError(
                    f"embeddings endpoint unreachable: {self._redact(str(exc))}"
                ) from exc
            if response.status_code != 200:
                raise EmbeddingError(
                    f"embeddings endpoint answered {response.status_code}: "
                    f"{self._redact(response.text)[:200]}"
                )
            try:
                rows = sorted(response.json()["data"], key=lambda r: r["index"])
                matrix = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
            except (KeyError, TypeError, ValueError) as exc:
                raise EmbeddingError(f"malformed embeddings response: {exc}") from exc
            if matrix.shape != (len(part), self._dim):
                raise EmbeddingError(
                    f"expected {len(part)} vectors of dim {self._dim}, got {matrix.shape}"
                )
            out[start : start + len(part)] = matrix
        return l2_normalise(out)

    def _redact(self, text: str) -> str:
        # Some gateways echo the rejected credential back; it must not reach a log.
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def aclose(self) -> None:
        await self._client.aclose()
