"""Record provider traffic once, replay it deterministically: httpx transports.

Both classes plug into any client that takes ``transport=`` (`OpenAICompatibleChat`,
`AnthropicChat`, a plain `httpx.AsyncClient`)::

    from tether.testing.replay import RecordingTransport, ReplayTransport

    # Once, against the real provider (or MockProvider):
    recorder = RecordingTransport("tests/fixtures/recordings/qa.jsonl", secrets=[api_key])
    model = OpenAICompatibleChat(base_url, "gpt-4o-mini", api_key=api_key, transport=recorder)

    # In CI, with no network:
    replay = ReplayTransport("tests/fixtures/recordings/qa.jsonl")
    model = OpenAICompatibleChat(base_url, "gpt-4o-mini", api_key="unused", transport=replay)
    ...
    assert not replay.unused

The fixture is JSONL, one line per exchange, appended when the response is closed::

    {"version": 1,
     "request": {"method", "url", "headers": [[name, value], ...], "body_encoding", "body"},
     "response": {"status", "http_version", "headers", "stream", "read_to_end",
                  "content_decoded", "body_encoding", "body"} | null,
     "error": {"type", "message"} | null}

* Bodies: ``body_encoding`` "json" (the body parsed: every request body that parses, and
  response bodies with a JSON content type), "text" (UTF-8, byte for byte; SSE and NDJSON
  streams are never parsed) or "base64" (anything else). A gzip/deflate response is recorded decoded
  (``content_decoded``) and replayed without its Content-Encoding; a body in an encoding
  this module cannot undo (br, zstd: httpx only asks for those when brotli / zstandard
  are installed) is stored raw as base64, where `secrets` cannot be found. JSON response
  bodies are replayed re-encoded, so they are equal as JSON, not byte for byte.
* Redaction: values of the `redact_headers` (request and response) become ``"***"``, and
  every occurrence of a `secrets` string anywhere in the line (URL, headers, bodies, error
  messages) is replaced by ``"***"`` before the line is written. Replayed bodies carry the
  ``"***"``, not the secret.
* Failures: a transport error before the response (connect error, timeout) is recorded
  with ``"response": null``; one while the body streams is recorded beside the partial
  body (``"read_to_end": false``). Replay raises the same httpx exception type at the same
  point. A response the caller closed early is recorded as far as it was read
  (``"read_to_end": false`` too).
* A streamed body is passed to the caller chunk by chunk as it arrives; the recorder keeps
  a copy and writes the line when the stream is closed. A response that is never closed
  is never written.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import json
import os
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import httpx

__all__ = [
    "DEFAULT_REDACT_HEADERS",
    "FORMAT_VERSION",
    "REDACTED",
    "BodyEncoding",
    "MatchField",
    "Recording",
    "RecordingTransport",
    "ReplayMismatch",
    "ReplayTransport",
    "load_recordings",
]

FORMAT_VERSION = 1
REDACTED = "***"
DEFAULT_REDACT_HEADERS: tuple[str, ...] = (
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
    "openai-organization",
)

BodyEncoding: TypeAlias = Literal["json", "text", "base64"]
#: What `ReplayTransport` compares: the method, the full URL, the URL's path and query
#: only (ignores scheme, host and port), the body (as canonical JSON when it is JSON).
MatchField: TypeAlias = Literal["method", "url", "path", "body"]
Headers: TypeAlias = tuple[tuple[str, str], ...]

_MATCH_FIELDS: tuple[str, ...] = ("method", "url", "path", "body")
_BODY_ENCODINGS: tuple[str, ...] = ("json", "text", "base64")


class ReplayMismatch(AssertionError):
    """A replayed request matches no unused recording (a test failure, not a provider
    error: the code under test sent something the fixture does not hold)."""


# -- redaction -------------------------------------------------------------------------


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is not left half-replaced.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret.encode("utf-8"), REDACTED.encode("ascii"))
        return data

    def value(self, value: Any) -> Any:
        """`value` (parsed JSON) with every string, object keys included, redacted."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value

    def line(self, line: str) -> str:
        """Last pass over a serialized line: the secrets as written raw or JSON-escaped."""
        for secret in self.secrets:
            forms = {
                secret,
                json.dumps(secret)[1:-1],
                json.dumps(secret, ensure_ascii=False)[1:-1],
            }
            for form in sorted(forms, key=len, reverse=True):
                line = line.replace(form, REDACTED)
        return line


