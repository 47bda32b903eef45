"""Python source: one chunk per top-level symbol, each carrying the imports it uses."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal, TypeAlias

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument, code_draft
from tether.ingest.formats.textsplit import decode_utf8, normalize_newlines

SymbolKind = Literal["function", "class", "method", "module"]
_Def: TypeAlias = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
# Below this many non-blank characters the module's loose statements aren't worth a chunk.
_TRIVIAL_MODULE_CHARS = 40


@dataclass(frozen=True)
class _Import:
    bound: str
    statement: ast.Import | ast.ImportFrom
    alias: ast.alias


@dataclass(frozen=True)
class _Piece:
    """A run of source lines plus the AST nodes whose names decide the imports it needs."""

    text: str
    start: int
    end: int
    nodes: tuple[ast.AST, ...]


class _Module:
    """The parsed file: its lines and imports, and how to turn a piece into a draft."""

    def __init__(self, source: str, tree: ast.Module, name: str, options: ChunkOptions) -> None:
        self.lines = source.split("\n")
        self.imports = _collect_imports(tree)
        self.name = name
        self.options = options

    def draft(self, piece: _Piece, symbol: str, kind: SymbolKind) -> ChunkDraft:
        return code_draft(
            piece.text,
            imports=self.import_lines(piece.nodes),
            file=self.name,
            symbol=symbol,
            symbol_kind=kind,
            line_start=piece.start,
            line_end=piece.end,
            language="python",
        )

    def import_lines(self, nodes: tuple[ast.AST, ...]) -> str:
        used = _used_names(nodes)
        needed: dict[int, tuple[ast.Import | ast.ImportFrom, list[ast.alias]]] = {}
        for imp in self.imports:
            if imp.bound in used:
                needed.setdefault(id(imp.statement), (imp.statement, []))[1].append(imp.alias)
        rendered: list[str] = []
        for statement, aliases in needed.values():
            # Re-render with only the needed names: `from typing import Any, IO` must not
            # drag IO into a chunk that only uses Any.
            if isinstance(statement, ast.Import):
                rendered.append(ast.unparse(ast.Import(names=aliases)))
            else:
                node = ast.ImportFrom(module=statement.module, names=aliases, level=statement.level)
                rendered.append(ast.unparse(node))
        return "\n".join(rendered)

    def piece(self, node: ast.stmt) -> _Piece:
        start = _first_line(node)
        # Comments directly above a definition document it; keep them with it.
        while start > 1 and self.lines[start - 2].lstrip().startswith("#"):
            start -= 1
        end = node.end_lineno or node.lineno
        return _Piece(self.source(start, end), start, end, (node,))

    def source(self, start: int, end: int) -> str:
        return "\n".join(self.lines[start - 1 : end]).rstrip()


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    source = normalize_newlines(decode_utf8(data))
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as exc:
        raise UnreadableDocument(f"Python syntax error at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise UnreadableDocument("Python source is nested too deeply to parse") from None
    module = _Module(source, tree, name, options)
    loose: list[_Piece] = []
    symbols: list[ChunkDraft] = []
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            # Kept whole even past max_chars: half a function answers nothing reliably.
            symbols.append(module.draft(module.piece(statement), statement.name, "function"))
        elif isinstance(statement, ast.ClassDef):
            symbols.extend(_class_drafts(module, statement, statement.name))
        elif not _is_import_only(statement):
            loose.append(module.piece(statement))
    drafts = _module_drafts(module, loose, PurePath(name).stem or "module") + symbols
    if not drafts:
        raise EmptyDocument("no code found")
    docstring = (ast.get_docstring(tree) or "").strip()
    return ParsedDocument(title=docstring.split("\n", 1)[0] or None, drafts=drafts)


def _module_drafts(module: _Module, loose: list[_Piece], symbol: str) -> list[ChunkDraft]:
    """The docstring and loose top-level statements (constants, main guard) as "module"."""
    if sum(len("".join(p.text.split())) for p in loose) < _TRIVIAL_MODULE_CHARS:
        return []
    return [
        module.draft(group, symbol, "module") for group in _group(loose, module.options.max_chars)
    ]


def _group(pieces: list[_Piece], max_chars: int) -> list[_Piece]:
    """Merge consecutive pieces up to max_chars; an oversize piece stays whole."""
    groups: list[_Piece] = []
    for piece in pieces:
        last = groups[-1] if groups else None
        if last is not None and len(last.text) + 1 + len(piece.text) <= max_chars:
            groups[-1] = _Piece(
                f"{last.text}\n{piece.text}", last.start, piece.end, last.nodes + piece.nodes
            )
        else:
            groups.append(piece)
    return groups


def _class_drafts(
    module: _Module, node: ast.ClassDef, qualname: str, enclosing: _Piece | None = None
) -> list[ChunkDraft]:
    """Emit a class whole if it fits, else one chunk per member under its class line(s).

    `enclosing` carries the header lines of outer classes, so a nested class's method
    still names every class it lives in.
    """
    whole = _under(enclosing, module.piece(node))
    if len(whole.text) + len(module.import_lines(whole.nodes)) <= module.options.max_chars:
        return [module.draft(whole, qualname, "class")]
    start = whole.start
    header_end = max(_first_line(node.body[0]) - 1, node.lineno)
    own_header = _Piece(
        module.source(start, header_end),
        start,
        header_end,
        (*node.bases, *node.keywords, *node.decorator_list),
    )
    header = _under(enclosing, own_header)
    loose: list[_Piece] = []
    members: list[tuple[_Def, _Piece]] = []
    for statement in node.body:
        piece = module.piece(statement)
        if isinstance(statement, _Def):
            members.append((statement, piece))
        else:
            loose.append(piece)
    drafts = [
        module.draft(_under(header, group), qualname, "class")
        for group in _group(loose, module.options.max_chars - len(header.text) - 1)
    ]
    for statement, piece in members:
        name = f"{qualname}.{statement.name}"
        if isinstance(statement, ast.ClassDef):
            drafts.extend(_class_drafts(module, statement, name, header))
        else:
            drafts.append(module.draft(_under(header, piece), name, "method"))
    return drafts


def _under(header: _Piece | None, piece: _Piece) -> _Piece:
    """The piece prefixed by its class header; line numbers stay the piece's own."""
    if header is None:
        return piece
    return _Piece(
        f"{header.text}\n{piece.text}", piece.start, piece.end, header.nodes + piece.nodes
    )


