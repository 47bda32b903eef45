"""Upload screening: type by content, bombs, polyglots, executables and active content."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript
from pypdf.generic import DictionaryObject, NameObject, TextStringObject

from tether.errors import UploadRejected
from tether.ingest import formats
from tether.ingest.drafts import ChunkOptions
from tether.security.uploads import ScannedUpload, UploadLimits, display_name, scan_upload

DEFAULT = UploadLimits()
MD = b"# Release notes\n\nThe exporter now writes Parquet.\n"


def make_pdf(text: str = "Quarterly revenue grew strongly.") -> bytes:
    document = FPDF()
    document.add_page()
    if text:
        document.set_font("Helvetica", size=12)
        document.multi_cell(0, 10, text)
    return bytes(document.output())


def edit_pdf(data: bytes, edit: Callable[[PdfWriter], object]) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    edit(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def refused(name: str, data: bytes, limits: UploadLimits = DEFAULT) -> UploadRejected:
    with pytest.raises(UploadRejected) as caught:
        scan_upload(name, data, limits)
    return caught.value


def parsed_text(upload: ScannedUpload) -> str:
    document = formats.parse(upload.format, upload.data, name=upload.name, options=ChunkOptions())
    return "\n".join(draft.text for draft in document.drafts)


def gzip_stream(block: bytes, count: int, level: int = 1) -> bytes:
    """Compress `count` copies of `block` without ever holding the expanded bytes."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(block) for _ in range(count)]
    parts.append(compressor.flush())
    return b"".join(parts)


# --- size, emptiness, names ------------------------------------------------------------


def test_empty_upload_is_refused() -> None:
    assert refused("notes.md", b"").code == "empty"


def test_whitespace_only_text_is_empty() -> None:
    assert refused("notes.md", b" \n\t\n").code == "empty"


def test_size_limit_is_inclusive() -> None:
    limits = UploadLimits(max_bytes=len(MD))
    assert scan_upload("notes.md", MD, limits).format == "markdown"
    error = refused("notes.md", MD + b"x", limits)
    assert error.code == "too_large"
    assert f"limit is {len(MD)} bytes" in str(error)


def test_clean_markdown_passes_unchanged() -> None:
    upload = scan_upload("docs/notes.md", MD)
    assert upload.name == "notes.md"
    assert upload.format == "markdown"
    assert upload.data == MD
    assert upload.stripped == []
    assert upload.sha256 == hashlib.sha256(MD).hexdigest()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd.md", "passwd.md"),
        ("C:\\Users\\eve\\report.pdf", "report.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # bidi override dropped
        ("a\x00b\x1bc\r\nd.txt", "abc d.txt"),
        ("..", "upload"),
        ("", "upload"),
    ],
)
def test_display_name_is_a_safe_basename(raw: str, shown: str) -> None:
    assert display_name(raw) == shown


def test_long_display_name_keeps_its_extension() -> None:
    shown = display_name("x" * 500 + ".md")
    assert len(shown) == 200
    assert shown.endswith("xx.md")


# --- type by content -------------------------------------------------------------------


def test_pdf_named_txt_is_detected_as_pdf() -> None:
    upload = scan_upload("report.txt", make_pdf())
    assert upload.format == "pdf"
    assert "Quarterly revenue" in parsed_text(upload)


def test_text_named_pdf_is_refused() -> None:
    error = refused("report.pdf", b"Just some text pretending.\n")
    assert error.code == "unsupported_type"
    assert "content is not a PDF" in str(error)


def test_unknown_extension_on_text_is_refused() -> None:
    error = refused("notes.xyz", b"plain words\n")
    assert error.code == "unsupported_type"
    assert "'.xyz'" in str(error)