# -- bodies ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Body:
    encoding: BodyEncoding
    value: Any

    @classmethod
    def capture(cls, data: bytes, *, as_json: bool, redactor: _Redactor) -> _Body:
        data = redactor.data(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cls("base64", base64.b64encode(data).decode("ascii"))
        if as_json and text.strip():
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                return cls("json", redactor.value(parsed))
        return cls("text", text)

    def to_bytes(self) -> bytes:
        if self.encoding == "json":
            return json.dumps(self.value, ensure_ascii=False).encode("utf-8")
        if self.encoding == "base64":
            return base64.b64decode(str(self.value))
        return str(self.value).encode("utf-8")

    def canonical(self) -> str:
        if self.encoding == "json":
            return json.dumps(self.value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return str(self.value)


def _stream_kind(headers: Iterable[tuple[str, str]]) -> Literal["sse", "ndjson"] | None:
    for name, value in headers:
        if name.lower() == "content-type":
            media = value.split(";", 1)[0].strip().lower()
            if media == "text/event-stream":
                return "sse"
            if media in ("application/x-ndjson", "application/jsonl", "application/json-seq"):
                return "ndjson"
            return None
    return None


def _is_json_type(headers: Iterable[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name.lower() == "content-type":
            media = value.split(";", 1)[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return False


def _decode_content(raw: bytes, content_encoding: str | None) -> tuple[bytes, bool] | None:
    """(body without its Content-Encoding, whether anything was undone), or None for an
    encoding this module cannot undo (the body is then recorded raw)."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data, decoded = raw, False
    for coding in reversed(codings):
        if coding == "identity":
            continue
        try:
            if coding in ("gzip", "x-gzip"):
                data = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data)
            elif coding == "deflate":
                try:
                    data = zlib.decompressobj().decompress(data)
                except zlib.error:  # raw deflate, without the zlib header
                    data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
            else:
                return None
        except zlib.error:
            return None
        decoded = True
    return data, decoded


_SSE_EVENT_END = re.compile(rb"(?<=\r\n\r\n)|(?<=\n\n)|(?<=\r\r)")
_LINE_END = re.compile(rb"(?<=\n)")


def _chunks(data: bytes, kind: Literal["sse", "ndjson"] | None) -> list[bytes]:
    """How a replayed body is served: one chunk per SSE event / NDJSON line."""
    if kind == "sse":
        parts = _SSE_EVENT_END.split(data)
    elif kind == "ndjson":
        parts = _LINE_END.split(data)
    else:
        parts = [data]
    return [part for part in parts if part]


# -- errors ----------------------------------------------------------------------------


def _error_name(exc: BaseException) -> str:
    """The most specific httpx-exported class name of a transport error."""
    for cls in type(exc).__mro__:
        if getattr(httpx, cls.__name__, None) is cls and issubclass(cls, httpx.TransportError):
            return str(cls.__name__)
    return "TransportError"


def _rebuild_error(name: str, message: str, request: httpx.Request) -> httpx.TransportError:
    cls = getattr(httpx, name, None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(message, request=request)


# -- the fixture -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recording:
    """One exchange of a fixture (one JSONL line)."""

    #: 1-based line number in the fixture (0 for a recording not read from a file).
    line: int
    method: str
    url: str
    request_headers: Headers
    request_body_encoding: BodyEncoding
    #: The request body: parsed JSON, text, or base64 text (see `request_body_encoding`).
    request_body: Any
    #: None when the request failed before any response (see `error_type`).
    status: int | None = None
    response_headers: Headers = ()
    response_body_encoding: BodyEncoding = "text"
    response_body: Any = ""
    http_version: str = "HTTP/1.1"
    #: An SSE or NDJSON body, served back in chunks (one per event / line).
    stream: bool = False
    #: Whether the recorder saw the end of the body. False after a transport error or
    #: when the caller closed the response first: early, or (as OpenAICompatibleChat
    #: does) right after ``data: [DONE]``, before the end of the chunked body arrived.
    read_to_end: bool = True
    #: The body was recorded with its Content-Encoding (gzip, deflate) undone.
    content_decoded: bool = False
    #: httpx exception class name, before the response or while its body streamed.
    error_type: str | None = None
    error_message: str | None = None

    def describe(self) -> str:
        outcome = str(self.status) if self.status is not None else self.error_type
        return f"line {self.line}: {self.method} {self.url} -> {outcome}"

    def to_json(self) -> dict[str, Any]:
        response: dict[str, Any] | None = None
        if self.status is not None:
            response = {
                "status": self.status,
                "http_version": self.http_version,
                "headers": [list(pair) for pair in self.response_headers],
                "stream": self.stream,
                "read_to_end": self.read_to_end,
                "content_decoded": self.content_decoded,
                "body_encoding": self.response_body_encoding,
                "body": self.response_body,
            }
        error = (
            {"type": self.error_type, "message": self.error_message or ""}
            if self.error_type is not None
            else None
        )
        return {
            "version": FORMAT_VERSION,
            "request": {
                "method": self.method,
                "url": self.url,
                "headers": [list(pair) for pair in self.request_headers],
                "body_encoding": self.request_body_encoding,
                "body": self.request_body,
            },
            "response": response,
            "error": error,
        }

    @classmethod
    def from_json(cls, data: Any, line: int = 0) -> Recording:
        """Parse one fixture line (already JSON-decoded); ValueError names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a recording must be a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported recording version {data.get('version')!r} "
                f"(this tether reads version {FORMAT_VERSION})"
            )
        request = _object(data, "request")
        response = data.get("response")
        error = data.get("error")
        if response is None and error is None:
            raise ValueError("a recording needs a response or an error")
        fields: dict[str, Any] = {
            "line": line,
            "method": _str(request, "method"),
            "url": _str(request, "url"),
            "request_headers": _headers(request),
            "request_body_encoding": _encoding(request),
            "request_body": request.get("body"),
        }
        if response is not None:
            if not isinstance(response, dict):
                raise ValueError("'response' must be an object or null")
            status = response.get("status")
            if not isinstance(status, int) or isinstance(status, bool):
                raise ValueError("'response.status' must be an integer")
            fields.update(
                status=status,
                response_headers=_headers(response),
                response_body_encoding=_encoding(response),
                response_body=response.get("body"),
                http_version=str(response.get("http_version") or "HTTP/1.1"),
                stream=bool(response.get("stream", False)),
                read_to_end=bool(response.get("read_to_end", True)),
                content_decoded=bool(response.get("content_decoded", False)),
            )
        if error is not None:
            if not isinstance(error, dict):
                raise ValueError("'error' must be an object or null")
            fields.update(error_type=_str(error, "type"), error_message=str(error.get("message")))
        return cls(**fields)


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be an object")
    return value


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string")
    return value


def _encoding(data: dict[str, Any]) -> BodyEncoding:
    value = data.get("body_encoding", "text")
    if value not in _BODY_ENCODINGS:
        raise ValueError(f"'body_encoding' must be one of {', '.join(_BODY_ENCODINGS)}")
    return cast(BodyEncoding, value)


def _headers(data: dict[str, Any]) -> Headers:
    raw = data.get("headers", [])
    if not isinstance(raw, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        for pair in raw
    ):
        raise ValueError("'headers' must be a list of [name, value] string pairs")
    return tuple((str(name), str(value)) for name, value in raw)


def load_recordings(path: str | os.PathLike[str]) -> list[Recording]:
    """Every recording in a fixture, in file order (blank lines skipped)."""
    source = Path(path)
    recordings: list[Recording] = []
    for number, text in enumerate(source.read_text(encoding="utf-8").split("\n"), start=1):
        if not text.strip():
            continue
        try:
            recordings.append(Recording.from_json(json.loads(text), number))
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: not a valid recording: {exc}") from None
    return recordings


# -- recording -------------------------------------------------------------------------


class _RecordingStream(httpx.AsyncByteStream):
    """Passes the body through chunk by chunk, keeping a copy; reports it on close."""

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        finish: Callable[[bytes, bool, Exception | None], None],
    ) -> None:
        self._inner = inner
        self._finish = finish
        self._chunks: list[bytes] = []
        self._read_to_end = False
        self._error: Exception | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                self._chunks.append(chunk)
                yield chunk
        except Exception as exc:
            self._error = exc
            raise
        self._read_to_end = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._inner.aclose()
        finally:
            self._finish(b"".join(self._chunks), self._read_to_end, self._error)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards requests to `inner` (a real `httpx.AsyncHTTPTransport` by default) and
    appends each exchange to the JSONL fixture at `path` (see the module docstring).

    `redact_headers`: header names (any case) whose values are written as ``"***"``.
    `secrets`: strings replaced by ``"***"`` anywhere in a line; pass the API key.
    `overwrite`: start the fixture empty instead of appending to it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        redact_headers: Iterable[str] = DEFAULT_REDACT_HEADERS,
        secrets: Sequence[str] = (),
        overwrite: bool = False,
    ) -> None:
        if isinstance(secrets, str):
            raise TypeError("secrets must be a sequence of strings, not one string")
        self.path = Path(path)
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._redact_headers = frozenset(name.lower() for name in redact_headers)
        self._redactor = _Redactor(secrets)
        self._lock = threading.Lock()
        #: Lines this transport has written.
        self.recorded = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            self.path.write_bytes(b"")

    def _headers(self, headers: httpx.Headers) -> Headers:
        return tuple(
            (name, REDACTED if name.lower() in self._redact_headers else self._redactor.text(value))
            for name, value in headers.multi_items()
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = _Body.capture(await request.aread(), as_json=True, redactor=self._redactor)
        base = Recording(
            line=0,
            method=request.method,
            url=self._redactor.text(str(request.url)),
            request_headers=self._headers(request.headers),
            request_body_encoding=body.encoding,
            request_body=body.value,
        )
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self._write(
                dataclasses.replace(
                    base,
                    error_type=_error_name(exc),
                    error_message=self._redactor.text(str(exc)),
                )
            )
            raise
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("the inner transport returned a response without an async stream")
        status = response.status_code
        headers = self._headers(response.headers)
        http_version = response.http_version
        content_encoding = response.headers.get("content-encoding")
        kind = _stream_kind(response.headers.multi_items())
        is_json = _is_json_type(response.headers.multi_items())

        def finish(raw: bytes, read_to_end: bool, error: Exception | None) -> None:
            decoded = _decode_content(raw, content_encoding)
            if decoded is None:
                data, content_decoded, as_json = raw, False, False
            else:
                data, content_decoded = decoded
                as_json = kind is None and is_json
            captured = _Body.capture(data, as_json=as_json, redactor=self._redactor)
            transport_error = error if isinstance(error, httpx.TransportError) else None
            self._write(
                dataclasses.replace(
                    base,
                    status=status,
                    response_headers=headers,
                    response_body_encoding=captured.encoding,
                    response_body=captured.value,
                    http_version=http_version,
                    stream=kind is not None,
                    read_to_end=read_to_end,
                    content_decoded=content_decoded,
                    error_type=_error_name(transport_error) if transport_error else None,
                    error_message=(
                        self._redactor.text(str(transport_error)) if transport_error else None
                    ),
                )
            )

        return httpx.Response(
            status,
            headers=response.headers,
            stream=_RecordingStream(stream, finish),
            extensions=response.extensions,
        )

    def _write(self, recording: Recording) -> None:
        line = json.dumps(recording.to_json(), ensure_ascii=False)
        checked = self._redactor.line(line)
        if checked != line:
            try:
                json.loads(checked)
            except ValueError:
                raise ValueError(
                    "a secret overlaps the JSON structure of a recording; not writing it"
                ) from None
        with self._lock, self.path.open("a", encoding="utf-8", newline="\n") as out:
            out.write(checked + "\n")
            self.recorded += 1

    async def aclose(self) -> None:
        await self._inner.aclose()


# -- replay ----------------------------------------------------------------------------


class _ReplayStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], error: httpx.TransportError | None) -> None:
        self._chunks = chunks
        self._error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._error is not None:
            raise self._error


@dataclasses.dataclass(frozen=True)
class _Probe:
    method: str
    url: str
    body: _Body


def _path_of(url: str) -> str:
    try:
        return httpx.URL(url).raw_path.decode("ascii", "replace")
    except httpx.InvalidURL:
        return url


def _keys(method: str, url: str, body: _Body) -> dict[str, tuple[str, str]]:
    return {
        "method": ("", method.upper()),
        "url": ("", url),
        "path": ("", _path_of(url)),
        "body": (body.encoding, body.canonical()),
    }


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_difference(request: Any, recorded: Any, where: str = "$") -> str | None:
    """The first place two JSON values differ, as a path and the two values."""
    if isinstance(request, dict) and isinstance(recorded, dict):
        for key in request:
            if key not in recorded:
                return f"{where}.{key} is only in the request ({_short(request[key])})"
        for key in recorded:
            if key not in request:
                return f"{where}.{key} is only in the recording ({_short(recorded[key])})"
        for key in request:
            found = _json_difference(request[key], recorded[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(request, list) and isinstance(recorded, list):
        for index, (mine, theirs) in enumerate(zip(request, recorded, strict=False)):
            found = _json_difference(mine, theirs, f"{where}[{index}]")
            if found:
                return found
        if len(request) != len(recorded):
            return f"{where} has {len(request)} items in the request, {len(recorded)} recorded"
        return None
    if type(request) is type(recorded) and request == recorded:
        return None
    return f"{where}: request {_short(request)} != recorded {_short(recorded)}"


def _text_difference(request: str, recorded: str) -> str:
    index = next(
        (i for i, (a, b) in enumerate(zip(request, recorded, strict=False)) if a != b),
        min(len(request), len(recorded)),
    )
    start = max(index - 20, 0)
    return (
        f"from character {index}: request {_short(request[start : index + 40])} "
        f"!= recorded {_short(recorded[start : index + 40])}"
    )


class ReplayTransport(httpx.AsyncBaseTransport):
    """Serves the responses recorded in the fixture at `path`; never touches the network.

    Each request is matched to the first recording, in file order, that has not been
    served yet and agrees on every `match` field (see `MatchField`); identical requests
    therefore get their recordings in the order they were recorded. Streamed bodies are
    served chunk by chunk (one SSE event / NDJSON line each); recorded transport errors
    are raised again. A request that matches nothing raises `ReplayMismatch`.

    `secrets`: redacted from each request's URL and body before matching, as
    `RecordingTransport` did when recording (so a request carrying the real key in its
    body or query string still matches the ``"***"`` in the fixture).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        match: Sequence[MatchField] = ("method", "url", "body"),
        secrets: Sequence[str] = (),
    ) -> None:
        fields = tuple(match)
        unknown = [name for name in fields if name not in _MATCH_FIELDS]
        if unknown or not fields:
            raise ValueError(
                f"match must be a non-empty selection of {', '.join(_MATCH_FIELDS)}; got {fields!r}"
            )
        if isinstance(secrets, str):
            raise TypeError("secrets must be a sequence of strings, not one string")
        self.path = Path(path)
        self.match: tuple[MatchField, ...] = fields
        self._redactor = _Redactor(secrets)
        #: Every recording of the fixture, in file order.
        self.recordings: tuple[Recording, ...] = tuple(load_recordings(self.path))
        self._keys = [
            _keys(r.method, r.url, _Body(r.request_body_encoding, r.request_body))
            for r in self.recordings
        ]
        self._served = [False] * len(self.recordings)
        self._lock = threading.Lock()

    @property
    def unused(self) -> list[Recording]:
        """Recordings not served (yet), in file order."""
        with self._lock:
            return [
                r for r, served in zip(self.recordings, self._served, strict=True) if not served
            ]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = _Body.capture(await request.aread(), as_json=True, redactor=self._redactor)
        probe = _Probe(request.method, self._redactor.text(str(request.url)), body)
        wanted = _keys(probe.method, probe.url, probe.body)
        with self._lock:
            for index, keys in enumerate(self._keys):
                if not self._served[index] and all(keys[f] == wanted[f] for f in self.match):
                    self._served[index] = True
                    recording = self.recordings[index]
                    break
            else:
                raise ReplayMismatch(self._explain(probe, wanted))
        return _response(recording, request)

    def _explain(self, probe: _Probe, wanted: dict[str, tuple[str, str]]) -> str:
        lines = [
            f"no unused recording in {self.path} matches {probe.method} {probe.url} "
            f"(matching on {', '.join(self.match)})",
            f"  request body: {_short(probe.body.canonical(), 300)}",
        ]
        if not self.recordings:
            lines.append("  the fixture holds no recordings")
            return "\n".join(lines)
        matching = [
            i for i, keys in enumerate(self._keys) if all(keys[f] == wanted[f] for f in self.match)
        ]
        if matching:
            lines.append(
                f"  {len(matching)} matching recording(s) were already served "
                f"({', '.join(self.recordings[i].describe() for i in matching)}); "
                "each recording is served once, in order"
            )
        candidates = [i for i, served in enumerate(self._served) if not served] or list(
            range(len(self.recordings))
        )

        def score(index: int) -> tuple[int, float]:
            keys = self._keys[index]
            agree = sum(keys[f] == wanted[f] for f in self.match)
            similarity = difflib.SequenceMatcher(
                None, keys["body"][1][:2000], wanted["body"][1][:2000], autojunk=False
            ).quick_ratio()
            return agree, similarity

        nearest = max(candidates, key=score)
        recording = self.recordings[nearest]
        state = "already served" if self._served[nearest] else "unused"
        lines.append(f"  nearest recording: {recording.describe()} ({state})")
        keys = self._keys[nearest]
        for name in self.match:
            if keys[name] == wanted[name]:
                continue
            if name == "body":
                lines.append(f"    body differs: {self._body_difference(probe.body, recording)}")
            else:
                lines.append(
                    f"    {name} differs: request {wanted[name][1]!r}, recorded {keys[name][1]!r}"
                )
        return "\n".join(lines)

    @staticmethod
    def _body_difference(body: _Body, recording: Recording) -> str:
        recorded = _Body(recording.request_body_encoding, recording.request_body)
        if body.encoding == "json" and recorded.encoding == "json":
            return _json_difference(body.value, recorded.value) or "equal as JSON"
        if body.encoding != recorded.encoding:
            return (
                f"request body is {body.encoding} {_short(body.canonical())}, "
                f"recorded body is {recorded.encoding} {_short(recorded.canonical())}"
            )
        return _text_difference(body.canonical(), recorded.canonical())


def _response(recording: Recording, request: httpx.Request) -> httpx.Response:
    if recording.status is None:
        raise _rebuild_error(
            recording.error_type or "TransportError", recording.error_message or "", request
        )
    data = _Body(recording.response_body_encoding, recording.response_body).to_bytes()
    headers: list[tuple[str, str]] = []
    for name, value in recording.response_headers:
        lowered = name.lower()
        if lowered == "content-encoding" and recording.content_decoded:
            continue
        headers.append((name, str(len(data)) if lowered == "content-length" else value))
    kind = _stream_kind(recording.response_headers)
    error = (
        _rebuild_error(recording.error_type, recording.error_message or "", request)
        if recording.error_type is not None
        else None
    )
    return httpx.Response(
        recording.status,
        headers=headers,
        stream=_ReplayStream(_chunks(data, kind), error),
        extensions={"http_version": recording.http_version.encode("ascii", "replace")},
    )
