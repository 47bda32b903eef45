"""Deterministic stand-ins for tests of apps built on tether (and tether's own tests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from tether.models.chat import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    StreamEvent,
    TokenEvent,
    ToolCallEvent,
    UsageEvent,
)
from tether.models.embedder import TextKind, Vectors, l2_normalise
from tether.types import Usage

_WORD = re.compile(r"\w+")


class HashEmbedder:
    """Bag-of-words hashed into `dim` buckets: texts sharing words get similar vectors.

    Not a semantic model; it makes dense retrieval deterministic and instant in tests.
    """

    def __init__(self, dim: int = 64) -> None:
        self._dim = dim
        self.calls = 0
        self.texts_embedded = 0

    @property
    def model_id(self) -> str:
        return f"hash-bow-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest())
                out[row, bucket % self._dim] += 1.0
        return l2_normalise(out)


class FakeChatModel:
    """A scripted `ChatModel` for tests of apps built on tether.

    Each call consumes the next script entry: a `ChatResponse` (or plain text) to return,
    or an exception to raise. `delay` seconds pass before each reply; `requests` records
    what was asked, so tests can assert on prompts.
    """

    def __init__(
        self,
        script: Sequence[ChatResponse | str | Exception] = (),
        *,
        delay: float = 0.0,
        name: str = "fake",
        responder: Callable[[ChatRequest], ChatResponse | str] | None = None,
    ) -> None:
        self._script = list(script)
        #: Answers every request once the script is used up (None: running out is an error).
        self._responder = responder
        self._delay = delay
        self._name = name
        self.requests: list[ChatRequest] = []

    @property
    def name(self) -> str:
        return self._name

    async def _next(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if self._delay:
            await asyncio.sleep(self._delay)
        if not self._script:
            if self._responder is None:
                raise AssertionError("FakeChatModel ran out of scripted replies")
            item: ChatResponse | str | Exception = self._responder(request)
        else:
            item = self._script.pop(0)
        if isinstance(item, Exception):
            raise item
        if isinstance(item, str):
            words = sum(len(m.content.split()) for m in request.messages)
            return ChatResponse(
                text=item,
                model=self._name,
                usage=Usage(input_tokens=words, output_tokens=len(item.split())),
            )
        return item

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._next(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        reply = await self._next(request)
        for piece in re.findall(r"\S+\s*", reply.text):
            yield TokenEvent(text=piece)
        for call in reply.tool_calls:
            yield ToolCallEvent(call=call)
        yield UsageEvent(usage=reply.usage)
        yield DoneEvent(finish_reason=reply.finish_reason, request_id=reply.request_id)


_SOURCE = re.compile(r'<item id="([^"]+)"[^>]*>\n(.*?)\n</item>', re.S)


def grounded_reply(request: ChatRequest) -> str:
    """A qa.answer-shaped JSON reply quoting the first sentence of the first source in
    the prompt, or a decline when there is none. Deterministic and offline: it exercises
    the whole LLM answer path (prompt, structured output, citation check) without a model."""
    prompt = request.messages[-1].content if request.messages else ""
    found = _SOURCE.search(prompt)
    if found is None:
        return json.dumps(
            {
                "answer": "The sources do not answer this.",
                "cited_ids": [],
                "declined": True,
                "confidence": 1.0,
            }
        )
    source_id, text = found.group(1), " ".join(found.group(2).split())
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return json.dumps(
        {
            "answer": f"{sentence} [{source_id}]",
            "cited_ids": [source_id],
            "declined": False,
            "confidence": 0.5,
        }
    )
