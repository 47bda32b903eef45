"""Markdown and plain text: heading-aware sections packed into paragraph chunks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tether.errors import EmptyDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats.textsplit import (
    collapse_spaces,
    decode_utf8,
    normalize_newlines,
    normalize_whitespace,
    pack_paragraphs,
    split_paragraphs,
)

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]")
_FRONT_TITLE = re.compile(r"^title:\s*(.+?)\s*$")


@dataclass
class Heading:
    level: int
    title: str
    has_content: bool = False


@dataclass
class Section:
    path: list[str]
    blocks: list[tuple[str, bool]] = field(default_factory=list)  # (text, is_code)


@dataclass
class Outline:
    """Collects headings and blocks into sections, folding empty headings into later paths.

    Shared with the HTML parser so both formats build section paths the same way.
    """

    stack: list[Heading] = field(default_factory=list)
    # Headings popped before any content appeared under them; they would otherwise vanish.
    orphans: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    open_section: Section | None = None
    paragraph: list[str] = field(default_factory=list)
    first_h1: str | None = None

    def heading(self, level: int, title: str) -> None:
        self.flush_paragraph()
        while self.stack and self.stack[-1].level >= level:
            popped = self.stack.pop()
            if not popped.has_content:
                self.orphans.append(popped.title)
        self.stack.append(Heading(level, title))
        self.open_section = None
        if level == 1 and self.first_h1 is None:
            self.first_h1 = title

    def add_block(self, text: str, *, is_code: bool) -> None:
        if not text.strip():
            return
        if self.open_section is None:
            parents = [h.title for h in self.stack[:-1]]
            own = [self.stack[-1].title] if self.stack else []
            self.open_section = Section(path=[*parents, *self.orphans, *own])
            self.sections.append(self.open_section)
            self.orphans = []
        for heading in self.stack:
            heading.has_content = True
        self.open_section.blocks.append((text, is_code))

    def flush_paragraph(self) -> None:
        if self.paragraph:
            self.add_block("\n".join(self.paragraph), is_code=False)
            self.paragraph = []


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    lines = normalize_newlines(decode_utf8(data)).split("\n")
    front_title, lines = _strip_front_matter(lines)
    outline = _outline(lines)
    drafts: list[ChunkDraft] = []
    for section in outline.sections:
        drafts.extend(section_drafts(section, options))
    if not drafts:
        raise EmptyDocument("no text found")
    return ParsedDocument(title=front_title or outline.first_h1, drafts=drafts)


def parse_text(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    """Plain text has no structure to honour beyond blank-line paragraphs."""
    paragraphs = split_paragraphs(normalize_whitespace(decode_utf8(data)))
    chunks = pack_paragraphs(paragraphs, options.max_chars, options.overlap_chars)
    if not chunks:
        raise EmptyDocument("no text found")
    return ParsedDocument(title=None, drafts=[ChunkDraft(text=chunk) for chunk in chunks])


def _strip_front_matter(lines: list[str]) -> tuple[str | None, list[str]]:
    if not lines or lines[0].strip() != "---":
        return None, lines
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            title = None
            for line in lines[1:end]:
                match = _FRONT_TITLE.match(line)
                if match:
                    title = match.group(1).strip("\"'") or None
                    break
            return title, lines[end + 1 :]
    return None, lines


def _outline(lines: list[str]) -> Outline:
    outline = Outline()
    fence: list[str] = []
    fence_marker = ""
    for line in lines:
        if fence_marker:
            fence.append(line.rstrip())
            stripped = line.strip()
            if stripped.startswith(fence_marker) and not stripped.strip(fence_marker[0]):
                outline.add_block("\n".join(fence), is_code=True)
                fence, fence_marker = [], ""
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            outline.flush_paragraph()
            fence, fence_marker = [line.rstrip()], opening.group(1)
            continue
        atx = _ATX.match(line)
        if atx:
            outline.heading(len(atx.group(1)), collapse_spaces(atx.group(2) or ""))
            continue
        if not line.strip():
            outline.flush_paragraph()
            continue
        setext = _SETEXT.match(line)
        if setext and outline.paragraph and not _LIST_ITEM.match(outline.paragraph[0]):
            title = collapse_spaces(" ".join(outline.paragraph))
            outline.paragraph = []
            outline.heading(1 if setext.group(1)[0] == "=" else 2, title)
            continue
        if _THEMATIC.match(line):
            outline.flush_paragraph()
            continue
        outline.paragraph.append(
            collapse_spaces(line) if not _LIST_ITEM.match(line) else line.rstrip()
        )
    if fence:
        # An unclosed fence runs to the end of the file, as CommonMark renders it.
        outline.add_block("\n".join(fence), is_code=True)
    outline.flush_paragraph()
    return outline


def section_drafts(section: Section, options: ChunkOptions) -> list[ChunkDraft]:
    """Chunks of one section, each opening with the section's own heading line."""
    # The heading is repeated in every chunk, so a pathological heading must not eat the budget.
    heading = section.path[-1][: options.max_chars // 4] if section.path else ""
    budget = options.max_chars - (len(heading) + 1 if heading else 0)
    bodies: list[str] = []
    run: list[str] = []
    for text, is_code in section.blocks:
        if is_code and len(text) > budget:
            bodies.extend(pack_paragraphs(run, budget, options.overlap_chars))
            run = []
            # Kept whole even past max_chars: half a fenced block is neither readable nor runnable.
            bodies.append(text)
        else:
            run.append(text)
    bodies.extend(pack_paragraphs(run, budget, options.overlap_chars))
    path = " > ".join(section.path)
    return [
        ChunkDraft(
            text=f"{heading}\n{body}" if heading else body,
            section=path,
            metadata={"headings": list(section.path)},
        )
        for body in bodies
    ]