def _first_line(node: ast.stmt) -> int:
    decorators = node.decorator_list if isinstance(node, _Def) else []
    return min([node.lineno, *(d.lineno for d in decorators)])


def _collect_imports(tree: ast.Module) -> list[_Import]:
    imports: list[_Import] = []
    # Imports guarded by `if TYPE_CHECKING:` or `try/except ImportError` still bind names.
    for statement in _import_candidates(tree.body):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                bound = alias.asname or alias.name.split(".", 1)[0]
                imports.append(_Import(bound, statement, alias))
        elif isinstance(statement, ast.ImportFrom) and statement.module != "__future__":
            for alias in statement.names:
                if alias.name != "*":
                    imports.append(_Import(alias.asname or alias.name, statement, alias))
    return imports


def _import_candidates(body: list[ast.stmt]) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for statement in body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            found.append(statement)
        elif isinstance(statement, ast.If):
            found += _import_candidates(statement.body) + _import_candidates(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                found += _import_candidates(block)
            for handler in statement.handlers:
                found += _import_candidates(handler.body)
    return found


def _is_import_only(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return True
    if isinstance(statement, ast.If | ast.Try):
        nested = [s for s in ast.walk(statement) if isinstance(s, ast.stmt) and s is not statement]
        return all(isinstance(s, ast.Import | ast.ImportFrom | ast.Pass) for s in nested)
    return False


def _used_names(nodes: tuple[ast.AST, ...]) -> set[str]:
    names: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Name):
                names.add(node.id)
            for annotation in _annotations(node):
                names |= _string_annotation_names(annotation)
    return names


def _annotations(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.arg | ast.AnnAssign):
        return [node.annotation] if node.annotation is not None else []
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return [node.returns] if node.returns is not None else []
    return []


def _string_annotation_names(annotation: ast.expr) -> set[str]:
    """Names inside quoted annotations like `-> "Store"`, which ast keeps as strings."""
    names: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                parsed = ast.parse(node.value, mode="eval")
            except (SyntaxError, ValueError):
                continue
            names |= {n.id for n in ast.walk(parsed) if isinstance(n, ast.Name)}
    return names
