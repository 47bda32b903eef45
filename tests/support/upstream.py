"""A scripted OpenAI-compatible streaming upstream that notices when its client hangs up.

The fault-injecting MockProvider cannot tell when a client went away while it stalls;
this one reads the socket while it waits, so a test can measure how soon a cancelled
request reaches the provider as a closed connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StallingUpstream:
    """Streams `pieces` as chat-completion chunks, then holds the stream open."""

    pieces: list[str]
    port: int = 0
    requests: int = 0
    #: time.monotonic() when each connection's peer closed (EOF seen).
    closed_at: list[float] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        self.requests += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for piece in self.pieces:
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        # Hold the stream open until the client hangs up.
        while await reader.read(1024):
            pass
        self.closed_at.append(time.monotonic())
        writer.close()


@contextmanager
def tcp_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> Iterator[int]:
    """An asyncio TCP server on a free loopback port, on its own thread; yields the port."""
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None
    port = 0

    async def main() -> None:
        nonlocal stop, port
        stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield port
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


@contextmanager
def stalling_upstream(pieces: list[str]) -> Iterator[StallingUpstream]:
    upstream = StallingUpstream(pieces)
    with tcp_server(upstream._handle) as port:
        upstream.port = port
        yield upstream
