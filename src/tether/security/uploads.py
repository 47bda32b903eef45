"""Screening of uploaded files before any parser sees them.

The type of an upload is decided by its content; the file name only chooses among the
text formats, because text has no magic bytes to go by. Everything that is not a PDF or
text (UTF-8, BOM-marked UTF-16/32, or HTML in its declared charset) is refused with a
message naming what was found; text reaches the parser re-encoded as UTF-8.
Active content is removed from what the parser gets (HTML, Markdown, plain text) or
disarmed in place (PDF); only extracted text is ever stored, so this is defence in depth
for anyone who later renders that text or keeps the bytes.

Everything here is linear in the upload size and bounded by `UploadLimits`: no PDF
library and no unbounded decompression run in the calling process. The exception is
HTML, which lexbor parses here to sanitize it (fast C, but memory is roughly 20 times
the page size, so bound concurrent uploads). The parser proper runs in a child process
(`tether.ingest.isolated`). `scan_upload` is CPU-bound and synchronous; an async caller
runs it in a worker thread.

What is not caught, knowingly:
- PDF names hidden in object streams that use a filter other than a single FlateDecode
  without predictors, or in encrypted PDFs (their streams cannot be read without
  decrypting), are not seen. Names inside object streams are seen but not disarmed
  (rewriting compressed streams would move every xref offset).
- JavaScript inside XFA form XML or inside ordinary content streams is not looked for;
  pypdf never runs either.
- Script in CSS (`style="...url(javascript:...)"`, legacy `expression()`), SVG/MathML
  oddities beyond script elements and URL attributes, and script-like text inside code,
  CSV and JSONL uploads are left alone: those are indexed as text, and whatever shows
  them must escape them.
- Inside a PDF only a ZIP end record (last 64 KiB) and whatever follows the last %%EOF
  are checked for a second format; a payload tucked into a stream object is not.
- A PDF name such as `/Launch` written inside a literal string is treated like a real
  name: a rare false refusal, never a miss.
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal, NoReturn

from pydantic import BaseModel, ConfigDict
from selectolax.lexbor import LexborHTMLParser

from tether.errors import EmptyDocument, IngestError, UploadRejected
from tether.ingest import formats
from tether.ingest.formats import FormatName

__all__ = ["ScannedUpload", "UploadLimits", "display_name", "scan_upload"]

_ACCEPTED = "PDF, Markdown, HTML, plain text, CSV, JSONL and source code files"
_MAX_NAME_CHARS = 200
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 20 * 1024 * 1024  # raw upload
    max_expanded_bytes: int = 50 * 1024 * 1024  # after gzip decompression
    max_ratio: int = 100  # decompressed/compressed ratio above this = bomb
    parse_seconds: float = 30.0  # wall clock for the parser subprocess
    parse_cpu_seconds: int = 30  # RLIMIT_CPU
    parse_memory_bytes: int = 1024 * 1024 * 1024  # RLIMIT_AS


class ScannedUpload(BaseModel):
    """An upload that passed screening: what the parser may be given, and what was removed."""

    model_config = ConfigDict(frozen=True)

    #: A safe display name: basename only, control characters removed, <= 200 characters.
    name: str
    format: FormatName
    #: The (decompressed, sanitized) bytes the parser gets.
    data: bytes
    #: Of the original upload bytes, before decompression or sanitizing.
    sha256: str
    #: Active content removed or disarmed, e.g. ["html_script", "pdf_javascript"].
    stripped: list[str]


def scan_upload(name: str, data: bytes, limits: UploadLimits = UploadLimits()) -> ScannedUpload:
    """Decide what an upload is from its content and make it safe to parse.

    Raises UploadRejected with code empty, too_large, unsupported_type, archive_bomb,
    polyglot, executable or active_content, or parse_failed for HTML nested too deeply
    to parse safely in this process; the message is meant for the end user.
    """
    shown = display_name(name)
    if not data:
        raise UploadRejected("empty", "the file is empty")
    if len(data) > limits.max_bytes:
        raise UploadRejected(
            "too_large", f"the file is {_size(len(data))}; the limit is {_size(limits.max_bytes)}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if data.startswith(_GZIP):
        data = _gunzip(data, limits)
        shown = _inner_name(shown)
        if data.startswith(_GZIP):
            # Layered compression is how bombs multiply their ratio; no real document needs it.
            raise UploadRejected(
                "archive_bomb", "the file is a gzip file inside a gzip file; this is not accepted"
            )
        if not data:
            raise UploadRejected("empty", "the gzip file contains an empty file")
    stripped: set[str] = set()
    fmt, clean = _screen(shown, data, limits, stripped)
    return ScannedUpload(
        name=shown, format=fmt, data=clean, sha256=digest, stripped=sorted(stripped)
    )


def display_name(name: str) -> str:
    """The last path component, without control or invisible format characters."""
    base = re.split(r"[/\\]", name)[-1]
    base = unicodedata.normalize("NFC", base)
    # Cf holds the bidi overrides that make "invoice\u202efdp.exe" display as "invoice.pdf".
    base = "".join(
        " " if ch.isspace() else ch
        for ch in base
        if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp") or ch in "\t\n"
    )
    base = " ".join(base.split()).strip(". ")
    if not base:
        return "upload"
    if len(base) > _MAX_NAME_CHARS:
        suffix = PurePath(base).suffix
        if len(suffix) > 16:
            suffix = ""
        base = base[: _MAX_NAME_CHARS - len(suffix)].rstrip(". ") + suffix
    return base


def _screen(
    name: str, data: bytes, limits: UploadLimits, stripped: set[str]
) -> tuple[FormatName, bytes]:
    if data.startswith(b"%PDF-"):
        return "pdf", _screen_pdf(data, limits, stripped)
    header = _PDF_HEADER.search(data, 0, 1024)
    if header is not None:
        # PDF readers look for the header anywhere in the first 1024 bytes, so this file
        # opens as a PDF in one program and as something else in another.
        raise UploadRejected(
            "polyglot",
            f"the file has a PDF header at byte {header.start()}, after other data; "
            "files that are two formats at once are not accepted",
        )
    magic = _identify(data, strong_only=True)
    if magic is not None:
        _refuse(magic, data)
    _reject_embedded(data)
    text = _decode(name, data)
    if not text.strip():
        raise UploadRejected("empty", "the file contains no text")
    canonical = text.encode("utf-8")
    try:
        fmt = formats.detect(name, canonical)
    except EmptyDocument:
        raise UploadRejected("empty", "the file contains no text") from None
    except IngestError as exc:
        raise UploadRejected("unsupported_type", f"{exc}; accepted are {_ACCEPTED}") from None
    if fmt == "pdf":
        raise UploadRejected(
            "unsupported_type", "the file is named like a PDF but its content is not a PDF"
        )
    if fmt == "html":
        _reject_deep_html(text)
        # The BOM makes the parser decode our UTF-8 as UTF-8 whatever <meta charset> says.
        return fmt, _UTF8_BOM + _sanitize_html(text, stripped).encode("utf-8")
    if fmt in ("markdown", "text"):
        return fmt, _sanitize_markup(text, fmt, stripped).encode("utf-8")
    return fmt, canonical


# --- magic numbers ---------------------------------------------------------------------

_Kind = Literal["executable", "archive", "image", "media", "document", "other"]


@dataclass(frozen=True)
class _Magic:
    signature: bytes
    label: str
    kind: _Kind
    offset: int = 0

    @property
    def strong(self) -> bool:
        # A signature made only of printable ASCII can begin a real text file ("MZ is
        # short for..."), so it only names a file already known to be binary.
        return any(b < 0x09 or 0x0E <= b < 0x20 or b >= 0x7F for b in self.signature)


_GZIP = b"\x1f\x8b"
_ZIP_HEADERS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_MAGICS: tuple[_Magic, ...] = (
    _Magic(b"\x7fELF", "a Linux executable (ELF)", "executable"),
    _Magic(b"MZ", "a Windows executable (EXE or DLL)", "executable"),
    _Magic(b"\xfe\xed\xfa\xce", "a macOS executable (Mach-O)", "executable"),
    _Magic(b"\xfe\xed\xfa\xcf", "a macOS executable (Mach-O)", "executable"),
    _Magic(b"\xce\xfa\xed\xfe", "a macOS executable (Mach-O)", "executable"),
    _Magic(b"\xcf\xfa\xed\xfe", "a macOS executable (Mach-O)", "executable"),
    _Magic(b"\xca\xfe\xba\xbe", "a Java class file or macOS universal binary", "executable"),
    _Magic(b"\x00asm", "a WebAssembly module", "executable"),
    _Magic(b"dex\n", "an Android executable (DEX)", "executable"),
    *(_Magic(sig, "a ZIP archive", "archive") for sig in _ZIP_HEADERS),
    _Magic(b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "archive"),
    _Magic(b"Rar!\x1a\x07", "a RAR archive", "archive"),
    _Magic(b"\xfd7zXZ\x00", "an xz archive", "archive"),
    _Magic(b"BZh", "a bzip2 archive", "archive"),
    _Magic(b"\x28\xb5\x2f\xfd", "a Zstandard archive", "archive"),
    _Magic(b"\x04\x22\x4d\x18", "an LZ4 archive", "archive"),
    _Magic(b"\x1f\x9d", "a compressed (.Z) archive", "archive"),
    _Magic(b"\x1f\xa0", "a compressed (.Z) archive", "archive"),
    _Magic(_GZIP, "a gzip file", "archive"),
    _Magic(b"\xed\xab\xee\xdb", "an RPM package", "archive"),
    _Magic(b"MSCF", "a Windows cabinet archive", "archive"),
    _Magic(b"!<arch>\n", "a Unix ar archive (such as a .deb package)", "archive"),
    _Magic(b"ustar", "a tar archive", "archive", offset=257),
    _Magic(b"CD001", "a disk image (ISO)", "archive", offset=32769),
    _Magic(b"\x89PNG\r\n\x1a\n", "a PNG image", "image"),
    _Magic(b"\xff\xd8\xff", "a JPEG image", "image"),
    _Magic(b"GIF87a", "a GIF image", "image"),
    _Magic(b"GIF89a", "a GIF image", "image"),
    _Magic(b"II*\x00", "a TIFF image", "image"),
    _Magic(b"MM\x00*", "a TIFF image", "image"),
    _Magic(b"\x00\x00\x01\x00", "an icon (ICO) image", "image"),
    _Magic(b"8BPS", "a Photoshop image", "image"),
    _Magic(b"BM", "a BMP image", "image"),
    _Magic(b"WEBP", "a WebP image", "image", offset=8),
    _Magic(b"ftypheic", "a HEIC image", "image", offset=4),
    _Magic(b"ftypheix", "a HEIC image", "image", offset=4),
    _Magic(b"ftypmif1", "a HEIF image", "image", offset=4),
    _Magic(b"ftypavif", "an AVIF image", "image", offset=4),
    _Magic(b"ftyp", "an MP4 or QuickTime video", "media", offset=4),
    _Magic(b"\x1a\x45\xdf\xa3", "a Matroska or WebM video", "media"),
    _Magic(b"AVI ", "an AVI video", "media", offset=8),
    _Magic(b"WAVE", "a WAV audio file", "media", offset=8),
    _Magic(b"ID3", "an MP3 audio file", "media"),
    _Magic(b"\xff\xfb", "an MP3 audio file", "media"),
    _Magic(b"\xff\xf3", "an MP3 audio file", "media"),
    _Magic(b"\xff\xf2", "an MP3 audio file", "media"),
    _Magic(b"OggS", "an Ogg audio or video file", "media"),
    _Magic(b"fLaC", "a FLAC audio file", "media"),
    _Magic(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "a legacy Microsoft Office file (.doc, .xls or .ppt)",
        "document",
    ),
    _Magic(b"SQLite format 3\x00", "an SQLite database", "other"),
)
# Members a ZIP container holds when it is really an office file, an e-book or a program.
_ZIP_FLAVOURS: tuple[tuple[bytes, str, _Kind], ...] = (
    (b"AndroidManifest.xml", "an Android app (APK)", "executable"),
    (b"META-INF/MANIFEST.MF", "a Java archive (JAR)", "executable"),
    (b"word/", "a Word document (.docx)", "document"),
    (b"xl/", "an Excel workbook (.xlsx)", "document"),
    (b"ppt/", "a PowerPoint presentation (.pptx)", "document"),
    (b"mimetypeapplication/vnd.oasis.opendocument", "an OpenDocument file", "document"),
    (b"mimetypeapplication/epub+zip", "an EPUB e-book", "document"),
)
_PDF_HEADER = re.compile(rb"%PDF-\d")
# Headers no text contains. A ZIP is read from its end and RAR and 7-Zip readers scan
# for their header, so each still opens when appended to or embedded in something else.
_EMBEDDED = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"PK\x01\x02", "a ZIP archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x7fELF", "a Linux executable"),
)


def _identify(data: bytes, *, strong_only: bool) -> _Magic | None:
    for magic in _MAGICS:
        if strong_only and not magic.strong:
            continue
        if data.startswith(magic.signature, magic.offset):
            return magic
    return None


def _refuse(magic: _Magic, data: bytes) -> NoReturn:
    label, kind = magic.label, magic.kind
    if magic.signature in _ZIP_HEADERS:
        for member, flavour, flavour_kind in _ZIP_FLAVOURS:
            if member in data:
                label, kind = flavour, flavour_kind
                break
    if kind == "executable":
        raise UploadRejected("executable", f"the file is {label}; programs are not accepted")
    if kind == "archive":
        raise UploadRejected(
            "unsupported_type",
            f"the file is {label}; archives are not accepted (gzip of a single file is)",
        )
    if kind == "image":
        reason = "images are not accepted"
    elif kind == "media":
        reason = "audio and video files are not accepted"
    elif kind == "document":
        reason = "save it as PDF or plain text first"
    else:
        reason = "this type is not accepted"
    raise UploadRejected(
        "unsupported_type", f"the file is {label}; {reason}. Accepted are {_ACCEPTED}"
    )


# --- gzip ------------------------------------------------------------------------------

_INFLATE_STEP = 1024 * 1024
# Below this much output a high ratio is just repetitive text (a column of blanks), not
# a bomb; the absolute cap still applies.
_RATIO_FLOOR = 1024 * 1024


def _gunzip(data: bytes, limits: UploadLimits) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while not inflater.eof:
            # max_length bounds every step, so a bomb costs at most the cap plus one byte.
            room = limits.max_expanded_bytes + 1 - len(out)
            step = inflater.decompress(pending, min(_INFLATE_STEP, room))
            pending = inflater.unconsumed_tail
            out += step
            if len(out) > limits.max_expanded_bytes:
                raise UploadRejected(
                    "archive_bomb",
                    f"the gzip file expands to more than {_size(limits.max_expanded_bytes)}",
                )
            consumed = len(data) - len(pending)
            if len(out) > _RATIO_FLOOR and len(out) > limits.max_ratio * consumed:
                raise UploadRejected(
                    "archive_bomb",
                    f"the gzip file expands more than {limits.max_ratio} times; "
                    "this looks like a decompression bomb",
                )
            if not step and not pending and not inflater.eof:
                raise UploadRejected("unsupported_type", "the gzip file is truncated or corrupt")
    except zlib.error:
        raise UploadRejected("unsupported_type", "the gzip file is corrupt") from None
    trailing = inflater.unused_data.strip(b"\x00")
    if trailing.startswith(_GZIP):
        raise UploadRejected(
            "unsupported_type", "the gzip file holds several files; upload one file at a time"
        )
    if trailing:
        raise UploadRejected(
            "polyglot", "the gzip file has other data appended after the compressed file"
        )
    return bytes(out)


def _inner_name(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".tgz"):
        return name[:-4] + ".tar"
    if lower.endswith(".gz") and len(name) > 3:
        return name[:-3]
    return name


# --- text ------------------------------------------------------------------------------

_HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:\-]+)", re.I)
_TEXT_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
    (_UTF8_BOM, "utf-8-sig"),
)


def _decode(name: str, data: bytes) -> str:
    codec = "utf-8"
    for bom, bom_codec in _TEXT_BOMS:
        if data.startswith(bom):
            codec = bom_codec
            break
    else:
        if PurePath(name).suffix.lower() in _HTML_EXTENSIONS:
            codec = _declared_charset(data) or codec
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        _not_text(data, codec)
    if "\x00" in text:
        _not_text(data, codec)
    return text


def _declared_charset(data: bytes) -> str | None:
    declared = _META_CHARSET.search(data[:4096])
    if declared is None:
        return None
    try:
        codec = codecs.lookup(declared.group(1).decode("ascii")).name
    except LookupError:
        return None
    # Browsers read a declared latin-1/ascii page as windows-1252, and so does the parser.
    return "cp1252" if codec in ("iso8859-1", "ascii") else codec


def _not_text(data: bytes, codec: str) -> NoReturn:
    magic = _identify(data, strong_only=False)
    if magic is not None:
        _refuse(magic, data)
    sample = data[:8192]
    controls = sum(1 for b in sample if b < 0x09 or 0x0E <= b < 0x20)
    if b"\x00" in sample or controls * 20 > len(sample):
        raise UploadRejected(
            "unsupported_type",
            f"the file is binary, not text, and not a PDF. Accepted are {_ACCEPTED}",
        )
    encoding = "UTF-8" if codec == "utf-8" else codec
    raise UploadRejected(
        "unsupported_type", f"the file is not valid {encoding} text; save it as UTF-8 and retry"
    )


def _reject_embedded(data: bytes) -> None:
    for marker, label in _EMBEDDED:
        if marker in data:
            raise UploadRejected(
                "polyglot",
                f"the file contains {label} inside it; "
                "files that are two formats at once are not accepted",
            )


# --- HTML ------------------------------------------------------------------------------

_HTML_DROP = {
    "script": "html_script",
    "iframe": "html_iframe",
    "frame": "html_iframe",
    "frameset": "html_iframe",
    "object": "html_object",
    "applet": "html_object",
    "embed": "html_embed",
    "style": "html_style",
    # Template content is invisible to selectors but serialized back out, so it is the
    # one place a script would survive; the parser drops templates anyway.
    "template": "html_template",
}
_HTML_DROP_SELECTOR = ", ".join(_HTML_DROP)
_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:text/html")
_URL_NOISE = re.compile(r"[\x00-\x20]+")
# Re-parsing sanitized markup can surface markup the first parse saw as text (mutation
# XSS); sanitize until a pass finds nothing, or give up.
_HTML_PASSES = 4


# Browsers cap the tree at 512 levels too (Blink flattens below that).
_HTML_MAX_DEPTH = 512
_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][^\s/<>]*)([^<>]*)>?|<!--")
_HTML_VOID = frozenset(
    {
        "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image",
        "img", "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
    }
)  # fmt: skip
# Closed implicitly by their next sibling, so an unclosed run of them is not nesting.
_HTML_IMPLIED_END = frozenset(
    {
        "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb", "rt", "rp",
        "rtc", "tbody", "thead", "tfoot", "colgroup", "caption", "html", "head", "body",
    }
)  # fmt: skip
_HTML_RAW_TEXT = frozenset(
    {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"}
)


def _reject_deep_html(text: str) -> None:
    """Refuse absurd nesting before lexbor sees it.

    Lexbor checks the open-element stack for each block start tag, so its time grows with
    the count of such tags times the nesting depth: 50,000 nested <div>s take seconds,
    in this process. Counting depth is linear, approximate and errs towards deeper.
    """
    depth = 0
    skip_to = 0
    for match in _HTML_TAG.finditer(text):
        if match.start() < skip_to:
            continue
        if match.group(0) == "<!--":
            end = text.find("-->", match.end())
            skip_to = len(text) if end < 0 else end + 3
            continue
        closing, tag, rest = match.group(1), match.group(2).lower(), match.group(3)
        if tag in _HTML_VOID or tag in _HTML_IMPLIED_END:
            continue
        if closing:
            depth = max(0, depth - 1)
            continue
        if tag in _HTML_RAW_TEXT:
            close = re.compile(rf"</{re.escape(tag)}", re.I).search(text, match.end())
            skip_to = len(text) if close is None else close.end()
            continue
        if rest.endswith("/"):
            continue  # self-closing in SVG and MathML
        depth += 1
        if depth > _HTML_MAX_DEPTH:
            raise UploadRejected(
                "parse_failed",
                f"the HTML nests elements more than {_HTML_MAX_DEPTH} levels deep; "
                "it cannot be read safely",
            )


def _sanitize_html(text: str, stripped: set[str]) -> str:
    for _ in range(_HTML_PASSES):
        tree = LexborHTMLParser(text)
        found = _strip_html(tree)
        if not found:
            return text
        stripped |= found
        text = tree.html or ""
    raise UploadRejected(
        "active_content", "the HTML could not be cleaned of scripts; it is not accepted"
    )


def _strip_html(tree: LexborHTMLParser) -> set[str]:
    found: set[str] = set()
    # Selector results come in document order, so reversed a descendant always goes
    # before its ancestor: destroying the ancestor first would free nodes still listed.
    for node in reversed(tree.css(_HTML_DROP_SELECTOR)):
        tag = node.tag or ""
        found.add(_HTML_DROP.get(tag, f"html_{tag}"))
        node.decompose()
    for node in tree.css("meta[http-equiv]"):
        if (node.attributes.get("http-equiv") or "").strip().lower() == "refresh":
            found.add("html_meta_refresh")
            node.decompose()
    root = tree.root
    if root is None:
        return found
    for node in root.traverse():
        attributes = node.attributes
        if not attributes:
            continue
        for key, value in attributes.items():
            lowered = key.lower()
            if lowered.startswith("on"):
                found.add("html_event_handler")
            elif lowered == "srcdoc" or _is_script_url(value or ""):
                found.add("html_javascript_url")
            else:
                continue
            del node.attrs[key]
    return found


def _is_script_url(value: str) -> bool:
    # Browsers drop control characters and whitespace inside a URL scheme.
    return _URL_NOISE.sub("", value).lower().startswith(_SCRIPT_SCHEMES)


# --- Markdown and plain text -----------------------------------------------------------

# Bounded by "<" as well as ">" so a run of unterminated tags stays linear, not quadratic.
_MARKUP_OPEN = re.compile(r"<(script|style|iframe|object|applet|template)\b[^<>]*>?", re.I)
_MARKUP_TAG = re.compile(
    r"</?(script|style|iframe|frame|frameset|object|applet|embed|template)\b[^<>]*>?", re.I
)
# Quote-aware, because a browser keeps reading attributes past a ">" inside quotes.
_MARKUP_ELEMENT = re.compile(r"""<[a-zA-Z](?:[^<>"']|"[^"]*"|'[^']*')*>?""")
_EVENT_HANDLER = re.compile(r"""[\s/]on[a-z]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*)""", re.I)


def _obfuscatable(word: str) -> str:
    # Each letter may be written literally or as a numeric character reference, with
    # whitespace or control characters in between (browsers strip those from schemes).
    letters = []
    for ch in word:
        codes = {ord(ch.lower()), ord(ch.upper())}
        alternatives = [re.escape(ch)]
        alternatives += [rf"&\#0*{code};?" for code in codes]
        alternatives += [rf"&\#x0*{code:x};?" for code in codes]
        letters.append("(?:" + "|".join(alternatives) + ")")
    return r"[\s\x00-\x1f]*".join(letters)


_MARKUP_SCRIPT_URL = re.compile(
    # The lookahead lets the engine skip quickly to plausible starts (twice as fast).
    "(?=[jv&])(?:"
    + "|".join(_obfuscatable(scheme) for scheme in ("javascript", "vbscript"))
    + r")[\s\x00-\x1f]*(?::|&colon;|&\#0*58;?|&\#x0*3a;?)",
    re.I,
)


def _sanitize_markup(text: str, fmt: str, stripped: set[str]) -> str:
    """Markdown renderers pass raw HTML through, so script in a .md file runs when shown."""

    def block(match: re.Match[str]) -> str:
        stripped.add(f"{fmt}_{_markup_label(match.group(1))}")
        return ""

    def handlers(match: re.Match[str]) -> str:
        element = match.group(0)
        cleaned = _EVENT_HANDLER.sub(" ", element)
        if cleaned != element:
            stripped.add(f"{fmt}_event_handler")
        return cleaned

    text = _remove_markup_blocks(text, fmt, stripped)
    text = _MARKUP_TAG.sub(block, text)  # stray closing tags and void ones (<embed>)
    text = _MARKUP_ELEMENT.sub(handlers, text)
    text, count = _MARKUP_SCRIPT_URL.subn("", text)
    if count:
        stripped.add(f"{fmt}_javascript_url")
    return text


def _remove_markup_blocks(text: str, fmt: str, stripped: set[str]) -> str:
    """Drop <script>...</script> and friends, contents included.

    A loop rather than one lazy regex: `.*?` up to a missing close tag rescans to the end
    for every opening tag, which is quadratic on hostile input.
    """
    pieces: list[str] = []
    position = 0
    unclosed: set[str] = set()
    while (opening := _MARKUP_OPEN.search(text, position)) is not None:
        tag = opening.group(1).lower()
        closing = None
        if tag not in unclosed:
            closing = re.compile(rf"</{tag}\s*>", re.I).search(text, opening.end())
        if closing is None:
            unclosed.add(tag)  # no close after this one means none after any later one
        pieces.append(text[position : opening.start()])
        stripped.add(f"{fmt}_{_markup_label(tag)}")
        position = closing.end() if closing is not None else opening.end()
    pieces.append(text[position:])
    return "".join(pieces)


def _markup_label(tag: str) -> str:
    tag = tag.lower()
    return {"frame": "iframe", "frameset": "iframe", "applet": "object"}.get(tag, tag)


# --- PDF -------------------------------------------------------------------------------

# A name token: "/" then regular characters (PDF 32000-1, 7.2.2); "#xx" escapes decoded.
_PDF_NAME = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]*)")
_PDF_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_PDF_RECORDED = {
    b"JavaScript": "pdf_javascript",
    b"JS": "pdf_javascript",
    b"OpenAction": "pdf_open_action",
    b"AA": "pdf_additional_actions",
    b"XFA": "pdf_xfa",
}
_PDF_REFUSED = {
    b"Launch": "a Launch action, which can start programs",
    b"EmbeddedFile": "embedded files",
    b"EmbeddedFiles": "embedded files",
    b"RichMedia": "embedded rich media (Flash or video)",
}
# Short names collide with random bytes in compressed streams (about one hit per 16 MB),
# so they count only outside stream bodies. The long ones are safe to match anywhere,
# which also defeats a fake "stream" keyword planted to hide a dictionary from us; and an
# action always carries its long type name (/S /JavaScript, /S /Launch).
_PDF_SHORT = frozenset({b"JS", b"AA", b"XFA"})
_PDF_STREAM = re.compile(rb">>\s*stream(?:\r\n|\r|\n)")
_PDF_LENGTH = re.compile(rb"/Length\s+(\d+)(?!\d)(?!\s+\d+\s+R)")
_ZIP_END = b"PK\x05\x06"
# A ZIP reader looks for its end record in the last 64 KiB (+22 bytes of the record).
_ZIP_END_WINDOW = 65_557
_HTML_IN_TAIL = re.compile(rb"<(?:!doctype|html|script|svg|iframe)\b", re.I)


