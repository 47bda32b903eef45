"""HTML: the page's main text only, sectioned by h1-h6 like markdown."""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats.markdown import Outline, section_drafts
from tether.ingest.formats.textsplit import collapse_spaces, decode_utf8, normalize_newlines

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:\-]+)", re.I)

_DROP_SELECTORS = ", ".join(
    (
        "script", "style", "noscript", "template", "svg", "iframe", "nav", "aside", "form",
        "button", "footer", "[role=navigation]", "[role=banner]", "[role=contentinfo]",
        "[aria-hidden=true]",
    )
)  # fmt: skip

_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_TEXT_BLOCKS = frozenset({"p", "li", "blockquote", "dd", "dt", "figcaption", "caption"})
_INLINE = frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "data", "del", "dfn", "em", "i",
        "img", "ins", "kbd", "label", "mark", "q", "s", "samp", "small", "span", "strong",
        "sub", "sup", "time", "u", "var", "wbr", "-text",
    }
)  # fmt: skip


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    tree = LexborHTMLParser(_decode(data))
    title_node = tree.css_first("title")
    page_title = collapse_spaces(title_node.text()) if title_node is not None else ""
    _drop_boilerplate(tree)
    outline = Outline()
    root = _main_root(tree)
    if root is not None:
        _walk(root, outline)
    drafts: list[ChunkDraft] = []
    for section in outline.sections:
        drafts.extend(section_drafts(section, options))
    if not drafts:
        raise EmptyDocument("no text found")
    return ParsedDocument(title=page_title or outline.first_h1, drafts=drafts)


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _decode_as(data, "utf-16")
    if not data.startswith(b"\xef\xbb\xbf"):
        declared = _META_CHARSET.search(data[:4096])
        if declared is not None:
            try:
                codec = codecs.lookup(declared.group(1).decode("ascii")).name
            except LookupError:
                codec = "utf-8"
            # Browsers read a declared latin-1/ascii page as windows-1252; so must we.
            if codec in ("iso8859-1", "ascii"):
                codec = "cp1252"
            if codec != "utf-8":
                return _decode_as(data, codec)
    return normalize_newlines(decode_utf8(data))


def _decode_as(data: bytes, codec: str) -> str:
    try:
        return normalize_newlines(data.decode(codec))
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(
            f"not valid {codec} (invalid byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _drop_boilerplate(tree: LexborHTMLParser) -> None:
    for node in tree.css(_DROP_SELECTORS):
        node.decompose()
    for header in tree.css("header"):
        # Inside an article or main a header carries the article's own h1 and byline;
        # only the page-level header is a banner.
        if not _has_ancestor(header, ("article", "main")):
            header.decompose()


def _has_ancestor(node: LexborNode, tags: tuple[str, ...]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.parent
    return False


def _main_root(tree: LexborHTMLParser) -> LexborNode | None:
    main = tree.css_first("main") or tree.css_first("[role=main]")
    if main is not None:
        return main
    # Several articles means an index page; picking the first would drop the rest.
    articles = tree.css("article")
    if len(articles) == 1:
        return articles[0]
    return tree.body


def _walk(root: LexborNode, outline: Outline) -> None:
    # An explicit stack, not recursion: hostile pages nest thousands of divs deep.
    run: list[str] = []
    stack = [root.iter(include_text=True)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            _flush(run, outline)
            continue
        tag = child.tag or ""
        if tag == "-text":
            run.append(child.text_content or "")
        elif tag in _HEADINGS:
            _flush(run, outline)
            outline.heading(_HEADINGS[tag], _inline_text(child))
        elif tag == "pre":
            _flush(run, outline)
            outline.add_block(child.text(separator="").strip("\n"), is_code=True)
        elif tag == "tr":
            _flush(run, outline)
            cells = [_inline_text(cell) for cell in child.iter() if cell.tag in ("td", "th")]
            outline.add_block(" | ".join(cell for cell in cells if cell), is_code=False)
        elif tag in _TEXT_BLOCKS:
            _flush(run, outline)
            outline.add_block(_inline_text(child), is_code=False)
        elif tag in _INLINE and not _contains_block(child):
            run.append(" " if tag == "br" else child.text(separator=""))
        else:
            _flush(run, outline)
            stack.append(child.iter(include_text=True))


def _flush(run: list[str], outline: Outline) -> None:
    text = collapse_spaces("".join(run))
    run.clear()
    if text:
        outline.add_block(text, is_code=False)


def _contains_block(node: LexborNode) -> bool:
    descendants = node.traverse(include_text=True)
    next(descendants, None)  # traverse() yields the node itself first
    return any((desc.tag or "-text") not in _INLINE for desc in descendants)


def _inline_text(node: LexborNode) -> str:
    """Text with a space wherever a non-inline boundary would otherwise glue words."""
    parts: list[str] = []
    for desc in node.traverse(include_text=True):
        if desc.tag == "-text":
            parts.append(desc.text_content or "")
        elif desc.tag not in _INLINE or desc.tag == "br":
            parts.append(" ")
    return collapse_spaces("".join(parts))
