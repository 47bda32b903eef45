"""A scripted OpenAI-compatible upstream that plays an agent's model over real HTTP:
search the docs, then propose a task, then answer. It reads only what the agent sent, so
the server's agent loop, tool calling wire format and approval flow all run for real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.upstream import tcp_server

TASK = {"title": "Renew the TLS certificate", "owner": "ops", "priority": "high"}


def reply(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["messages"][-1]["content"]
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "tool_calls"
    if "Result of search_docs" not in prompt:
        call = ("search_docs", {"query": "certificate renewal"})
    elif "Result of create_task" not in prompt:
        call = ("create_task", TASK)
    else:
        call = None
        outcome = "rejected" if "rejected this call" in prompt else "created"
        message["content"] = f"Done: the task was {outcome}."
        finish = "stop"
    if call is not None:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": call[0], "arguments": json.dumps(call[1])},
            }
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 12, "total_tokens": 0},
    }


@dataclass
class AgentUpstream:
    port: int = 0
    requests: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: many requests per connection
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = json.loads(await reader.readexactly(length))
                self.requests += 1
                data = json.dumps(reply(body)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(data), data)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextmanager
def agent_upstream() -> Iterator[AgentUpstream]:
    upstream = AgentUpstream()
    with tcp_server(upstream._handle) as port:
        upstream.port = port
        yield upstream
