"""JS/TS, Go, Rust and Java source by symbol, parsed with tree-sitter.

The same shape as formats/python.py: one chunk per top-level symbol, a big class-like
symbol split per method under its header line, loose top-level statements gathered into
"module" chunks, and every chunk prefixed by the import lines whose names it uses.
`symbol_drafts` returns None when it can't do better than the block splitter in
formats/code.py: an unsupported language, or a file in which no symbol was found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import Literal, TypeAlias

import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript
import tree_sitter_rust
import tree_sitter_typescript
from tree_sitter import Language, Node, Parser

from tether.ingest.drafts import ChunkDraft, ChunkOptions, code_draft

SymbolKind = Literal[
    "function", "method", "class", "interface", "type", "enum", "struct", "trait", "impl",
    "macro", "module",
]  # fmt: skip

_GRAMMARS: dict[str, Callable[[], object]] = {
    "javascript": tree_sitter_javascript.language,
    "typescript": tree_sitter_typescript.language_typescript,
    "tsx": tree_sitter_typescript.language_tsx,
    "go": tree_sitter_go.language,
    "rust": tree_sitter_rust.language,
    "java": tree_sitter_java.language,
}
_GRAMMAR_BY_SUFFIX: dict[str, str] = {
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust", ".java": "java",
}  # fmt: skip

# Below this many non-blank characters the loose top-level statements aren't worth a chunk.
_TRIVIAL_MODULE_CHARS = 40
_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
# Nodes that belong to the declaration right below them (doc comments, Rust #[attributes]).
_LEADING = _COMMENTS | {"attribute_item"}
# Leaves that can refer to an imported name. Property and field names (`x.foo`) can't.
_NAME_TYPES = frozenset(
    {"identifier", "type_identifier", "package_identifier", "shorthand_property_identifier"}
)
_METHODS = frozenset(
    {
        "method_definition", "method_signature", "abstract_method_signature",  # JS/TS
        "function_item", "function_signature_item",  # Rust
        "method_declaration", "constructor_declaration", "compact_constructor_declaration",  # Java
    }
)  # fmt: skip
_JS_FUNCTIONS = frozenset(
    {
        "function_declaration", "generator_function_declaration", "function_signature",
        "function_expression", "function", "generator_function", "arrow_function",
    }
)  # fmt: skip
_JS_CLASSES = frozenset({"class_declaration", "abstract_class_declaration", "class"})
_WORD = re.compile(r"[A-Za-z_$][\w$]*")


def symbol_drafts(
    source: str, *, name: str, language: str, options: ChunkOptions
) -> list[ChunkDraft] | None:
    """Chunks by symbol, or None to let the caller fall back to plain blocks."""
    grammar = _GRAMMAR_BY_SUFFIX.get(PurePath(name).suffix.lower())
    if grammar is None:
        return None
    data = source.encode("utf-8")
    tree = Parser(_language(grammar)).parse(data)
    try:
        return _File(data, grammar, name, language, options).drafts(tree.root_node)
    except RecursionError:  # absurdly nested classes; plain blocks still keep the text
        return None


@cache
def _language(grammar: str) -> Language:
    return Language(_GRAMMARS[grammar]())


@dataclass(frozen=True)
class _Symbol:
    name: str
    kind: SymbolKind
    #: Where the members of a class-like symbol live, to split it when it is too big.
    body: Node | None = None


_IMPORT: Literal["import"] = "import"
_Found: TypeAlias = _Symbol | Literal["import"] | None


@dataclass(frozen=True)
class _Import:
    """One name an import binds: `alone` imports just it, `statement` is the original."""

    bound: str
    alone: str
    statement: str
    #: How many names the statement binds; when a chunk uses all of them it gets `statement`.
    siblings: int


@dataclass(frozen=True)
class _Item:
    """A declaration (`main`) with the comments and attributes attached to it."""

    main: Node
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class _Piece:
    """Source text, its 1-based line range, and the names it refers to (to pick imports)."""

    text: str
    start: int
    end: int
    names: frozenset[str]


class _File:
    def __init__(
        self, data: bytes, grammar: str, name: str, language: str, options: ChunkOptions
    ) -> None:
        self.data = data
        self.grammar = grammar
        self.name = name
        self.language = language
        self.options = options
        self.imports: list[_Import] = []
        self.damaged = False

    def drafts(self, root: Node) -> list[ChunkDraft] | None:
        # A damaged parse keeps every line: imports and leftovers go to "module" chunks too,
        # and a class-like symbol holding the damage isn't split (its closing brace stays).
        self.damaged = root.has_error
        items = _items(root.children)
        found = [(item, self.classify(item.main)) for item in items]
        self.imports = [
            imp for item, f in found if f == _IMPORT for imp in self.bindings(item.main)
        ]
        loose: list[_Piece] = []
        symbols: list[ChunkDraft] = []
        for item, what in found:
            if isinstance(what, _Symbol):
                symbols.extend(self.symbol(item, what, what.name))
            elif what is None or self.damaged:
                loose.append(self.piece(item.nodes))
            elif item.nodes[0] != item.main:  # a file header comment right above the imports
                loose.append(self.piece(item.nodes[: item.nodes.index(item.main)]))
        if not symbols:
            return None
        return self.module(loose) + symbols

    # -- chunks ---------------------------------------------------------------------------

    def symbol(
        self, item: _Item, symbol: _Symbol, qualname: str, header: _Piece | None = None
    ) -> list[ChunkDraft]:
        """The symbol whole if it fits (functions always), else one chunk per member."""
        whole = _under(header, self.piece(item.nodes))
        body = symbol.body
        if (
            body is None
            or (self.damaged and item.main.has_error)
            or len(whole.text) + len(self.import_lines(whole)) <= self.options.max_chars
        ):
            return [self.draft(whole, qualname, symbol.kind)]
        # Method chunks repeat only the declaration line(s); the doc comment or attributes
        # above it go once, into the chunk with the class's own fields.
        head = _under(header, self.header([item.main], body))
        intro = _under(header, self.header(item.nodes, body))
        loose: list[_Piece] = []
        members: list[tuple[_Item, _Symbol]] = []
        for member in _items(_members(body)):
            found = self.member(member.main, symbol)
            if found is None:
                loose.append(self.piece(member.nodes))
            else:
                members.append((member, found))
        groups = _group(loose, self.options.max_chars - len(intro.text) - 1)
        drafts = [
            self.draft(_under(intro if i == 0 else head, group), qualname, symbol.kind)
            for i, group in enumerate(groups)
        ]
        if not groups and intro.text != head.text:
            drafts.append(self.draft(intro, qualname, symbol.kind))
        for member, found in members:
            drafts.extend(self.symbol(member, found, f"{qualname}.{found.name}", head))
        return drafts

    def module(self, loose: list[_Piece]) -> list[ChunkDraft]:
        """Loose top-level statements (constants, package line, side effects) as "module"."""
        if not loose or (
            not self.damaged
            and sum(len("".join(p.text.split())) for p in loose) < _TRIVIAL_MODULE_CHARS
        ):
            return []
        limit = self.options.max_chars
        pieces = [cut for piece in loose for cut in _cut(piece, limit)]
        symbol = PurePath(self.name).stem or "module"
        return [self.draft(group, symbol, "module") for group in _group(pieces, limit)]

    def draft(self, piece: _Piece, symbol: str, kind: SymbolKind) -> ChunkDraft:
        return code_draft(
            piece.text,
            imports=self.import_lines(piece),
            file=self.name,
            symbol=symbol,
            symbol_kind=kind,
            line_start=piece.start,
            line_end=piece.end,
            language=self.language,
        )

    def import_lines(self, piece: _Piece) -> str:
        """The imports of the names the piece uses, like python.py: `import { a, b }` is
        repeated as is when both are used, as `import { a }` when only a is."""
        used: dict[str, list[_Import]] = {}
        for imp in self.imports:
            # A damaged file's module chunk already carries its import statements.
            if imp.bound in piece.names and imp.statement not in piece.text:
                used.setdefault(imp.statement, []).append(imp)
        lines: list[str] = []
        for statement, imports in used.items():
            whole = len({imp.bound for imp in imports}) == imports[0].siblings
            for line in [statement] if whole else [imp.alone for imp in imports]:
                if line not in lines:
                    lines.append(line)
        return "\n".join(lines)

    def piece(self, nodes: Sequence[Node]) -> _Piece:
        lo, hi = self.line_start(nodes[0]), self.line_end(nodes[-1])
        names = _names(self.data, nodes)
        return _Piece(self.text(lo, hi), nodes[0].start_point.row + 1, _last_row(nodes[-1]), names)

    def header(self, nodes: Sequence[Node], body: Node) -> _Piece:
        """From the first node's line through the opening brace of the body."""
        lo, hi = self.line_start(nodes[0]), body.start_byte + 1
        names = _names(self.data, nodes, lo, hi)
        return _Piece(
            self.text(lo, hi), nodes[0].start_point.row + 1, body.start_point.row + 1, names
        )

    def line_start(self, node: Node) -> int:
        """Start at the beginning of the line when only indentation precedes the node."""
        lo = node.start_byte - node.start_point.column
        return lo if not self.data[lo : node.start_byte].strip() else node.start_byte

    def line_end(self, node: Node) -> int:
        """Take the `;` or `,` a grammar leaves outside the node (`x = 1;` in a class)."""
        newline = self.data.find(b"\n", node.end_byte)
        hi = len(self.data) if newline < 0 else newline
        return hi if self.data[node.end_byte : hi].strip() in (b";", b",") else node.end_byte

    def text(self, lo: int, hi: int) -> str:
        return self.data[lo:hi].decode("utf-8", errors="replace").rstrip()

    def node_text(self, node: Node | None) -> str:
        return "" if node is None else self.text(node.start_byte, node.end_byte)

    # -- what a node is -------------------------------------------------------------------

    def classify(self, node: Node) -> _Found:
        if self.grammar == "go":
            return self.go(node)
        if self.grammar == "rust":
            return self.rust(node)
        if self.grammar == "java":
            return self.java(node)
        return self.js(node)

    def member(self, node: Node, container: _Symbol) -> _Symbol | None:
        """Methods and nested class-likes get their own chunk; fields stay with the header."""
        found = self.classify(node)
        if container.kind == "module":  # a Rust `mod { ... }` holds top-level items
            return found if isinstance(found, _Symbol) else None
        if node.type in _METHODS:
            return _Symbol(self.node_text(node.child_by_field_name("name")) or "?", "method")
        return found if isinstance(found, _Symbol) and found.body is not None else None

    def js(self, node: Node) -> _Found:
        if node.type == "import_statement" or (
            node.type in ("lexical_declaration", "variable_declaration") and self.requires(node)
        ):
            return _IMPORT
        if node.type == "export_statement":
            # `export function f`, `export class C`, `export default ...` are what they wrap.
            inner = node.child_by_field_name("declaration") or node.child_by_field_name("value")
            return None if inner is None else self.js_declaration(inner, "default")
        return self.js_declaration(node, None)

    def js_declaration(self, node: Node, default: str | None) -> _Symbol | None:
        if node.type == "ambient_declaration":  # TS `declare function f(): void;`
            inner = node.named_children[0] if node.named_child_count else None
            return None if inner is None else self.js_declaration(inner, default)
        if node.type in ("lexical_declaration", "variable_declaration"):
            # `const f = () => ...` is a function; `const api = new Client()` is loose.
            declarators = [c for c in node.named_children if c.type == "variable_declarator"]
            if len(declarators) != 1:
                return None
            target = declarators[0].child_by_field_name("name")
            value = declarators[0].child_by_field_name("value")
            if target is None or value is None or target.type != "identifier":
                return None
            if value.type in _JS_FUNCTIONS:
                return _Symbol(self.node_text(target), "function")
            if value.type in _JS_CLASSES:
                return _Symbol(self.node_text(target), "class", _body(value))
            return None
        name = self.node_text(node.child_by_field_name("name")) or default
        if not name:
            return None
        if node.type in _JS_FUNCTIONS:
            return _Symbol(name, "function")
        if node.type in _JS_CLASSES:
            return _Symbol(name, "class", _body(node))
        if node.type == "interface_declaration":
            return _Symbol(name, "interface", _body(node))
        if node.type == "type_alias_declaration":
            return _Symbol(name, "type")
        if node.type == "enum_declaration":
            return _Symbol(name, "enum")
        return None

    def requires(self, node: Node) -> bool:
        """`const x = require("x")`, `const { a } = require("x").a`: CommonJS imports."""
        values = [d.child_by_field_name("value") for d in node.named_children]
        return bool(values) and all(v is not None and self.is_require(v) for v in values)

    def is_require(self, node: Node) -> bool:
        while node.type == "member_expression":
            target = node.child_by_field_name("object")
            if target is None:
                break
            node = target
        if node.type != "call_expression":
            return False
        return self.node_text(node.child_by_field_name("function")) in ("require", "import")

    def go(self, node: Node) -> _Found:
        if node.type == "import_declaration":
            return _IMPORT
        name = self.node_text(node.child_by_field_name("name"))
        if node.type == "function_declaration":
            return _Symbol(name, "function")
        if node.type == "method_declaration":
            # `func (s *Store) Get(...)` is `Store.Get`.
            receiver = _first(node.child_by_field_name("receiver"), "type_identifier")
            return _Symbol(f"{self.node_text(receiver)}.{name}" if receiver else name, "method")
        if node.type == "type_declaration":
            specs = [c for c in node.named_children if c.type in ("type_spec", "type_alias")]
            if not specs:
                return None
            shape = specs[0].child_by_field_name("type") if len(specs) == 1 else None
            kind: SymbolKind = "type"
            if shape is not None and shape.type in ("struct_type", "interface_type"):
                kind = "struct" if shape.type == "struct_type" else "interface"
            names = ", ".join(self.node_text(s.child_by_field_name("name")) for s in specs)
            return _Symbol(names, kind)
        return None

    def rust(self, node: Node) -> _Found:
        kinds: dict[str, SymbolKind] = {
            "function_item": "function", "function_signature_item": "function",
            "struct_item": "struct", "union_item": "struct", "enum_item": "enum",
            "trait_item": "trait", "impl_item": "impl", "type_item": "type",
            "macro_definition": "macro", "mod_item": "module",
        }  # fmt: skip
        if node.type == "use_declaration":
            return _IMPORT
        kind = kinds.get(node.type)
        body = node.child_by_field_name("body")
        if kind is None or (kind == "module" and body is None):  # `mod x;` is just a line
            return None
        if kind == "impl":  # `impl<T> Display for Ledger<T>` is `Ledger`
            target = node.child_by_field_name("type")
            name = self.node_text(_first(target, "type_identifier") or target)
        else:
            name = self.node_text(node.child_by_field_name("name"))
        return _Symbol(name, kind, body if kind in ("impl", "trait", "module") else None)

    def java(self, node: Node) -> _Found:
        kinds: dict[str, SymbolKind] = {
            "class_declaration": "class", "record_declaration": "class",
            "interface_declaration": "interface", "annotation_type_declaration": "interface",
            "enum_declaration": "enum",
        }  # fmt: skip
        if node.type == "import_declaration":
            return _IMPORT
        kind = kinds.get(node.type)
        if kind is None:
            return None
        return _Symbol(self.node_text(node.child_by_field_name("name")), kind, _body(node))

    # -- imports --------------------------------------------------------------------------

    def bindings(self, node: Node) -> list[_Import]:
        """The names an import statement binds, each with a line importing just it."""
        if self.grammar == "go":
            pairs = [
                (self.go_binding(spec), f"import {self.node_text(spec)}")
                for spec in _descendants(node)
                if spec.type == "import_spec"
            ]
        elif self.grammar == "rust":
            pairs = [
                (bound, f"use {path};")
                for bound, path in self.rust_bindings(node.child_by_field_name("argument"), "")
            ]
        elif self.grammar == "java":
            target = _first(node, "scoped_identifier")
            star = any(c.type == "asterisk" for c in node.children)
            name = target.child_by_field_name("name") if target and not star else None
            pairs = [(self.node_text(name), self.node_text(node))]
        else:
            pairs = list(self.js_bindings(node))
        statement = self.node_text(node)
        pairs = [(bound, alone) for bound, alone in pairs if bound]
        return [_Import(bound, alone, statement, len(pairs)) for bound, alone in pairs]

    def js_bindings(self, node: Node) -> Iterator[tuple[str, str]]:
        statement = self.node_text(node)
        if node.type != "import_statement":  # CommonJS: every name the pattern declares
            for declarator in node.named_children:
                for leaf in _descendants(declarator.child_by_field_name("name")):
                    if leaf.type in ("identifier", "shorthand_property_identifier_pattern"):
                        yield self.node_text(leaf), statement
            return
        source = self.node_text(node.child_by_field_name("source"))
        keyword = "import type" if any(c.type == "type" for c in node.children) else "import"
        for clause in node.named_children:
            if clause.type == "import_require_clause":  # TS `import fs = require("fs")`
                yield self.node_text(_first(clause, "identifier")), statement
            if clause.type != "import_clause":
                continue
            for part in clause.named_children:
                if part.type == "identifier":  # default import
                    yield self.node_text(part), f"{keyword} {self.node_text(part)} from {source};"
                elif part.type == "namespace_import":  # `* as ns`
                    bound = self.node_text(_first(part, "identifier"))
                    yield bound, f"{keyword} {self.node_text(part)} from {source};"
                elif part.type == "named_imports":  # `{ a, b as c }`
                    for spec in part.named_children:
                        name = spec.child_by_field_name("alias") or spec.child_by_field_name("name")
                        alone = f"{keyword} {{ {self.node_text(spec)} }} from {source};"
                        yield self.node_text(name), alone

    def go_binding(self, spec: Node) -> str:
        alias = self.node_text(spec.child_by_field_name("name"))
        if alias in (".", "_"):  # dot imports bind everything, blank ones nothing we can see
            return ""
        if alias:
            return alias
        path = self.node_text(spec.child_by_field_name("path")).strip('"`')
        parts = path.split("/")
        if len(parts) > 1 and re.fullmatch(r"v\d+", parts[-1]):  # github.com/x/y/v2 is y
            parts.pop()
        package = re.sub(r"\.v\d+$", "", parts[-1])  # gopkg.in/yaml.v3 is yaml
        return package.removeprefix("go-").removesuffix("-go")

    def rust_bindings(self, node: Node | None, prefix: str) -> Iterator[tuple[str, str]]:
        """(name, path) pairs: `use a::b::C` binds C, `use a::{B, C as D}` B and D as
        `a::B` and `a::C as D`, `use a::{self}` a; globs bind nothing we can see."""
        if node is None or node.type == "use_wildcard":
            return
        path = prefix + self.node_text(node)
        if node.type == "scoped_identifier":
            yield self.node_text(node.child_by_field_name("name")), path
        elif node.type == "use_as_clause":
            yield self.node_text(node.child_by_field_name("alias")), path
        elif node.type == "scoped_use_list":
            inner = f"{prefix}{self.node_text(node.child_by_field_name('path'))}::"
            yield from self.rust_bindings(node.child_by_field_name("list"), inner)
        elif node.type == "use_list":
            for child in node.named_children:
                if child.type == "self" and prefix:
                    yield prefix.removesuffix("::").rsplit("::", 1)[-1], prefix.removesuffix("::")
                else:
                    yield from self.rust_bindings(child, prefix)
        elif node.type in ("identifier", "type_identifier"):
            yield self.node_text(node), path