def test_jsonl_is_still_told_apart_by_records() -> None:
    line = b'{"title": "Printer jam", "status": "open", "body": "Tray 2 jams."}\n'
    assert scan_upload("export.jsonl", line).format == "tickets"


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (b"\x7fELF\x02\x01\x01\x00" + bytes(56), "ELF"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(50) + b"PE\x00\x00", "Windows executable"),
        (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(24), "Mach-O"),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(24), "Java class"),
    ],
)
def test_executables_are_refused(data: bytes, label: str) -> None:
    # The name says text: the content decides.
    error = refused("readme.txt", data)
    assert error.code == "executable"
    assert label in str(error)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("notes.md")
        info.size = len(MD)
        archive.addfile(info, io.BytesIO(MD))
    return out.getvalue()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (PNG, "PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", "JPEG image"),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff", "GIF image"),
        (_zip({"notes.md": MD}), "ZIP archive"),
        (_zip({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<w/>"}), "Word document"),
        (_zip({"META-INF/MANIFEST.MF": b"Main-Class: X\n"}), "Java archive"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), "7-Zip archive"),
        (b"Rar!\x1a\x07\x01\x00" + bytes(24), "RAR archive"),
        (lzma.compress(MD), "xz archive"),
        (bz2.compress(MD), "bzip2 archive"),
        (_tar(), "tar archive"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "legacy Microsoft Office"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(32), "MP3 audio"),
        (b"SQLite format 3\x00" + bytes(84), "SQLite database"),
    ],
)
def test_binary_types_are_refused_by_name(data: bytes, label: str) -> None:
    error = refused("notes.md", data)
    code = "executable" if "Java" in label else "unsupported_type"
    assert error.code == code
    assert label in str(error)


def test_unknown_binary_is_refused_as_binary() -> None:
    error = refused("notes.md", b"\x01\x02\x03data\x00\x00more")
    assert error.code == "unsupported_type"
    assert "binary" in str(error)


@pytest.mark.parametrize("opening", [b"MZ is our team's shorthand", b"BM stands for", b"BZh is"])
def test_text_that_starts_like_a_signature_is_still_text(opening: bytes) -> None:
    upload = scan_upload("notes.txt", opening + b" for the weekly meeting.\n")
    assert upload.format == "text"


def test_latin1_text_is_refused_with_an_encoding_hint() -> None:
    error = refused(
        "notes.txt", "Caf\u00e9 au lait, cr\u00e8me br\u00fbl\u00e9e.\n".encode("latin-1")
    )
    assert error.code == "unsupported_type"
    assert "UTF-8" in str(error)


def test_utf16_with_bom_is_transcoded_for_the_parser() -> None:
    upload = scan_upload("notes.md", "# Caf\u00e9\n\nOpen daily.\n".encode("utf-16"))
    assert upload.data == "# Caf\u00e9\n\nOpen daily.\n".encode()
    assert "Open daily." in parsed_text(upload)


# --- polyglots -------------------------------------------------------------------------


def test_pdf_with_zip_appended_is_a_polyglot() -> None:
    error = refused("report.pdf", make_pdf() + _zip({"payload.exe": b"MZ" + bytes(64)}))
    assert error.code == "polyglot"
    assert "ZIP" in str(error)


def test_pdf_with_html_after_eof_is_a_polyglot() -> None:
    error = refused("report.pdf", make_pdf() + b"\n<html><script>alert(1)</script></html>\n")
    assert error.code == "polyglot"


def test_data_before_the_pdf_header_is_a_polyglot() -> None:
    error = refused("report.pdf", b"GIF89a/*" + bytes(8) + make_pdf())
    assert error.code == "polyglot"
    assert "at byte 16" in str(error)


def test_text_with_a_pdf_header_near_the_start_is_a_polyglot() -> None:
    assert refused("notes.md", b"# Notes\n\n%PDF-1.7\n1 0 obj\n").code == "polyglot"


def test_text_with_a_zip_appended_is_a_polyglot() -> None:
    data = b"# Notes\n\nharmless words\n" + _zip({"payload.js": b"alert(1)"})
    error = refused("notes.md", data)
    assert error.code == "polyglot"
    assert "ZIP archive" in str(error)


