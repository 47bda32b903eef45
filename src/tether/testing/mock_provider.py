"""A fault-injecting mock of an OpenAI-compatible Chat Completions server.

A real HTTP/1.1 server on 127.0.0.1 (a free port), run in a background thread, so the
code under test goes through its real HTTP client, sockets and timeouts::

    from tether.testing import Fault, MockProvider

    with MockProvider() as mock:
        mock.script([Fault.status(429, retry_after=0.2), Fault.ok("hello")])
        model = OpenAICompatibleChat(mock.base_url, "m", api_key="sk-test")
        ...
        assert len(mock.requests) == 2

Every request is recorded (`mock.requests`). Requests to ``POST /v1/chat/completions``
consume the script one fault per request, in order; once it is spent the server answers
normally (`default_text`). Streaming (``"stream": true``) answers are Server-Sent Events
over chunked transfer encoding, with a final usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``.

Shutdown is prompt even while a handler is sleeping inside a fault: every delay waits
on a stop event, and open connections are shut down when the server stops.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

__all__ = ["DEFAULT_TEXT", "Fault", "FaultKind", "MockProvider", "RecordedRequest"]

DEFAULT_TEXT = "Hello from the mock provider."
#: In a `Fault.status` body, replaced by the Authorization header the request carried
#: (to test that a client redacts keys a server echoes back).
AUTHORIZATION_PLACEHOLDER = "{authorization}"
CHAT_PATH = "/v1/chat/completions"

FaultKind: TypeAlias = Literal[
    "ok",
    "status",
    "slow_first_byte",
    "stall_body",
    "reset_mid_stream",
    "malformed_json",
    "truncated_sse",
    "stream_error",
]

_DEFAULT_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("Bad request.", "invalid_request_error", "bad_request"),
    401: ("Invalid authentication.", "invalid_request_error", "invalid_api_key"),
    403: ("Forbidden.", "invalid_request_error", "forbidden"),
    404: ("Not found.", "invalid_request_error", "not_found"),
    429: ("Rate limit reached, please slow down.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error processing your request.", "server_error", "server_error"),
    502: ("Bad gateway.", "server_error", "bad_gateway"),
    503: ("The server is overloaded, try again later.", "server_error", "overloaded"),
}


def _error_body(message: str, type_: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()


def _check_seconds(seconds: float) -> float:
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    return float(seconds)


def _check_chunks(after_chunks: int) -> int:
    if after_chunks < 0:
        raise ValueError(f"after_chunks must be >= 0, got {after_chunks!r}")
    return after_chunks


@dataclass(frozen=True)
class Fault:
    """How the server answers one chat-completions request. Build with the class methods.

    `after_chunks` counts SSE events for streams (content deltas first, then the finish
    chunk, then the usage chunk); for non-stream answers the cut is half the body.
    """

    kind: FaultKind
    code: int = 200
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    after_chunks: int = 0
    text: str | None = None
    usage: Mapping[str, Any] | None = field(default=None, hash=False)
    finish_reason: str = "stop"
    keepalive: float | None = None

    @classmethod
    def ok(
        cls,
        text: str | None = None,
        *,
        usage: Mapping[str, Any] | None = None,
        finish_reason: str = "stop",
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """A normal answer. `usage` is OpenAI's wire object (prompt_tokens, ...); by
        default it is counted from the words of the request and the answer."""
        return cls(
            "ok",
            text=text,
            usage=dict(usage) if usage is not None else None,
            finish_reason=finish_reason,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def status(
        cls,
        code: int,
        body: str | bytes | Mapping[str, Any] | None = None,
        *,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        echo_authorization: bool = False,
    ) -> Fault:
        """An HTTP error (or any status) with a JSON body.

        `body`: a mapping is sent as JSON, str/bytes verbatim; by default an OpenAI-style
        ``{"error": {...}}`` for the code. Any ``{authorization}`` in it is replaced by the
        request's Authorization header; `echo_authorization=True` with no body sends
        ``Incorrect API key provided: <Authorization header>``. `retry_after` sets the
        Retry-After header (seconds, or a string such as an HTTP date)."""
        if not 100 <= code <= 599:
            raise ValueError(f"HTTP status must be in 100..599, got {code}")
        if body is None:
            if echo_authorization:
                payload = _error_body(
                    f"Incorrect API key provided: {AUTHORIZATION_PLACEHOLDER}.",
                    "invalid_request_error",
                    "invalid_api_key",
                )
            else:
                message, type_, err_code = _DEFAULT_ERRORS.get(
                    code, (f"HTTP {code}.", "error", str(code))
                )
                payload = _error_body(message, type_, err_code)
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(dict(body)).encode()
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = (
                retry_after if isinstance(retry_after, str) else _seconds_text(retry_after)
            )
        return cls("status", code=code, body=payload, headers=tuple(extra.items()))

    @classmethod
    def context_length_exceeded(cls) -> Fault:
        """400 worded as OpenAI words a prompt that does not fit the context window."""
        return cls.status(
            400,
            _error_body(
                "This model's maximum context length is 128 tokens. However, your messages "
                "resulted in 4096 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
        )

    @classmethod
    def slow_first_byte(cls, seconds: float, text: str | None = None) -> Fault:
        """Wait `seconds` before sending anything (status line included), then answer."""
        return cls("slow_first_byte", seconds=_check_seconds(seconds), text=text)

    @classmethod
    def stall_body(
        cls,
        seconds: float,
        *,
        after_chunks: int = 1,
        text: str | None = None,
        keepalive: float | None = None,
    ) -> Fault:
        """Send headers and `after_chunks` SSE events (non-stream: half the body), wait
        `seconds`, then send the rest. Streams only: with `keepalive`, send an SSE comment
        (``: keep-alive``) every `keepalive` seconds while waiting, as some gateways do."""
        if keepalive is not None and not keepalive > 0:
            raise ValueError(f"keepalive must be > 0, got {keepalive!r}")
        return cls(
            "stall_body",
            seconds=_check_seconds(seconds),
            after_chunks=_check_chunks(after_chunks),
            text=text,
            keepalive=keepalive,
        )

    @classmethod
    def reset_mid_stream(cls, after_chunks: int = 1, text: str | None = None) -> Fault:
        """Send `after_chunks` SSE events (non-stream: half the body), then abort the
        connection with a TCP reset: no terminating chunk, no ``[DONE]``."""
        return cls("reset_mid_stream", after_chunks=_check_chunks(after_chunks), text=text)

    @classmethod
    def malformed_json(cls, body: str = '{"choices": [{"message": ') -> Fault:
        """200 whose body is not JSON (streams: one ``data:`` event carrying it)."""
        return cls("malformed_json", body=body.encode())

    @classmethod
    def stream_error(
        cls,
        after_chunks: int = 1,
        message: str = "The server had an error while processing your request.",
        *,
        code: int = 500,
        text: str | None = None,
    ) -> Fault:
        """Streams: `after_chunks` SSE events, then ``data: {"error": {...}}`` and
        ``data: [DONE]``, as OpenAI and vLLM report a failure during generation.
        Non-stream requests get the same error body with HTTP status `code`."""
        return cls(
            "stream_error",
            code=code,
            body=_error_body(message, "server_error", str(code)),
            after_chunks=_check_chunks(after_chunks),
            text=text,
        )

    @classmethod
    def truncated_sse(cls, after_chunks: int = 1, text: str | None = None) -> Fault:
        """Send `after_chunks` SSE events, then end the body cleanly without
        ``data: [DONE]`` (non-stream: a complete HTTP body holding half the JSON)."""
        return cls("truncated_sse", after_chunks=_check_chunks(after_chunks), text=text)


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    #: The request target, query string included.
    path: str
    #: Header names lower-cased.
    headers: Mapping[str, str] = field(hash=False)
    body: bytes
    #: The body parsed as JSON, or None when it is empty or not JSON.
    json: Any = field(hash=False)
    #: `time.monotonic()` when the request line and headers had been read.
    arrived_at: float
    #: `time.time()` at the same moment.
    wall_time: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and bool(self.json.get("stream"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    provider: MockProvider

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a slow DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tether-mock/1"
    #: Idle keep-alive connections give up after this long (stop() closes them sooner).
    timeout = 30

    @property
    def provider(self) -> MockProvider:
        server = self.server
        assert isinstance(server, _Server)
        return server.provider

    def setup(self) -> None:
        super().setup()
        # Send each SSE event as it is written (as real servers do): with Nagle on, small
        # writes wait for an ACK, and a reset would discard events the client never got.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.provider._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.provider._closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests`, not stderr."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # the client went away (reset, timeout) mid-answer
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    # -- request ---------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    raise ValueError("connection closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        arrived, wall = time.monotonic(), time.time()
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_whole(400, _error_body(str(exc), "invalid_request_error", "bad_body"))
            return
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            json=parsed,
            arrived_at=arrived,
            wall_time=wall,
        )
        self.provider._record(record)
        route = self.path.split("?", 1)[0]
        if route == "/v1/models" and self.command == "GET":
            self._send_whole(200, json.dumps(self.provider._models()).encode())
            return
        if route != CHAT_PATH:
            self._send_whole(404, _error_body(f"no route {route}", "not_found", "not_found"))
            return
        if self.command != "POST":
            self._send_whole(405, _error_body("use POST", "invalid_request_error", "method"))
            return
        if not isinstance(parsed, dict) or not isinstance(parsed.get("messages"), list):
            self._send_whole(
                400,
                _error_body(
                    "body must be a JSON object with 'messages'", "invalid_request_error", "body"
                ),
            )
            return
        self._serve(self.provider._next_fault(), record, parsed)

    # -- answers ---------------------------------------------------------------------

    def _serve(self, fault: Fault, record: RecordedRequest, request: dict[str, Any]) -> None:
        provider = self.provider
        request_id = f"req-mock-{provider._next_id()}"
        if fault.kind == "status":
            body = fault.body or b""
            placeholder = AUTHORIZATION_PLACEHOLDER.encode()
            if placeholder in body:
                body = body.replace(placeholder, (record.header("authorization") or "").encode())
            self._send_whole(fault.code, body, extra=fault.headers, request_id=request_id)
            return
        stream = bool(request.get("stream"))
        if fault.kind == "malformed_json":
            if stream:
                frames = [b"data: " + (fault.body or b"") + b"\n\n", b"data: [DONE]\n\n"]
                self._send_stream(frames, request_id=request_id)
            else:
                self._send_whole(200, fault.body or b"", request_id=request_id)
            return
        if fault.kind == "stream_error" and not stream:
            self._send_whole(fault.code, fault.body or b"", request_id=request_id)
            return
        if fault.kind == "slow_first_byte" and provider._pause(fault.seconds):
            self.close_connection = True  # stopping: drop the connection unanswered
            return
        text = fault.text if fault.text is not None else provider.default_text
        model = str(request.get("model") or "mock-model")
        pieces = _pieces(text)
        usage = dict(fault.usage) if fault.usage is not None else _count_usage(request, pieces)
        cut = fault.after_chunks
        action = (
            fault.kind
            if fault.kind in ("stall_body", "reset_mid_stream", "truncated_sse")
            else None
        )
        if stream:
            options = request.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            frames = _sse_frames(
                request_id, model, pieces, fault.finish_reason, usage if include_usage else None
            )
            if fault.kind == "stream_error":
                error = b"data: " + (fault.body or b"{}") + b"\n\n"
                head = frames[: min(cut, len(frames) - 1)]
                self._send_stream([*head, error, b"data: [DONE]\n\n"], request_id=request_id)
                return
            self._send_stream(
                frames,
                request_id=request_id,
                extra=fault.headers,
                cut=min(cut, len(frames) - 1) if action else None,
                action=action,
                seconds=fault.seconds,
                keepalive=fault.keepalive,
            )
            return
        body = json.dumps(_completion(request_id, model, text, fault.finish_reason, usage)).encode()
        half = len(body) // 2
        if action == "truncated_sse":
            self._send_whole(200, body[:half], extra=fault.headers, request_id=request_id)
            return
        self._start(200, "application/json", fault.headers, request_id, length=len(body))
        if action is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:half])
        if action == "reset_mid_stream":
            self._reset()
            return
        if provider._pause(fault.seconds):
            self.close_connection = True
            return
        self.wfile.write(body[half:])

    def _start(
        self,
        code: int,
        content_type: str,
        extra: Iterable[tuple[str, str]],
        request_id: str | None,
        *,
        length: int | None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
        else:
            self.send_header("Content-Length", str(length))
        extra = list(extra)
        if request_id and all(name.lower() != "x-request-id" for name, _ in extra):
            self.send_header("x-request-id", request_id)
        for name, value in extra:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _send_whole(
        self,
        code: int,
        body: bytes,
        *,
        extra: Iterable[tuple[str, str]] = (),
        request_id: str | None = None,
    ) -> None:
        self._start(code, "application/json", extra, request_id, length=len(body))
        self.wfile.write(body)

    def _send_stream(
        self,
        frames: list[bytes],
        *,
        request_id: str,
        extra: Iterable[tuple[str, str]] = (),
        cut: int | None = None,
        action: str | None = None,
        seconds: float = 0.0,
        keepalive: float | None = None,
    ) -> None:
        self._start(200, "text/event-stream; charset=utf-8", extra, request_id, length=None)
        for index, frame in enumerate(frames):
            if index == cut:
                if action == "reset_mid_stream":
                    self._reset()
                    return
                if action == "truncated_sse":
                    break
                if action == "stall_body" and self._stall(seconds, keepalive):
                    self.close_connection = True
                    return
            self._write_chunk(frame)
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stall(self, seconds: float, keepalive: float | None) -> bool:
        """Wait `seconds`, writing an SSE comment every `keepalive` seconds; True if the
        server is stopping."""
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0:
            if self.provider._pause(min(remaining, keepalive) if keepalive else remaining):
                return True
            if keepalive and time.monotonic() < end:
                self._write_chunk(b": keep-alive\n\n")
        return False

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing proxy would."""
        self.close_connection = True
        connection = self.connection
        _drain(connection, self.provider)
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop makefile()'s reference so close() really closes the fd
        connection.close()


