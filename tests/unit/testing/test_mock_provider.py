"""MockProvider on its own: a real local HTTP server, driven here by plain httpx."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tether.testing import Fault, MockProvider
from tether.testing.mock_provider import DEFAULT_TEXT

BODY: dict[str, Any] = {"model": "m1", "messages": [{"role": "user", "content": "two words"}]}
STREAM_BODY: dict[str, Any] = {**BODY, "stream": True}
USAGE_STREAM_BODY: dict[str, Any] = {**STREAM_BODY, "stream_options": {"include_usage": True}}


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    with MockProvider() as running:
        yield running


@pytest.fixture
def client(mock: MockProvider) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock.base_url + "/", timeout=5.0) as http:
        yield http


def sse_data(lines: list[str]) -> list[str]:
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def wait_for_requests(mock: MockProvider, count: int, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while len(mock.requests) < count:
        assert time.monotonic() < deadline, f"server saw {len(mock.requests)} requests"
        time.sleep(0.005)


def raw_post(mock: MockProvider, body: dict[str, Any]) -> socket.socket:
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", mock.port), timeout=5)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
    )
    return sock


# -- the server ------------------------------------------------------------------------


def test_each_provider_listens_on_its_own_local_port() -> None:
    with MockProvider() as first, MockProvider() as second:
        assert first.running and second.running
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", first.base_url)
        assert first.port != second.port
        assert httpx.get(f"{first.base_url}/models").json()["data"][0]["id"] == "m"
    assert not first.running
    with pytest.raises(RuntimeError):
        _ = first.base_url


def test_records_method_path_headers_json_body_and_arrival(
    mock: MockProvider, client: httpx.Client
) -> None:
    before = time.monotonic()
    client.post(
        "chat/completions?trace=1",
        json=BODY,
        headers={"Authorization": "Bearer sk-abc", "Idempotency-Key": "k-1"},
    )
    after = time.monotonic()
    [record] = mock.requests
    assert record.method == "POST"
    assert record.path == "/v1/chat/completions?trace=1"
    assert record.header("Authorization") == "Bearer sk-abc"
    assert record.headers["idempotency-key"] == "k-1"
    assert record.json == BODY
    assert json.loads(record.body) == BODY
    assert before <= record.arrived_at <= after
    assert abs(record.wall_time - time.time()) < 5
    assert not record.stream
    assert mock.chat_requests == [record]


def test_other_routes_are_recorded_and_do_not_consume_the_script(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.status(503)])
    assert client.get("models").status_code == 200
    assert client.post("embeddings", json={"input": "x"}).status_code == 404
    assert client.get("chat/completions").status_code == 405
    bad = client.post("chat/completions", content=b"not json")
    assert bad.status_code == 400
    assert [(r.method, r.path) for r in mock.requests] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    assert mock.requests[-1].json is None
    assert mock.pending == 1
    assert client.post("chat/completions", json=BODY).status_code == 503


def test_a_chunked_request_body_is_read_in_full(mock: MockProvider, client: httpx.Client) -> None:
    payload = json.dumps(BODY).encode()

    def pieces() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    response = client.post("chat/completions", content=pieces())
    assert response.status_code == 200
    [record] = mock.requests
    assert record.header("transfer-encoding") == "chunked"
    assert record.json == BODY


def test_requests_are_served_concurrently(mock: MockProvider) -> None:
    mock.script([Fault.slow_first_byte(0.4), Fault.slow_first_byte(0.4)])
    codes: list[int] = []

    def call() -> None:
        codes.append(httpx.post(f"{mock.base_url}/chat/completions", json=BODY).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert codes == [200, 200]
    assert time.monotonic() - started < 0.75  # two 0.4 s waits overlapped


def test_stop_is_prompt_while_a_handler_sleeps_and_drops_its_connection() -> None:
    with MockProvider() as mock:
        mock.script([Fault.slow_first_byte(30)])
        sock = raw_post(mock, BODY)
        wait_for_requests(mock, 1)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    try:
        assert sock.recv(1024) == b""  # closed without an answer
    except ConnectionResetError:
        pass
    finally:
        sock.close()


def test_stop_closes_idle_keep_alive_connections() -> None:
    with MockProvider() as mock:
        sock = raw_post(mock, BODY)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        match = re.search(rb"Content-Length: (\d+)", head)
        assert match is not None
        length = int(match.group(1))
        while len(body) < length:
            body += sock.recv(65536)
        assert json.loads(body)["object"] == "chat.completion"
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    sock.settimeout(1.0)
    try:
        assert sock.recv(1024) == b""
    except ConnectionResetError:
        pass
    finally:
        sock.close()


def test_a_stopped_provider_can_start_again_on_a_new_port() -> None:
    mock = MockProvider()
    with mock:
        mock.script([Fault.status(500), Fault.status(500)])
        assert httpx.post(f"{mock.base_url}/chat/completions", json=BODY).status_code == 500
        with pytest.raises(RuntimeError):
            mock.start()
    with mock:
        # The leftover script survives a restart until `reset()`.
        assert httpx.post(f"{mock.base_url}/chat/completions", json=BODY).status_code == 500
        mock.reset()
        assert mock.requests == [] and mock.pending == 0


# -- normal answers --------------------------------------------------------------------


def test_non_stream_answer_is_openai_wire_format(client: httpx.Client) -> None:
    response = client.post("chat/completions", json=BODY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["x-request-id"].startswith("req-mock-")
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "m1"
    [choice] = data["choices"]
    assert choice["message"] == {"role": "assistant", "content": DEFAULT_TEXT}
    assert choice["finish_reason"] == "stop"
    words = len(DEFAULT_TEXT.split())
    assert data["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": words,
        "total_tokens": 2 + words,
    }


def test_stream_answer_is_sse_with_usage_when_asked(client: httpx.Client) -> None:
    with client.stream("POST", "chat/completions", json=USAGE_STREAM_BODY) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        lines = list(response.iter_lines())
    data = sse_data(lines)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == DEFAULT_TEXT
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 2
    assert chunks[-1]["usage"]["completion_tokens"] == len(deltas) - 1


def test_stream_without_include_usage_sends_no_usage(client: httpx.Client) -> None:
    with client.stream("POST", "chat/completions", json=STREAM_BODY) as response:
        chunks = [json.loads(d) for d in sse_data(list(response.iter_lines()))[:-1]]
    assert chunks and all("usage" not in chunk for chunk in chunks)
    assert all(chunk["choices"] for chunk in chunks)


def test_ok_sets_text_usage_finish_reason_and_headers(
    mock: MockProvider, client: httpx.Client
) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "prompt_tokens_details": {"x": 1}}
    mock.script(
        [
            Fault.ok("cut  short", usage=usage, finish_reason="length", headers={"x-extra": "1"}),
            Fault.ok("streamed text", usage=usage),
        ]
    )
    response = client.post("chat/completions", json=BODY)
    assert response.headers["x-extra"] == "1"
    data = response.json()
    assert data["choices"][0]["message"]["content"] == "cut  short"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == usage
    with client.stream("POST", "chat/completions", json=USAGE_STREAM_BODY) as streamed:
        chunks = [json.loads(d) for d in sse_data(list(streamed.iter_lines()))[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "streamed text"
    assert chunks[-1]["usage"] == usage


# -- the script ------------------------------------------------------------------------


def test_script_runs_in_order_then_answers_normally(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.status(503), Fault.ok("one"), Fault.status(429, retry_after=1.5)])
    assert mock.pending == 3
    first = client.post("chat/completions", json=BODY)
    assert first.status_code == 503
    assert mock.pending == 2
    assert client.post("chat/completions", json=BODY).json()["choices"][0]["message"] == {
        "role": "assistant",
        "content": "one",
    }
    third = client.post("chat/completions", json=BODY)
    assert third.status_code == 429
    assert third.headers["retry-after"] == "1.5"
    assert mock.pending == 0
    for _ in range(2):
        after = client.post("chat/completions", json=BODY)
        assert after.status_code == 200
        assert after.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert len(mock.chat_requests) == 5


def test_a_new_script_replaces_what_is_left(mock: MockProvider, client: httpx.Client) -> None:
    mock.script([Fault.status(500), Fault.status(500)])
    client.post("chat/completions", json=BODY)
    mock.script([Fault.status(418)])
    assert mock.pending == 1
    assert client.post("chat/completions", json=BODY).status_code == 418
    assert client.post("chat/completions", json=BODY).status_code == 200


def test_default_text_is_configurable() -> None:
    with MockProvider(default_text="configured") as mock:
        reply = httpx.post(f"{mock.base_url}/chat/completions", json=BODY).json()
    assert reply["choices"][0]["message"]["content"] == "configured"


# -- faults ----------------------------------------------------------------------------


def test_status_bodies_and_headers(mock: MockProvider, client: httpx.Client) -> None:
    mock.script(
        [
            Fault.status(500),
            Fault.status(502, {"error": "bad gateway"}, headers={"x-request-id": "up-7"}),
            Fault.status(
                503, "<html>overloaded</html>", retry_after="Wed, 21 Oct 2015 07:28:00 GMT"
            ),
            Fault.context_length_exceeded(),
            Fault.status(429, retry_after=2),
        ]
    )
    default = client.post("chat/completions", json=BODY)
    assert default.status_code == 500
    assert default.json()["error"]["type"] == "server_error"
    custom = client.post("chat/completions", json=BODY)
    assert (custom.status_code, custom.json()) == (502, {"error": "bad gateway"})
    assert custom.headers.get_list("x-request-id") == ["up-7"]  # replaces the generated id
    html = client.post("chat/completions", json=BODY)
    assert (html.status_code, html.text) == (503, "<html>overloaded</html>")
    assert html.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    context = client.post("chat/completions", json=BODY)
    assert context.status_code == 400
    assert context.json()["error"]["code"] == "context_length_exceeded"
    assert client.post("chat/completions", json=BODY).headers["retry-after"] == "2"


def test_status_can_echo_the_authorization_header(mock: MockProvider, client: httpx.Client) -> None:
    mock.script(
        [
            Fault.status(401, echo_authorization=True),
            Fault.status(403, {"error": {"message": "key {authorization} is revoked"}}),
        ]
    )
    headers = {"Authorization": "Bearer sk-echo-me"}
    first = client.post("chat/completions", json=BODY, headers=headers)
    assert first.status_code == 401
    assert "Bearer sk-echo-me" in first.json()["error"]["message"]
    second = client.post("chat/completions", json=BODY, headers=headers)
    assert second.json() == {"error": {"message": "key Bearer sk-echo-me is revoked"}}


def test_slow_first_byte_delays_the_status_line(mock: MockProvider, client: httpx.Client) -> None:
    mock.script([Fault.slow_first_byte(0.3, text="late"), Fault.slow_first_byte(1.0)])
    started = time.monotonic()
    response = client.post("chat/completions", json=BODY)
    assert time.monotonic() - started >= 0.3
    assert response.json()["choices"][0]["message"]["content"] == "late"
    with pytest.raises(httpx.ReadTimeout):
        client.post("chat/completions", json=BODY, timeout=httpx.Timeout(5.0, read=0.1))


def test_stall_body_stream_sends_headers_and_chunks_then_waits(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.stall_body(2.0, after_chunks=1)])
    received: list[str] = []
    started = time.monotonic()
    with (
        pytest.raises(httpx.ReadTimeout),
        client.stream(
            "POST", "chat/completions", json=STREAM_BODY, timeout=httpx.Timeout(5.0, read=0.2)
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            received.append(line)
    received = sse_data(received)
    assert len(received) == 1
    assert json.loads(received[0])["choices"][0]["delta"]["content"] == "Hello "
    assert time.monotonic() - started < 1.0


def test_stall_body_then_delivers_the_rest(mock: MockProvider, client: httpx.Client) -> None:
    mock.script([Fault.stall_body(0.3, text="all of it"), Fault.stall_body(0.3, after_chunks=0)])
    started = time.monotonic()
    response = client.post("chat/completions", json=BODY)
    assert time.monotonic() - started >= 0.3
    assert response.json()["choices"][0]["message"]["content"] == "all of it"
    started = time.monotonic()
    with client.stream("POST", "chat/completions", json=STREAM_BODY) as streamed:
        data = sse_data(list(streamed.iter_lines()))
    assert time.monotonic() - started >= 0.3
    assert data[-1] == "[DONE]"


def test_reset_mid_stream_sends_n_events_then_resets(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.reset_mid_stream(after_chunks=2)])
    received: list[str] = []
    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        client.stream("POST", "chat/completions", json=STREAM_BODY) as response,
    ):
        for line in response.iter_lines():
            received.append(line)
    contents = [json.loads(d)["choices"][0]["delta"]["content"] for d in sse_data(received)]
    assert contents == ["Hello ", "from "]


def test_reset_mid_body_without_stream(mock: MockProvider, client: httpx.Client) -> None:
    mock.script([Fault.reset_mid_stream()])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post("chat/completions", json=BODY)
    # The next request gets a fresh connection and a normal answer.
    assert client.post("chat/completions", json=BODY).status_code == 200


def test_truncated_sse_ends_cleanly_without_done(mock: MockProvider, client: httpx.Client) -> None:
    mock.script([Fault.truncated_sse(after_chunks=3), Fault.truncated_sse(after_chunks=99)])
    with client.stream("POST", "chat/completions", json=USAGE_STREAM_BODY) as response:
        data = sse_data(list(response.iter_lines()))
    assert len(data) == 3 and "[DONE]" not in data
    with client.stream("POST", "chat/completions", json=USAGE_STREAM_BODY) as response:
        everything_but_done = sse_data(list(response.iter_lines()))
    assert "[DONE]" not in everything_but_done
    assert json.loads(everything_but_done[-1])["usage"] is not None


def test_truncated_non_stream_body_is_a_complete_response_of_partial_json(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.truncated_sse()])
    response = client.post("chat/completions", json=BODY)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.text.startswith('{"id": ')
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_malformed_json_stream_and_non_stream(mock: MockProvider, client: httpx.Client) -> None:
    mock.script([Fault.malformed_json(), Fault.malformed_json("<<nope>>")])
    response = client.post("chat/completions", json=BODY)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    with client.stream("POST", "chat/completions", json=STREAM_BODY) as streamed:
        assert sse_data(list(streamed.iter_lines())) == ["<<nope>>", "[DONE]"]


def test_fault_arguments_are_validated(mock: MockProvider) -> None:
    with pytest.raises(ValueError):
        Fault.status(42)
    with pytest.raises(ValueError):
        Fault.slow_first_byte(-1)
    with pytest.raises(ValueError):
        Fault.stall_body(float("nan"))
    with pytest.raises(ValueError):
        Fault.reset_mid_stream(after_chunks=-1)
    with pytest.raises(TypeError):
        mock.script(["not a fault"])  # type: ignore[list-item]


def test_stall_body_keepalive_sends_sse_comments_while_waiting(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.stall_body(0.35, after_chunks=0, keepalive=0.1)])
    started = time.monotonic()
    with client.stream("POST", "chat/completions", json=STREAM_BODY) as response:
        lines = [line for line in response.iter_lines() if line]
    assert time.monotonic() - started >= 0.35
    comments = [line for line in lines if line.startswith(":")]
    assert 2 <= len(comments) <= 4
    assert lines.index(comments[-1]) < lines.index(next(x for x in lines if x.startswith("data:")))
    assert sse_data(lines)[-1] == "[DONE]"
    with pytest.raises(ValueError):
        Fault.stall_body(1, keepalive=0)


def test_stream_error_sends_an_error_event_then_done(
    mock: MockProvider, client: httpx.Client
) -> None:
    mock.script([Fault.stream_error(after_chunks=2, message="engine died"), Fault.stream_error()])
    with client.stream("POST", "chat/completions", json=STREAM_BODY) as response:
        data = sse_data(list(response.iter_lines()))
    assert len(data) == 4 and data[-1] == "[DONE]"
    assert [json.loads(d)["choices"][0]["delta"]["content"] for d in data[:2]] == [
        "Hello ",
        "from ",
    ]
    assert json.loads(data[2]) == {
        "error": {"message": "engine died", "type": "server_error", "code": "500"}
    }
    plain = client.post("chat/completions", json=BODY)
    assert plain.status_code == 500
    assert plain.json()["error"]["type"] == "server_error"
