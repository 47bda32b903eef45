"""The web page in a real headless Chromium against a real `tether serve`, under the
page's own strict CSP: a streamed answer with clickable citations, uploading and deleting a
document and then asking about it, the server's errors shown, the dashboard's numbers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import REPO, Env, make_env, tether
from tests.support.server import Server, serving

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "the web test drives /usr/bin/chromium, which is not installed", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api")

GUIDE = REPO / "tests" / "fixtures" / "docs" / "guide.md"
QUESTION = "What happens to files larger than the ingest size limit?"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("web")
    env = make_env(
        root,
    )
    run = tether(env, "ingest", str(GUIDE), "--tenant", "acme")
    assert run.code == 0, run.err
    return env


@pytest.fixture(scope="module")
def server(env: Env) -> Iterator[Server]:
    with serving(env) as running:
        yield running


@pytest.fixture(scope="module")
def writer(server: Server) -> str:
    return server.key("acme", "writer", "--rps", "0")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    page: Any
    problems: list[str] = field(default_factory=list)

    def assert_clean(self, *expected: str) -> None:
        """No script errors and no CSP violations; `expected` are substrings of the
        console errors a test provoked on purpose (Chromium logs every 4xx fetch)."""
        unexpected = [p for p in self.problems if not any(e in p for e in expected)]
        assert not unexpected, unexpected


@pytest.fixture
def tab(browser: Any, server: Server, writer: str) -> Iterator[Tab]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    opened = Tab(page)
    page.on(
        "console",
        lambda m: opened.problems.append(f"console: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: opened.problems.append(f"pageerror: {e}"))
    page.goto(server.url + "/")
    page.fill("#api-key", writer)
    yield opened
    context.close()


def ask(page: Any, question: str) -> str:
    """Ask with the keyboard (Enter submits) and wait for the stream to finish."""
    page.click("#tab-chat")
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_function(
        "() => !['idle', 'streaming'].includes(document.querySelector('#answer').dataset.state)"
    )
    state: str = page.get_attribute("#answer", "data-state")
    return state


def test_streamed_answer_has_clickable_citations_from_the_retrieved_chunks(tab: Tab) -> None:
    page = tab.page
    assert ask(page, QUESTION) == "done", page.text_content("#status")
    # The answer arrived as many token events, read off the stream as they came.
    assert int(page.get_attribute("#answer", "data-tokens")) > 1
    assert re.fullmatch(r"Searched in \d+ ms", page.text_content("#status") or "")

    text = page.text_content("#answer") or ""
    assert "skipped" in text
    assert not re.search(r"\[c[0-9a-f]{15}\]", text), "citation tags left as raw text"
    retrieved = set((page.get_attribute("#answer", "data-retrieved") or "").split())
    cited = page.eval_on_selector_all(
        "#citations [data-chunk-id]", "items => items.map(i => i.dataset.chunkId)"
    )
    markers = page.eval_on_selector_all(
        "#answer .marker", "items => items.map(i => i.dataset.cite)"
    )
    assert cited and markers
    assert set(cited) <= retrieved and set(markers) <= set(cited)

    entry = f'#citations [data-chunk-id="{markers[0]}"]'
    assert not page.is_visible(f"{entry} .cite-snippet")
    page.click("#answer .marker >> nth=0")
    page.wait_for_selector(f"{entry} .cite-snippet", state="visible")
    assert "skipped" in (page.text_content(f"{entry} .cite-snippet") or "")
    assert str(GUIDE) in (page.text_content(f"{entry} .cite-source") or "")
    assert page.get_attribute(f"{entry} .cite-toggle", "aria-expanded") == "true"
    # The entry's own button folds it away again.
    page.click(f"{entry} .cite-toggle")
    page.wait_for_selector(f"{entry} .cite-snippet", state="hidden")
    tab.assert_clean()


def test_uploaded_document_is_listed_answered_from_and_deleted(
    tab: Tab, server: Server, writer: str, tmp_path: Path
) -> None:
    page = tab.page
    note = tmp_path / "zeppelin.md"
    note.write_text(
        "# Hangar <img src=x onerror=alert(1)> notes\n\n"
        "The zeppelin hangar code is 4471 and it opens at dawn.\n"
    )
    page.click("#tab-documents")
    page.wait_for_selector(f'#documents [data-source-id="{GUIDE}"]')
    page.set_input_files("#file", str(note))
    page.click("#upload")
    page.wait_for_function(
        "() => document.querySelector('#upload-status').textContent.startsWith('Uploaded')"
    )
    status = page.text_content("#upload-status") or ""
    assert "(1 chunk)" in status and "Removed active content" in status
    row = '#documents [data-source-id="zeppelin.md"]'
    page.wait_for_selector(row)
    # The title is shown as text: the markup left in it is never parsed into an element.
    assert "<img" in (page.text_content(row) or "")
    assert page.locator(f"{row} img").count() == 0

    assert ask(page, "What is the zeppelin hangar code?") == "done"
    assert "4471" in (page.text_content("#answer") or "")
    sources = page.eval_on_selector_all(
        "#citations [data-chunk-id]", "items => items.map(i => i.dataset.sourceId)"
    )
    assert "zeppelin.md" in sources

    page.click("#tab-documents")
    page.wait_for_selector(row)
    page.click(f"{row} button")  # arms it
    assert page.locator(row).count() == 1
    page.click(f"{row} button")
    page.wait_for_selector(row, state="detached")
    listed = httpx.get(
        server.url + "/v1/documents", headers={"Authorization": f"Bearer {writer}"}
    ).json()
    assert "zeppelin.md" not in {d["source_id"] for d in listed}
    tab.assert_clean()


def test_server_errors_are_shown(tab: Tab, server: Server, writer: str) -> None:
    page = tab.page
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    rejected = httpx.post(
        server.url + "/v1/documents",
        files={"file": ("x.png", png, "image/png")},
        headers={"Authorization": f"Bearer {writer}"},
    )
    assert rejected.status_code == 415
    error = rejected.json()["error"]

    page.click("#tab-documents")
    page.set_input_files("#file", {"name": "x.png", "mimeType": "image/png", "buffer": png})
    page.click("#upload")
    page.wait_for_selector("#upload-status.error")
    shown = page.text_content("#upload-status") or ""
    assert error["message"] in shown and error["code"] in shown

    page.fill("#api-key", writer[:-4] + ("AAAA" if not writer.endswith("AAAA") else "BBBB"))
    assert ask(page, QUESTION) == "error"
    assert "unknown" in (page.text_content("#status") or "")
    tab.assert_clean("status of 415", "status of 401")


def test_the_key_is_remembered_and_the_dashboard_counts_requests(
    tab: Tab, server: Server, writer: str
) -> None:
    page = tab.page
    for _ in range(2):
        assert httpx.post(
            server.url + "/v1/answer",
            json={"question": QUESTION},
            headers={"Authorization": f"Bearer {writer}"},
            timeout=30,
        ).is_success
    page.reload()
    assert page.input_value("#api-key") == writer
    page.click("#tab-dashboard")
    # Spans reach the store on a ~200 ms flush: refresh until they are counted.
    deadline = time.monotonic() + 15
    while True:
        page.click("#refresh-stats")
        page.wait_for_function(
            "() => !document.querySelector('#stats-status').classList.contains('busy')"
        )
        shown = page.text_content("#stat-requests") or ""
        if shown.isdigit() and int(shown) >= 2:
            break
        assert time.monotonic() < deadline, (shown, page.text_content("#stats-status"))
        time.sleep(0.3)
    assert re.fullmatch(r"\d+ ms", page.text_content("#stat-p50") or "")
    assert (page.text_content("#stat-errors") or "").isdigit()
    assert re.fullmatch(r"\$\d+\.\d+", page.text_content("#stat-cost") or "")
    # A rate, or a dash (U+2013) when nothing was looked up in the cache.
    assert re.fullmatch(r"\d+\.\d%|\u2013", page.text_content("#stat-cache") or "")
    assert page.locator("#charts svg").count() == 3
    assert page.locator("#charts svg polyline, #charts svg circle").count() >= 2
    tab.assert_clean()
