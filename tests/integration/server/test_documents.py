"""Uploads over HTTP: accepted documents are searchable, listed, reindexed and deleted;
each refused one gets a 4xx with a reason and leaves the store exactly as it was."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator

import httpx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript

from tests.support.cli import Env, make_env
from tests.support.server import Server, serving

MAX_UPLOAD = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("docs")
    env: Env = make_env(
        root,
        TETHER_MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    )
    with serving(env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    key = server.key("acme", "writer", "--rps", "0")
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as c:
        yield c


def upload(client: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return client.post("/v1/documents", files={"file": (name, data, "application/octet-stream")})


def listed(client: httpx.Client) -> dict[str, int]:
    return {d["source_id"]: d["chunks"] for d in client.get("/v1/documents").json()}


def search_ids(client: httpx.Client, query: str) -> set[str]:
    hits = client.post("/v1/search", json={"query": query, "top_k": 20}).json()["results"]
    return {h["source_id"] for h in hits}


def make_pdf(text: str) -> bytes:
    document = FPDF()
    document.add_page()
    document.set_font("Helvetica", size=12)
    document.multi_cell(0, 10, text)
    return bytes(document.output())


def with_javascript(data: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.add_open_action(JavaScript("app.alert('SENTINEL_JS');"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_upload_list_search_reindex_delete(client: httpx.Client) -> None:
    text = b"# Hangar\n\nThe zeppelin hangar opens at dawn; its door code is 4471.\n"
    made = upload(client, "hangar.md", text)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["format"] == "markdown" and body["chunks"] >= 1 and body["stripped"] == []
    assert listed(client)["hangar.md"] == body["chunks"]
    assert "hangar.md" in search_ids(client, "zeppelin hangar door code")
    again = client.post("/v1/documents/hangar.md/reindex")
    assert again.status_code == 200 and again.json()["chunks"] == body["chunks"]
    assert client.delete("/v1/documents/hangar.md").status_code == 204
    assert "hangar.md" not in listed(client)
    assert "hangar.md" not in search_ids(client, "zeppelin hangar door code")
    assert client.delete("/v1/documents/hangar.md").status_code == 404
    assert client.post("/v1/documents/hangar.md/reindex").status_code == 404


def test_scripts_are_stripped_before_anything_is_stored(client: httpx.Client) -> None:
    page = (
        b"<html><body><h1>Kiln</h1><p>The kiln fires at 1200 degrees for glaze.</p>"
        b"<script>fetch('https://evil.example/SENTINEL_SCRIPT')</script>"
        b'<img src="x" onerror="SENTINEL_HANDLER()"></body></html>'
    )
    made = upload(client, "kiln.html", page)
    assert made.status_code == 201, made.text
    assert "html_script" in made.json()["stripped"]
    hits = client.post("/v1/search", json={"query": "kiln glaze SENTINEL_SCRIPT"}).json()
    texts = " ".join(h["text"] for h in hits["results"])
    assert "1200 degrees" in texts
    assert "SENTINEL" not in texts


def test_pdf_javascript_is_dropped_and_reported(client: httpx.Client) -> None:
    made = upload(client, "report.pdf", with_javascript(make_pdf("Turbine output rose by 12%.")))
    assert made.status_code == 201, made.text
    assert any(item.startswith("pdf_") for item in made.json()["stripped"])
    assert "report.pdf" in search_ids(client, "turbine output")


def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    return b"".join([*(compressor.compress(block) for _ in range(200)), compressor.flush()])


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 415, "unsupported_type"),
        ("notes.zip", zip_of({"a.md": b"# a\n\ntext here"}), 415, "unsupported_type"),
        ("tool.md", b"\x7fELF\x02\x01\x01" + b"\0" * 64, 422, "executable"),
        ("bomb.md.gz", gzip_bomb(), 422, "archive_bomb"),
        ("mixed.pdf", make_pdf("looks fine") + zip_of({"x.js": b"alert(1)"}), 422, "polyglot"),
        ("fake.pdf", b"just some text pretending\n", 415, "unsupported_type"),
        ("empty.md", b"", 422, "empty"),
        ("huge.md", b"# big\n\n" + b"word " * (MAX_UPLOAD // 4), 413, None),
    ],
)
def test_refused_uploads_get_a_reason_and_change_nothing(
    client: httpx.Client, name: str, data: bytes, status: int, code: str | None
) -> None:
    before = listed(client)
    response = upload(client, name, data)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert listed(client) == before


def test_a_parser_failure_leaves_the_previous_version(client: httpx.Client) -> None:
    first = upload(client, "plan.md", b"# Plan\n\nShip the barge on Tuesday.\n")
    assert first.status_code == 201
    broken = upload(client, "plan.md", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n")
    assert 400 <= broken.status_code < 500, broken.text
    assert listed(client)["plan.md"] == first.json()["chunks"]
    assert "plan.md" in search_ids(client, "ship the barge")