def test_trailing_whitespace_after_pdf_eof_is_fine() -> None:
    assert scan_upload("report.pdf", make_pdf() + b"\r\n\n  \x00").format == "pdf"


# --- gzip ------------------------------------------------------------------------------


def test_gzip_of_one_document_is_unpacked() -> None:
    packed = gzip.compress(MD)
    upload = scan_upload("notes.md.gz", packed)
    assert upload.name == "notes.md"
    assert upload.format == "markdown"
    assert upload.data == MD
    assert upload.sha256 == hashlib.sha256(packed).hexdigest()


@pytest.fixture(scope="module")
def zero_bomb() -> bytes:
    return gzip_stream(bytes(1 << 20), 200)  # 200 MB of zeros in under 1 MB


def test_gzip_bomb_is_stopped_early_and_small(zero_bomb: bytes) -> None:
    assert len(zero_bomb) < UploadLimits().max_bytes
    tracemalloc.start()
    try:
        error = refused("notes.txt.gz", zero_bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "archive_bomb"
    # Stopped on the ratio after a few MB, long before 200 MB were expanded.
    assert peak < 16 * 1024 * 1024


def test_gzip_over_the_expanded_cap_is_a_bomb_even_at_a_low_ratio() -> None:
    line = b"".join(b"%08x " % (i * 2654435761 % 2**32) for i in range(1000)) + b"\n"
    packed = gzip_stream(line, 300, level=9)  # ~2.7 MB of hex words, ratio about 2
    error = refused("ids.txt.gz", packed, UploadLimits(max_expanded_bytes=1024 * 1024))
    assert error.code == "archive_bomb"
    assert "more than 1 MB" in str(error)


def test_small_repetitive_gzip_is_not_a_bomb() -> None:
    # 500 KB of one repeated line compresses ~1000:1 but is below the ratio floor.
    upload = scan_upload("log.txt.gz", gzip.compress(b"ok\n" * 170_000))
    assert upload.format == "text"


def test_gzip_inside_gzip_is_refused() -> None:
    assert refused("notes.md.gz", gzip.compress(gzip.compress(MD))).code == "archive_bomb"


def test_truncated_gzip_is_refused() -> None:
    packed = gzip.compress(MD * 50)
    error = refused("notes.md.gz", packed[: len(packed) // 2])
    assert error.code == "unsupported_type"
    assert "truncated" in str(error)


def test_gzip_inner_content_is_screened_too() -> None:
    packed = gzip.compress(_tar())
    error = refused("backup.tar.gz", packed)
    assert error.code == "unsupported_type"
    assert "tar archive" in str(error)
    assert refused("tool.gz", gzip.compress(b"\x7fELF\x02\x01" + bytes(58))).code == "executable"


# --- active content: HTML, Markdown, text ----------------------------------------------

HOSTILE_HTML = b"""<!doctype html><html><head><title>Caf\xe9 menu</title>
<meta charset="windows-1252"><style>body{background:url(SENTINEL_STYLE)}</style>
<script>steal('SENTINEL_SCRIPT')</script>
<meta http-equiv="refresh" content="0;url=javascript:steal('SENTINEL_REFRESH')"></head>
<body><h1>Caf\xe9</h1><p onclick="steal('SENTINEL_CLICK')">Espresso is served all day.</p>
<img src=x OnError="steal('SENTINEL_ONERROR')">
<a href="&#106;ava&#x09;script:steal('SENTINEL_HREF')">menu</a>
<iframe srcdoc="<script>steal('SENTINEL_SRCDOC')</script>"></iframe>
<applet code="A"><object data="x.swf"><embed src="SENTINEL_EMBED.swf"></object></applet>
<template><script>steal('SENTINEL_TEMPLATE')</script></template>
<svg><script>steal('SENTINEL_SVG')</script></svg>
<p>Closed on Mondays.</p></body></html>"""


def test_html_active_content_is_stripped() -> None:
    upload = scan_upload("menu.html", HOSTILE_HTML)
    assert upload.format == "html"
    assert set(upload.stripped) == {
        "html_embed",
        "html_event_handler",
        "html_iframe",
        "html_javascript_url",
        "html_meta_refresh",
        "html_object",
        "html_script",
        "html_style",
        "html_template",
    }
    cleaned = upload.data.decode("utf-8-sig")
    assert "SENTINEL" not in cleaned
    assert "<script" not in cleaned.lower()
    text = parsed_text(upload)
    assert "Espresso is served all day." in text
    assert "Closed on Mondays." in text
    assert "Caf\u00e9" in text  # windows-1252 decoded once, then handed on as UTF-8


def test_clean_html_reports_nothing_stripped() -> None:
    page = b"<html><body><h1>Menu</h1><p>Tea <a href='/tea'>list</a>.</p></body></html>"
    upload = scan_upload("menu.html", page)
    assert upload.stripped == []
    assert "Tea list." in parsed_text(upload)


def test_absurdly_nested_html_is_refused_before_parsing() -> None:
    page = b"<html><body>" + b"<div>" * 600 + b"deep" + b"</div>" * 600 + b"</body></html>"
    error = refused("deep.html", page)
    assert error.code == "parse_failed"
    assert "512 levels" in str(error)
    # Depth is what counts, not the number of elements or unclosed auto-closing ones.
    wide = b"<ul>" + b"<li><div><p>item</div>" * 5000 + b"</ul>"
    assert scan_upload("wide.html", wide).format == "html"
    assert scan_upload("ok.html", b"<div>" * 400 + b"fine").format == "html"


HOSTILE_MD = b"""# Setup

Run the installer.<script>steal('SENTINEL_SCRIPT')</script>

Click [here](JaVa&#115;cript:steal('SENTINEL_LINK')) or <img alt="a>b" src=x onerror="steal('SENTINEL_IMG')">.

<script src=//evil.example/SENTINEL_UNCLOSED.js>
Then restart.
"""


def test_markdown_active_content_is_stripped() -> None:
    upload = scan_upload("setup.md", HOSTILE_MD)
    assert set(upload.stripped) == {
        "markdown_script",
        "markdown_javascript_url",
        "markdown_event_handler",
    }
    text = parsed_text(upload)
    for gone in ("SENTINEL_SCRIPT", "SENTINEL_IMG", "SENTINEL_UNCLOSED", "onerror", "&#115;cript:"):
        assert gone not in text
    assert "[here](steal(" in text  # the link survives, without its scheme
    assert "Run the installer." in text
    assert "Then restart." in text


def test_plain_text_script_blocks_are_stripped() -> None:
    upload = scan_upload("notes.txt", b"Hello <SCRIPT>alert('x')</SCRIPT> world\n")
    assert upload.stripped == ["text_script"]
    assert upload.data == b"Hello  world\n"


def test_source_code_is_left_alone() -> None:
    source = b'TEMPLATE = "<script>init()</script>"\nLINK = "javascript:void(0)"\n'
    upload = scan_upload("page.py", source)
    assert upload.format == "python"
    assert upload.data == source
    assert upload.stripped == []


# --- active content: PDF ---------------------------------------------------------------


def _catalog(data: bytes) -> DictionaryObject:
    root = PdfReader(io.BytesIO(data)).trailer["/Root"].get_object()
    assert isinstance(root, DictionaryObject)
    return root


def test_pdf_document_javascript_is_disarmed() -> None:
    hostile = edit_pdf(make_pdf(), lambda w: w.add_open_action(JavaScript("app.alert(1)")))
    assert "/JavaScript" in _catalog(hostile)["/Names"]
    upload = scan_upload("report.pdf", hostile)
    assert upload.stripped == ["pdf_javascript"]
    assert len(upload.data) == len(hostile)  # disarmed in place: xref offsets still hold
    assert "/JavaScript" not in _catalog(upload.data)["/Names"]
    assert b"/JavaScript" not in upload.data and b"/JS " not in upload.data
    assert "Quarterly revenue grew strongly." in parsed_text(upload)


def _js_open_action(writer: PdfWriter) -> None:
    writer._root_object[NameObject("/OpenAction")] = DictionaryObject(
        {
            NameObject("/S"): NameObject("/JavaScript"),
            NameObject("/JS"): TextStringObject("app.alert(1)"),
        }
    )


def test_pdf_open_action_script_is_disarmed() -> None:
    upload = scan_upload("report.pdf", edit_pdf(make_pdf(), _js_open_action))
    assert upload.stripped == ["pdf_javascript", "pdf_open_action"]
    assert "/OpenAction" not in _catalog(upload.data)
    assert "Quarterly revenue grew strongly." in parsed_text(upload)


def test_plain_pdf_open_destination_is_not_active_content() -> None:
    plain = make_pdf()
    assert b"/OpenAction [" in plain  # fpdf2 opens at page 1 this way
    upload = scan_upload("report.pdf", plain)
    assert upload.stripped == []
    assert upload.data == plain


def test_hex_escaped_pdf_names_are_seen() -> None:
    hostile = edit_pdf(make_pdf(), _js_open_action)
    hostile = hostile.replace(b"/JavaScript", b"/J#61vaScript").replace(
        b"/OpenAction", b"/Open#41ction"
    )
    upload = scan_upload("report.pdf", hostile)
    assert upload.stripped == ["pdf_javascript", "pdf_open_action"]
    assert b"/j#41VAsCRIPT" in upload.data


def _launch(writer: PdfWriter) -> None:
    writer._root_object[NameObject("/OpenAction")] = DictionaryObject(
        {NameObject("/S"): NameObject("/Launch"), NameObject("/F"): TextStringObject("calc")}
    )


def test_pdf_launch_action_is_refused() -> None:
    error = refused("report.pdf", edit_pdf(make_pdf(), _launch))
    assert error.code == "active_content"
    assert "Launch" in str(error)


def test_pdf_embedded_file_is_refused() -> None:
    hostile = edit_pdf(make_pdf(), lambda w: w.add_attachment("run.bat", b"calc"))
    error = refused("report.pdf", hostile)
    assert error.code == "active_content"
    assert "embedded files" in str(error)


def _with_object_stream(objects: bytes) -> bytes:
    """A PDF 1.5 file whose objects sit only inside a compressed object stream."""
    packed = zlib.compress(b"1 0 " + objects)
    return (
        b"%PDF-1.5\n5 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length "
        + str(len(packed)).encode()
        + b" >>\nstream\n"
        + packed
        + b"\nendstream\nendobj\nstartxref\n9\n%%EOF\n"
    )


def test_launch_hidden_in_an_object_stream_is_refused() -> None:
    hidden = _with_object_stream(b"<< /Type /Action /S /Launch /F (calc.exe) >>")
    assert b"Launch" not in hidden
    assert refused("report.pdf", hidden).code == "active_content"


def test_javascript_hidden_in_an_object_stream_is_recorded() -> None:
    hidden = _with_object_stream(b"<< /Type /Catalog /OpenAction << /S /JavaScript /JS (x) >> >>")
    assert scan_upload("report.pdf", hidden).stripped == ["pdf_javascript", "pdf_open_action"]


def test_short_names_inside_stream_bodies_are_left_alone() -> None:
    body = b"\x8f\x02/JS /AA \xfe\x01"  # looks like names, is binary image data
    data = (
        b"%PDF-1.4\n4 0 obj\n<< /Length "
        + str(len(body)).encode()
        + b" >>\nstream\n"
        + body
        + b"\nendstream\nendobj\n%%EOF\n"
    )
    upload = scan_upload("scan.pdf", data)
    assert upload.stripped == []
    assert upload.data == data
