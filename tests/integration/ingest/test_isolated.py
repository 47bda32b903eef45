"""parse_isolated: real child processes, real limits (no test hooks in the child)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from fpdf import FPDF

from tether.errors import UploadRejected
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.isolated import parse_isolated
from tether.security.uploads import ScannedUpload, UploadLimits, scan_upload

OPTIONS = ChunkOptions()
DEFAULT = UploadLimits()


def make_pdf(text: str) -> bytes:
    document = FPDF()
    document.add_page()
    if text:
        document.set_font("Helvetica", size=12)
        document.multi_cell(0, 10, text)
    return bytes(document.output())


async def parse(name: str, data: bytes, limits: UploadLimits = DEFAULT) -> ParsedDocument:
    return await parse_isolated(scan_upload(name, data, limits), OPTIONS, limits)


async def refused(upload: ScannedUpload, limits: UploadLimits) -> UploadRejected:
    with pytest.raises(UploadRejected) as caught:
        await parse_isolated(upload, OPTIONS, limits)
    return caught.value


@pytest.fixture(scope="module")
def heavy() -> ScannedUpload:
    """~11 MB of markdown with 200k headings: several seconds of parsing and a few hundred
    MB of memory, far past the limits the tests below set."""
    data = b"".join(
        b"# Heading %d\n\nLine number %d says hello world again.\n\n" % (i, i)
        for i in range(200_000)
    )
    return scan_upload("heavy.md", data)


def children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


async def test_markdown_parses_in_a_child() -> None:
    document = await parse("notes.md", b"# Install\n\nRun the installer, then restart.\n")
    assert [(d.section, d.text) for d in document.drafts] == [
        ("Install", "Install\nRun the installer, then restart.")
    ]


async def test_pdf_parses_in_a_child() -> None:
    document = await parse("report.pdf", make_pdf("Quarterly revenue grew strongly."))
    assert document.drafts[0].page == 1
    assert "Quarterly revenue grew strongly." in document.drafts[0].text


async def test_stripped_script_never_reaches_the_chunks() -> None:
    markdown = b"# Setup\n\nStep one.<script>steal('SENTINEL')</script> Step two.\n"
    document = await parse("setup.md", markdown)
    text = " ".join(d.text for d in document.drafts)
    assert "Step one." in text and "Step two." in text
    assert "SENTINEL" not in text


async def test_wall_clock_limit_kills_the_parser(heavy: ScannedUpload) -> None:
    started = time.perf_counter()
    error = await refused(heavy, UploadLimits(parse_seconds=1.0))
    assert error.code == "parse_timeout"
    assert "longer than 1 second" in str(error)
    assert time.perf_counter() - started < 3.0
    assert children() == set()


async def test_cpu_limit_stops_the_parser(heavy: ScannedUpload) -> None:
    error = await refused(heavy, UploadLimits(parse_seconds=60.0, parse_cpu_seconds=1))
    assert error.code == "parse_timeout"
    assert "CPU time" in str(error)


async def test_memory_limit_stops_the_parser(heavy: ScannedUpload) -> None:
    error = await refused(heavy, UploadLimits(parse_memory_bytes=160 * 1024 * 1024))
    assert error.code == "parse_memory"


async def test_parser_error_is_parse_failed_with_its_message() -> None:
    error = await refused(
        scan_upload("broken.pdf", b"%PDF-1.4\n1 0 obj garbage\n%%EOF\n"), UploadLimits()
    )
    assert error.code == "parse_failed"
    assert str(error) == "PDF is corrupt or truncated"


async def test_no_text_is_empty() -> None:
    error = await refused(scan_upload("scan.pdf", make_pdf("")), UploadLimits())
    assert error.code == "empty"


async def test_cancelling_the_parse_kills_the_child(heavy: ScannedUpload) -> None:
    task = asyncio.create_task(parse_isolated(heavy, OPTIONS, UploadLimits()))
    await asyncio.sleep(0.5)
    assert len(children()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children() == set()


def test_child_sees_no_server_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.ingest.isolated import _child_env

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    env = _child_env()
    assert "OPENAI_API_KEY" not in env
    # The child imports the same tether as the parent, installed or not.
    first = Path(env["PYTHONPATH"].split(os.pathsep)[0])
    assert (first / "tether" / "isolated.py").exists() is False
    assert (first / "tether" / "ingest" / "isolated.py").is_file()