def _screen_pdf(data: bytes, limits: UploadLimits, stripped: set[str]) -> bytes:
    _reject_pdf_polyglot(data)
    bodies = list(_stream_bodies(data))
    starts = [start for start, _ in bodies]
    disarmed = bytearray(data)
    for match in _PDF_NAME.finditer(data):
        name = _pdf_name(match.group(1))
        if name in _PDF_REFUSED:
            _refuse_pdf(name)
        label = _PDF_RECORDED.get(name)
        if label is None:
            continue
        if name in _PDF_SHORT and _inside(match.start(), bodies, starts):
            continue
        if name == b"OpenAction" and _opens_at_page(data, match.end()):
            continue
        stripped.add(label)
        start, end = match.span(1)
        disarmed[start:end] = _swapcase_name(match.group(1))
    _scan_object_streams(data, bodies, limits, stripped)
    return bytes(disarmed)


def _reject_pdf_polyglot(data: bytes) -> None:
    if _ZIP_END in data[-_ZIP_END_WINDOW:]:
        raise UploadRejected(
            "polyglot",
            "the PDF also carries a ZIP archive; files that are two formats at once "
            "are not accepted",
        )
    end = data.rfind(b"%%EOF")
    if end < 0:
        return  # truncated; the parser reports it
    tail = data[end + 5 :].strip(b"\x00\t\n\x0c\r ")
    if not tail:
        return
    magic = _identify(tail, strong_only=False)
    embedded = any(m.signature in tail for m in _MAGICS if m.strong and len(m.signature) >= 4)
    if magic is not None or embedded or _PDF_HEADER.search(tail) or _HTML_IN_TAIL.search(tail):
        raise UploadRejected(
            "polyglot",
            "the PDF has another file appended after its end; files that are two formats "
            "at once are not accepted",
        )


