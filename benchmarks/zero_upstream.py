"""A zero-latency OpenAI-compatible upstream, for measuring what sits in front of it.

    uv run python -m benchmarks.zero_upstream --port 8600 [--fault-rate 0.05] [--seed 1]

One process, one event loop (uvloop when importable), a hand-written HTTP/1.1 keep-alive
server on `asyncio.Protocol`: request line, headers and a Content-Length (or chunked) body
are parsed by hand, and answers are built from pre-encoded pieces, so the upstream costs as
little as possible per request and whatever a proxy adds shows up undiluted.

Routes:
* `POST /v1/chat/completions`: a fixed, valid `chat.completion` ("ok", finish_reason
  "stop", usage counted from the request's size), the request's `model` echoed back; with
  `"stream": true`, the same as server-sent events (role, content, finish chunks, a usage
  chunk when `stream_options.include_usage` is set, then `data: [DONE]`);
* `GET /v1/models` (also the readiness probe), `GET /health`.

`--fault-rate F` answers that fraction of chat requests with an error instead, 500, 429
(with `Retry-After: 0`) or 503 drawn evenly (`--fault-codes` to change the set): the soak
test's misbehaving upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from collections.abc import Callable
from typing import cast

OK_STATUS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
JSON = b"application/json"
SSE = b"text/event-stream"
MODELS = json.dumps(
    {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "zero"}]}
).encode()
ERROR_BODY = {
    code: json.dumps(
        {
            "error": {
                "message": f"injected fault {code}",
                "type": "rate_limit_error" if code == 429 else "server_error",
                "param": None,
                "code": None,
            }
        }
    ).encode()
    for code in (429, 500, 503)
}
NOT_FOUND = (
    b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}'
)
BAD_REQUEST = (
    b'{"error":{"message":"bad request","type":"invalid_request_error","param":null,"code":null}}'
)


def response(
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    close: bool = False,
    extra: bytes = b"",
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s%s\r\n" % (
        status,
        OK_STATUS.get(status, b"Status"),
        content_type,
        len(body),
        extra,
        b"connection: close\r\n" if close else b"",
    )
    return head + body


class Upstream:
    """Shared state of all connections: counters, fault injection, the `created` clock."""

    def __init__(self, fault_rate: float, fault_codes: tuple[int, ...], seed: int | None) -> None:
        self.fault_rate = fault_rate
        self.fault_codes = fault_codes
        self.random = random.Random(seed)
        self.served = 0
        self.faults = 0

    def chat(self, body: bytes) -> tuple[bytes, bytes, int, bytes]:
        """(content type, body, status, extra headers) for a chat completion request."""
        self.served += 1
        if self.fault_rate and self.random.random() < self.fault_rate:
            self.faults += 1
            code = self.random.choice(self.fault_codes)
            extra = b"retry-after: 0\r\n" if code == 429 else b""
            return JSON, ERROR_BODY.get(code, ERROR_BODY[500]), code, extra
        try:
            request = json.loads(body)
        except ValueError:
            return JSON, BAD_REQUEST, 400, b""
        if not isinstance(request, dict):
            return JSON, BAD_REQUEST, 400, b""
        model = request.get("model")
        model_json = json.dumps(model if isinstance(model, str) else "m").encode()
        ident = b'"chatcmpl-zero-%d"' % self.served
        created = b"%d" % int(time.time())
        prompt = max(1, len(body) // 4)
        usage = b'{"prompt_tokens":%d,"completion_tokens":1,"total_tokens":%d}' % (
            prompt,
            prompt + 1,
        )
        if request.get("stream") is True:
            options = request.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            return SSE, stream_body(ident, created, model_json, usage, with_usage), 200, b""
        out = (
            b'{"id":%s,"object":"chat.completion","created":%s,"model":%s,'
            b'"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
            b'"logprobs":null,"finish_reason":"stop"}],"usage":%s,"system_fingerprint":null}'
            % (ident, created, model_json, usage)
        )
        return JSON, out, 200, b""


def stream_body(
    ident: bytes, created: bytes, model: bytes, usage: bytes, with_usage: bool
) -> bytes:
    head = b'{"id":%s,"object":"chat.completion.chunk","created":%s,"model":%s,"choices":' % (
        ident,
        created,
        model,
    )
    tail = b',"usage":null}' if with_usage else b"}"
    chunks = [
        head
        + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
        + tail,
        head + b'[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]' + tail,
        head + b'[{"index":0,"delta":{},"finish_reason":"stop"}]' + tail,
    ]
    if with_usage:
        chunks.append(head + b'[],"usage":' + usage + b"}")
    return b"".join(b"data: " + c + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


class Connection(asyncio.Protocol):
    """One client connection: parses as many requests as the buffer holds, in order."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and self.buffer:
            if not self.handle_one():
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def handle_one(self) -> bool:
        """Answer the first complete request in the buffer; False when it is incomplete."""
        transport = self.transport
        assert transport is not None
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > 65536:
                transport.write(response(400, BAD_REQUEST, close=True))
                transport.close()
            return False
        lines = bytes(buffer[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            transport.write(response(400, BAD_REQUEST, close=True))
            transport.close()
            return False
        length = 0
        chunked = False
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                value = value.strip().lower()
                close = value == b"close" or (close and value != b"keep-alive")
        start = end + 4
        if chunked:
            decoded = dechunk(buffer, start)
            if decoded is None:
                return False
            body, consumed = decoded
        else:
            if len(buffer) < start + length:
                return False
            body, consumed = bytes(buffer[start : start + length]), start + length
        del buffer[:consumed]
        path = target.split(b"?", 1)[0]
        if path == b"/v1/chat/completions" or path == b"/chat/completions":
            if method != b"POST":
                out = response(405, NOT_FOUND, close=close)
            else:
                content_type, payload, status, extra = self.upstream.chat(body)
                out = response(status, payload, content_type, close, extra)
        elif path in (b"/v1/models", b"/models") and method == b"GET":
            out = response(200, MODELS, close=close)
        elif path == b"/health":
            out = response(200, b'{"status":"ok"}', close=close)
        else:
            out = response(404, NOT_FOUND, close=close)
        transport.write(out)
        if close:
            transport.close()
            return False
        return True


def dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `start`: (body, bytes consumed), or None if incomplete."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position : position + size]))
        position += size + 2


async def serve(host: str, port: int, upstream: Upstream) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"zero upstream listening on http://{host}:{port}/v1", flush=True)
    async with server:
        await stop.wait()
    print(f"zero upstream: {upstream.served} chat requests, {upstream.faults} faults", flush=True)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-codes", default="500,429,503")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    codes = tuple(int(c) for c in args.fault_codes.split(",") if c.strip())
    upstream = Upstream(args.fault_rate, codes, args.seed)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(args.host, args.port, upstream))


if __name__ == "__main__":
    main()