def _items(children: Iterable[Node]) -> list[_Item]:
    """Attach comments (and Rust attributes) to the declaration right below them.

    A comment on the same line as the end of a declaration stays with that declaration;
    comments separated from the next declaration by a blank line stand alone.
    """
    items: list[_Item] = []
    pending: list[Node] = []
    for node in children:
        if not node.is_named:
            continue
        if pending and node.start_point.row > _last_row(pending[-1]):
            items.append(_Item(pending[-1], tuple(pending)))  # a blank line ends the run
            pending = []
        if (
            node.type in _COMMENTS
            and not pending
            and items
            and node.start_point.row + 1 == _last_row(items[-1].nodes[-1])
        ):
            items[-1] = _Item(items[-1].main, (*items[-1].nodes, node))
        elif node.type in _LEADING:
            pending.append(node)
        else:
            items.append(_Item(node, (*pending, node)))
            pending = []
    if pending:
        items.append(_Item(pending[-1], tuple(pending)))
    return items


def _members(body: Node) -> Iterator[Node]:
    for child in body.children:
        if child.type == "enum_body_declarations":  # a Java enum's fields and methods
            yield from child.children
        else:
            yield child


def _under(header: _Piece | None, piece: _Piece) -> _Piece:
    """The piece prefixed by its class header; line numbers stay the piece's own."""
    if header is None:
        return piece
    return _Piece(
        f"{header.text}\n{piece.text}", piece.start, piece.end, header.names | piece.names
    )