def _opens_at_page(data: bytes, position: int) -> bool:
    # "/OpenAction [3 0 R /Fit]" only picks the first page and zoom: most generators write
    # it, and it runs nothing. A dictionary or a reference may hold an action.
    return data.startswith(b"[", _skip_space(data, position))


def _stream_bodies(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of every stream body, so names in binary data can be told apart."""
    position = 0
    while (match := _PDF_STREAM.search(data, position)) is not None:
        start = match.end()
        end = -1
        window = max(0, match.start() - 2048)
        window = max(window, data.rfind(b"obj", window, match.start()))
        length = _PDF_LENGTH.search(data, window, match.start())
        if length is not None:
            declared = start + int(length.group(1))
            if data.startswith(b"endstream", _skip_space(data, declared)):
                end = declared
        if end < 0:
            end = data.find(b"endstream", start)
            if end < 0:
                end = len(data)
        yield start, end
        position = max(end, start)


def _skip_space(data: bytes, position: int) -> int:
    while position < len(data) and data[position] in b"\x00\t\n\x0c\r ":
        position += 1
    return position


def _inside(position: int, bodies: list[tuple[int, int]], starts: list[int]) -> bool:
    index = bisect.bisect_right(starts, position) - 1
    return index >= 0 and position < bodies[index][1]


def _pdf_name(raw: bytes) -> bytes:
    if b"#" not in raw:
        return raw
    return _PDF_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def _swapcase_name(raw: bytes) -> bytes:
    """The same name with letter case swapped and the same byte length.

    Names are case-sensitive, so /jAVAsCRIPT is a key no viewer acts on, and keeping the
    length keeps every xref offset valid (the trick of pdfid's --disarm).
    """
    out = bytearray()
    index = 0
    while index < len(raw):
        escape = _PDF_ESCAPE.match(raw, index)
        if escape is not None:
            char = bytes([int(escape.group(1), 16)]).swapcase()
            out += b"#%02X" % char[0]
            index = escape.end()
        else:
            out += raw[index : index + 1].swapcase()
            index += 1
    return bytes(out)


def _scan_object_streams(
    data: bytes, bodies: list[tuple[int, int]], limits: UploadLimits, stripped: set[str]
) -> None:
    """Names packed into compressed object streams (PDF 1.5+) never appear in the raw bytes."""
    budget = limits.max_expanded_bytes
    for start, end in bodies:
        head = data[max(0, start - 2048) : start]
        head = head[head.rfind(b"obj") + 1 :]
        names = {_pdf_name(m.group(1)) for m in _PDF_NAME.finditer(head)}
        if b"ObjStm" not in names or b"FlateDecode" not in names or b"DecodeParms" in names:
            continue
        inflater = zlib.decompressobj()
        try:
            content = inflater.decompress(data[start:end], budget + 1)
        except zlib.error:
            continue  # unreadable for us, and for the parser, which will say so
        budget -= len(content)
        if budget < 0:
            raise UploadRejected(
                "archive_bomb",
                "the PDF's compressed object streams expand to more than "
                f"{_size(limits.max_expanded_bytes)}",
            )
        for match in _PDF_NAME.finditer(content):
            name = _pdf_name(match.group(1))
            if name in _PDF_REFUSED:
                _refuse_pdf(name)
            if name in _PDF_RECORDED:
                stripped.add(_PDF_RECORDED[name])


def _refuse_pdf(name: bytes) -> NoReturn:
    raise UploadRejected(
        "active_content", f"the PDF contains {_PDF_REFUSED[name]}; such PDFs are not accepted"
    )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
