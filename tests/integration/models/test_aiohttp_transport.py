"""The aiohttp transport under httpx: bodies, streaming, failures mapped to httpx's types,
and the wire time it reports for Server-Timing."""

from __future__ import annotations

import socket

import httpx
import pytest

from tether.models.aiohttp_transport import AiohttpTransport
from tether.models.http import timing_upstream
from tether.testing import Fault, MockProvider


async def test_round_trip_headers_body_and_wire_time() -> None:
    with MockProvider(default_text="hello") as mock:
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            with timing_upstream() as spent:
                response = await client.post(
                    mock.base_url + "/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": "Bearer k"},
                )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hello"
        sent = mock.chat_requests[0]
        assert sent.header("authorization") == "Bearer k"
        assert sent.json["messages"][0]["content"] == "hi"
        assert spent[0] > 0


async def test_streamed_body_arrives_in_pieces() -> None:
    with MockProvider(default_text="one two three four") as mock:
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            async with client.stream("POST", mock.base_url + "/chat/completions", json=body) as r:
                lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) > 3


async def test_refused_connection_is_httpx_connect_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_read_timeout_is_httpx_read_timeout() -> None:
    with MockProvider() as mock:
        mock.script([Fault.slow_first_byte(2.0)])
        timeout = httpx.Timeout(connect=1.0, read=0.2, write=1.0, pool=1.0)
        async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=timeout) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(
                    mock.base_url + "/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                )


async def test_reset_mid_body_is_a_transport_error() -> None:
    with MockProvider(default_text="a b c d e f g h") as mock:
        mock.script([Fault.reset_mid_stream(after_chunks=2)])
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            with pytest.raises(httpx.TransportError):
                async with client.stream(
                    "POST", mock.base_url + "/chat/completions", json=body
                ) as r:
                    async for _ in r.aiter_bytes():
                        pass