def _group(pieces: list[_Piece], max_chars: int) -> list[_Piece]:
    """Merge consecutive pieces up to max_chars; an oversize piece stays whole."""
    groups: list[_Piece] = []
    for piece in pieces:
        last = groups[-1] if groups else None
        if last is not None and len(last.text) + 1 + len(piece.text) <= max_chars:
            groups[-1] = _Piece(
                f"{last.text}\n{piece.text}", last.start, piece.end, last.names | piece.names
            )
        else:
            groups.append(piece)
    return groups


def _cut(piece: _Piece, limit: int) -> list[_Piece]:
    """Cut an oversize loose piece (a huge literal, a damaged region) between lines.

    A cut keeps the piece's names that appear as words in its own text.
    """
    if len(piece.text) <= limit:
        return [piece]
    cuts: list[_Piece] = []
    lines: list[str] = []
    size = first = last = 0

    def flush() -> None:
        text = "\n".join(lines).rstrip()
        if text:
            names = piece.names & frozenset(_WORD.findall(text))
            cuts.append(_Piece(text, first, last, names))

    for number, line in enumerate(piece.text.split("\n"), start=piece.start):
        for i in range(0, max(len(line), 1), limit):  # minified lines are hard cut
            segment = line[i : i + limit]
            if lines and size + 1 + len(segment) > limit:
                flush()
                lines.clear()
            if not lines:
                if not segment.strip():
                    continue
                first, size = number, -1
            lines.append(segment)
            size += 1 + len(segment)
            if segment.strip():
                last = number
    flush()
    return cuts


def _names(
    data: bytes, nodes: Iterable[Node], lo: int = 0, hi: int | None = None
) -> frozenset[str]:
    """Identifiers inside the nodes (and the byte range lo..hi): the names a chunk uses."""
    names: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node.end_byte <= lo or (hi is not None and node.start_byte >= hi):
            continue
        if node.type in _NAME_TYPES:
            names.add(data[node.start_byte : node.end_byte].decode("utf-8", errors="replace"))
        elif node.child_count:
            stack.extend(node.children)
    return frozenset(names)


def _descendants(node: Node | None) -> Iterator[Node]:
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _first(node: Node | None, kind: str) -> Node | None:
    return next((d for d in _descendants(node) if d.type == kind), None)


def _body(node: Node) -> Node | None:
    return node.child_by_field_name("body")


def _last_row(node: Node) -> int:
    """1-based last line; a node ending at column 0 (a Rust `//` comment) ends a line up."""
    row, column = node.end_point
    return row if column == 0 and row > node.start_point.row else row + 1