def _unsent_bytes(connection: socket.socket) -> int | None:
    """Bytes still in the kernel's send queue, or None where that cannot be read."""
    try:
        import fcntl  # Unix only
        import termios

        queued = fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return int(struct.unpack("i", queued)[0])
    except (ImportError, OSError, AttributeError):
        return None


def _drain(connection: socket.socket, provider: MockProvider, limit: float = 0.5) -> None:
    """Wait (up to `limit`) until the send queue is empty, then a little more for the
    client to read it: a reset discards data the kernel has not transmitted yet."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (_unsent_bytes(connection) or 0) > 0:
        if provider._pause(0.005):
            return
    provider._pause(0.02)


_PIECE = re.compile(r"\s*\S+\s*")


def _pieces(text: str) -> list[str]:
    """The answer split into word-sized deltas that concatenate back to `text`."""
    pieces = _PIECE.findall(text)
    return pieces if pieces or not text else [text]


def _count_usage(request: dict[str, Any], pieces: list[str]) -> dict[str, Any]:
    prompt = 0
    for message in request.get("messages") or ():
        if isinstance(message, dict):
            prompt += len(str(message.get("content") or "").split())
    completion = len(pieces)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(
    request_id: str, model: str, text: str, finish_reason: str, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def _sse_frames(
    request_id: str,
    model: str,
    pieces: list[str],
    finish_reason: str,
    usage: dict[str, Any] | None,
) -> list[bytes]:
    base = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    tail: dict[str, Any] = {"usage": None} if usage is not None else {}
    chunks: list[dict[str, Any]] = []
    for index, piece in enumerate(pieces):
        delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
        chunks.append(
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **tail}
        )
    chunks.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}], **tail}
    )
    if usage is not None:
        chunks.append({**base, "choices": [], "usage": usage})
    frames = [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks]
    frames.append(b"data: [DONE]\n\n")
    return frames


class MockProvider:
    """A fault-injecting OpenAI-compatible server on 127.0.0.1. See the module docstring."""

    def __init__(self, *, default_text: str = DEFAULT_TEXT, models: Iterable[str] = ("m",)):
        self.default_text = default_text
        self._model_ids = tuple(models)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._script: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("MockProvider is already running")
        self._stop.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.provider = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"MockProvider:{server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving: wake sleeping handlers, shut open connections, join threads."""
        server = self._server
        if server is None:
            return
        self._stop.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("MockProvider is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what OpenAI-compatible clients take."""
        return f"{self.url}/v1"

    # -- script and records ----------------------------------------------------------

    def script(self, faults: Iterable[Fault]) -> Self:
        """Answer the next chat-completions requests with `faults`, one each, in order
        (replacing what is left of an earlier script); then answer normally."""
        items = list(faults)
        for item in items:
            if not isinstance(item, Fault):
                raise TypeError(f"expected Fault, got {type(item).__name__}")
        with self._lock:
            self._script = items
        return self

    @property
    def pending(self) -> int:
        """Scripted faults not yet consumed by a request."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (any path), in arrival order; a snapshot."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The requests to ``POST /v1/chat/completions``."""
        return [
            r for r in self.requests if r.method == "POST" and r.path.split("?")[0] == CHAT_PATH
        ]

    def reset(self) -> None:
        """Forget recorded requests and the remaining script."""
        with self._lock:
            self._requests.clear()
            self._script.clear()

    # -- used by the handler threads -------------------------------------------------

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._script.pop(0) if self._script else Fault.ok()

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "owned_by": "mock"} for m in self._model_ids],
        }

    def _pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the server is stopping (the caller should bail)."""
        return self._stop.wait(seconds)

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            self._handler_threads.add(threading.current_thread())

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._handler_threads.discard(threading.current_thread())
