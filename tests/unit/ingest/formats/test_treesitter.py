from __future__ import annotations

from pathlib import Path

import pytest

from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats import code, treesitter

FIXTURES = Path(__file__).parents[3] / "fixtures" / "code"
IMPORT_PREFIXES = ("import ", "const ", "use ")


def _parse(name: str, data: bytes | None = None, **options: int) -> ParsedDocument:
    data = (FIXTURES / name).read_bytes() if data is None else data
    return code.parse(data, name=name, options=ChunkOptions(**options))


def _symbols(doc: ParsedDocument) -> list[tuple[object, object]]:
    return [(d.metadata["symbol"], d.metadata["symbol_kind"]) for d in doc.drafts]


def _chunk(doc: ParsedDocument, symbol: str) -> ChunkDraft:
    return next(d for d in doc.drafts if d.metadata["symbol"] == symbol)


def _imports(draft: ChunkDraft) -> list[str]:
    """The import prefix: the lines before the first blank line, when they are imports."""
    head, _, _ = draft.text.partition("\n\n")
    lines = head.split("\n")
    return lines if all(line.startswith(IMPORT_PREFIXES) for line in lines) else []


def _body(draft: ChunkDraft) -> str:
    return draft.text.split("\n\n", 1)[1] if _imports(draft) else draft.text


def _source(name: str, draft: ChunkDraft) -> str:
    """The fixture's own lines for the draft's line range."""
    lines = (FIXTURES / name).read_text().split("\n")
    start, end = draft.metadata["line_start"], draft.metadata["line_end"]
    assert isinstance(start, int) and isinstance(end, int)
    return "\n".join(lines[start - 1 : end])


# -- JavaScript -----------------------------------------------------------------------------


def test_javascript_one_chunk_per_symbol_with_source_lines() -> None:
    doc = _parse("cart.js")
    assert _symbols(doc) == [
        ("cart", "module"),
        ("Cart", "class"),
        ("describeCart", "function"),
        ("isEmpty", "function"),  # `export const isEmpty = (cart) => ...`
        ("emptyCart", "function"),  # `export default function emptyCart`
    ]
    cart = _chunk(doc, "Cart")
    # The doc comment above the class belongs to it.
    assert (cart.metadata["line_start"], cart.metadata["line_end"]) == (11, 33)
    assert _body(cart) == _source("cart.js", cart)
    assert _body(cart).startswith("/** A cart holds line items")
    for symbol in ("describeCart", "isEmpty", "emptyCart"):
        draft = _chunk(doc, symbol)
        assert _body(draft) == _source("cart.js", draft)
        assert draft.section == symbol
        assert draft.kind == "code"


def test_javascript_chunks_get_exactly_the_imports_they_use() -> None:
    doc = _parse("cart.js")
    assert _imports(_chunk(doc, "Cart")) == ['import * as analytics from "./analytics.js";']
    assert _imports(_chunk(doc, "describeCart")) == ['import { formatMoney } from "./money.js";']
    assert _imports(_chunk(doc, "isEmpty")) == []
    # `debounce, throttle` is cut down to what the module chunk uses; require() counts too.
    assert _imports(_chunk(doc, "cart")) == [
        'import { debounce } from "./timing.js";',
        'const fs = require("node:fs");',
        'const { join } = require("node:path");',
    ]
    assert not any("throttle" in d.text for d in doc.drafts)


def test_javascript_module_chunk_keeps_header_comment_and_constants() -> None:
    module = _chunk(_parse("cart.js"), "cart")
    body = _body(module)
    assert body.startswith("// Shopping cart helpers for the storefront.")
    assert "const TAX_RATE = 0.08;" in body
    assert "export const saveCart = debounce(" in body
    assert "export class Cart" not in body
    assert module.metadata["line_start"] == 1


def test_big_javascript_class_is_split_per_method_under_its_header() -> None:
    doc = _parse("cart.js", max_chars=300)
    symbols = _symbols(doc)
    assert symbols[1:6] == [
        ("Cart", "class"),
        ("Cart.constructor", "method"),
        ("Cart.add", "method"),
        ("Cart.subtotal", "method"),
        ("Cart.total", "method"),
    ]
    add = _chunk(doc, "Cart.add")
    assert _imports(add) == ['import * as analytics from "./analytics.js";']
    assert _body(add).startswith("export class Cart {\n  add(item, quantity = 1) {\n")
    assert (add.metadata["line_start"], add.metadata["line_end"]) == (18, 24)
    assert _body(add) == "export class Cart {\n" + _source("cart.js", add)
    assert _imports(_chunk(doc, "Cart.total")) == []
    # The class's doc comment isn't repeated per method but isn't lost either.
    assert _chunk(doc, "Cart").text.startswith("/** A cart holds line items")
    assert sum("A cart holds line items" in d.text for d in doc.drafts) == 1


def test_jsx_component_counts_jsx_tags_as_uses() -> None:
    data = (
        b'import React from "react";\nimport { Button, Icon } from "./ui";\n\n'
        b"export function Toolbar({ label }) {\n  return <Button label={label} />;\n}\n"
    )
    doc = _parse("toolbar.jsx", data)
    assert _symbols(doc) == [("Toolbar", "function")]
    assert _imports(doc.drafts[0]) == ['import { Button } from "./ui";']
    assert doc.drafts[0].metadata["language"] == "javascript"


# -- TypeScript -----------------------------------------------------------------------------


def test_typescript_interfaces_types_enums_and_classes() -> None:
    doc = _parse("search.ts", max_chars=5000)
    assert _symbols(doc) == [
        ("search", "module"),
        ("Document", "interface"),
        ("Hit", "type"),
        ("Mode", "enum"),
        ("Store", "class"),
        ("score", "function"),
    ]
    assert _chunk(doc, "Document").metadata == {
        "file": "search.ts",
        "symbol": "Document",
        "symbol_kind": "interface",
        "line_start": 7,
        "line_end": 12,
        "language": "typescript",
    }
    assert _body(_chunk(doc, "search")) == (
        "// In-memory document store with naive keyword search.\nconst DEFAULT_LIMIT = 10;"
    )


def test_typescript_split_class_methods_get_only_their_names_imported() -> None:
    doc = _parse("search.ts", max_chars=600)
    assert [s for s, _ in _symbols(doc) if str(s).startswith("Store")] == [
        "Store",
        "Store.constructor",
        "Store.add",
        "Store.search",
        "Store.save",
    ]
    # `import { tokenize, stem }`: search uses tokenize only, score uses both.
    assert _imports(_chunk(doc, "Store.search")) == ['import { tokenize } from "./text";']
    assert _imports(_chunk(doc, "score")) == ['import { tokenize, stem } from "./text";']
    assert _imports(_chunk(doc, "Store.save")) == ['import fs from "node:fs/promises";']
    assert _imports(_chunk(doc, "Store.constructor")) == [
        'import type { Logger } from "./logging";'
    ]
    fields = _chunk(doc, "Store")
    assert _imports(fields) == ['import { LRUCache } from "lru-cache";']
    assert _body(fields).endswith(
        "export class Store {\n"
        "  private readonly docs = new Map<string, Document>();\n"
        "  private readonly cache = new LRUCache<string, Hit[]>({ max: 100 });"
    )
    assert _chunk(doc, "Store.search").text.count("export class Store {") == 1


def test_oversize_function_stays_whole() -> None:
    doc = _parse("search.ts", max_chars=200)
    score = _chunk(doc, "score")
    assert len(score.text) > 200
    assert (score.metadata["line_start"], score.metadata["line_end"]) == (60, 68)
    assert _body(score) == _source("search.ts", score)


def test_tsx_uses_the_tsx_grammar() -> None:
    data = (
        b'import { Button } from "./ui";\n\n'
        b"export const Toolbar = ({ label }: { label: string }) => {\n"
        b"  return <Button label={label} />;\n};\n"
    )
    doc = _parse("Toolbar.tsx", data)
    assert _symbols(doc) == [("Toolbar", "function")]
    assert _imports(doc.drafts[0]) == ['import { Button } from "./ui";']


# -- Go -------------------------------------------------------------------------------------


def test_go_funcs_methods_and_types() -> None:
    doc = _parse("inventory.go")
    assert _symbols(doc) == [
        ("inventory", "module"),
        ("Item", "struct"),
        ("Repository", "interface"),
        ("Store", "struct"),
        ("NewStore", "function"),
        ("Store.Get", "method"),
        ("Store.Put", "method"),
        ("LowStock", "function"),
    ]
    get = _chunk(doc, "Store.Get")
    assert (get.metadata["line_start"], get.metadata["line_end"]) == (42, 51)
    assert _body(get) == _source("inventory.go", get)
    assert _body(get).startswith("// Get returns the stock record for sku.\nfunc (s *Store) Get(")


def test_go_imports_by_package_name() -> None:
    doc = _parse("inventory.go")
    assert _imports(_chunk(doc, "Store.Get")) == ['import "fmt"']
    assert _imports(_chunk(doc, "Store")) == ['import "sync"']
    # An aliased import is found by its alias, `log.WithField`.
    assert _imports(_chunk(doc, "LowStock")) == [
        'import "sort"',
        'import log "github.com/sirupsen/logrus"',
    ]
    assert _imports(_chunk(doc, "NewStore")) == []
    module = _chunk(doc, "inventory")
    assert _imports(module) == ['import "errors"']
    assert "package inventory" in module.text
    assert 'const defaultWarehouse = "main"' in module.text


def test_go_import_paths_bind_their_package_name() -> None:
    data = (
        b'package cfg\n\nimport (\n\t"gopkg.in/yaml.v3"\n\t"github.com/google/go-github/v62/github"\n'
        b'\t"github.com/mattn/go-sqlite3"\n)\n\n'
        b"func Load(b []byte) (*github.Client, error) {\n\tvar v any\n"
        b"\treturn nil, yaml.Unmarshal(b, &v)\n}\n"
    )
    load = _parse("cfg.go", data).drafts[-1]
    assert load.metadata["symbol"] == "Load"
    assert _imports(load) == [
        'import "gopkg.in/yaml.v3"',
        'import "github.com/google/go-github/v62/github"',
    ]


# -- Rust -----------------------------------------------------------------------------------


def test_rust_items_and_impls() -> None:
    doc = _parse("ledger.rs")
    assert _symbols(doc) == [
        ("ledger", "module"),
        ("LedgerError", "enum"),
        ("Posting", "struct"),
        ("Balance", "trait"),
        ("Ledger", "struct"),
        ("Ledger", "impl"),
        ("Ledger", "impl"),
        ("Ledger", "impl"),
        ("total", "function"),
    ]
    posting = _chunk(doc, "Posting")
    # Doc comment and #[derive] stay with the struct; both derive names are imported.
    assert _body(posting).startswith("/// A single posting to an account.\n#[derive(")
    assert (posting.metadata["line_start"], posting.metadata["line_end"]) == (19, 24)
    assert _imports(posting) == ["use serde::{Deserialize, Serialize};"]
    assert _imports(_chunk(doc, "LedgerError")) == ["use thiserror::Error;"]
    assert _imports(_chunk(doc, "Ledger")) == ["use std::collections::HashMap;"]
    display = [d for d in doc.drafts if "impl fmt::Display for Ledger" in d.text]
    assert len(display) == 1 and _imports(display[0]) == ["use std::fmt;"]


def test_big_rust_impl_is_split_per_fn_under_the_impl_line() -> None:
    doc = _parse("ledger.rs", max_chars=500)
    methods = [(s, k) for s, k in _symbols(doc) if k == "method"]
    assert methods == [
        ("Ledger.new", "method"),
        ("Ledger.open", "method"),
        ("Ledger.post", "method"),
    ]
    post = _chunk(doc, "Ledger.post")
    assert _body(post).startswith(
        "impl Ledger {\n    /// Record a balanced entry, updating every account it touches.\n"
    )
    assert (post.metadata["line_start"], post.metadata["line_end"]) == (45, 60)
    assert _body(post) == "impl Ledger {\n" + _source("ledger.rs", post)
    # The impls that still fit stay whole.
    assert sum(d.metadata["symbol_kind"] == "impl" for d in doc.drafts) == 2


def test_rust_use_lists_are_cut_down_to_the_names_used() -> None:
    data = (
        b"use std::collections::{HashMap, HashSet};\nuse std::io::{self, Write as _};\n\n"
        b"pub fn unique(xs: &[u8]) -> HashSet<u8> {\n    xs.iter().copied().collect()\n}\n\n"
        b"pub fn flush() -> io::Result<()> {\n    Ok(())\n}\n"
    )
    doc = _parse("lib.rs", data)
    assert _imports(_chunk(doc, "unique")) == ["use std::collections::HashSet;"]
    assert _imports(_chunk(doc, "flush")) == ["use std::io;"]


# -- Java -----------------------------------------------------------------------------------


def test_java_types_and_imports_by_simple_name() -> None:
    doc = _parse("OrderService.java", max_chars=5000)
    assert _symbols(doc) == [
        ("OrderService", "class"),
        ("PaymentGateway", "interface"),
        ("OrderStatus", "enum"),
        ("LineItem", "class"),
    ]
    assert _imports(_chunk(doc, "PaymentGateway")) == ["import java.math.BigDecimal;"]
    assert _imports(_chunk(doc, "OrderStatus")) == []
    service = _chunk(doc, "OrderService")
    assert (service.metadata["line_start"], service.metadata["line_end"]) == (11, 43)
    assert "import java.util.Optional;" in _imports(service)


def test_big_java_class_is_split_per_method() -> None:
    doc = _parse("OrderService.java", max_chars=600)
    assert [s for s, _ in _symbols(doc)][:5] == [
        "OrderService",
        "OrderService.OrderService",
        "OrderService.place",
        "OrderService.find",
        "OrderService.cancel",
    ]
    place = _chunk(doc, "OrderService.place")
    assert _imports(place) == [
        "import java.math.BigDecimal;",
        "import java.time.Instant;",
        "import java.util.List;",
    ]
    assert _body(place).startswith("public class OrderService {\n    /** Charges the customer")
    assert _imports(_chunk(doc, "OrderService.find")) == ["import java.util.Optional;"]
    fields = _chunk(doc, "OrderService")
    assert "private final Clock clock;" in fields.text
    assert "public Order place(" not in fields.text
    assert _imports(fields) == [
        "import java.time.Clock;",
        "import java.util.Map;",
        "import java.util.concurrent.ConcurrentHashMap;",
    ]


def test_nested_java_class_gets_qualified_names() -> None:
    data = b"""import java.util.List;

public class Outer {
    static class Inner {
        List<String> names() { return List.of("a", "b", "c", "d", "e", "f", "g", "h"); }
        int size() { return names().size() + 1000000 + 2000000 + 3000000 + 4000000; }
    }
}
"""
    doc = _parse("Outer.java", data, max_chars=200)
    assert _symbols(doc) == [("Outer.Inner.names", "method"), ("Outer.Inner.size", "method")]
    names = _chunk(doc, "Outer.Inner.names")
    assert _imports(names) == ["import java.util.List;"]
    assert _body(names).startswith("public class Outer {\n    static class Inner {\n")


# -- damaged files ----------------------------------------------------------------------------


def test_file_with_syntax_errors_keeps_all_its_text() -> None:
    doc = _parse("broken.ts")
    symbols = _symbols(doc)
    assert ("parseEvent", "function") in symbols
    assert ("handle", "function") in symbols
    text = "\n".join(d.text for d in doc.drafts)
    for line in (FIXTURES / "broken.ts").read_text().split("\n"):
        assert line in text
    # Imports are kept as text too, not only as prefixes.
    assert 'import { enqueue } from "./queue";' in _chunk(doc, "broken").text


def test_symbols_after_a_damaged_one_are_still_found() -> None:
    data = (
        b"export function ok(a: number): number {\n  return a + 1;\n}\n\n"
        b"const x = ;\n\n"
        b"export function fine(b: string): string {\n  return b.trim();\n}\n"
    )
    doc = _parse("mixed.ts", data)
    assert _symbols(doc) == [("mixed", "module"), ("ok", "function"), ("fine", "function")]
    assert _chunk(doc, "mixed").text == "const x = ;"


def test_treesitter_declines_unsupported_languages() -> None:
    options = ChunkOptions()
    assert (
        treesitter.symbol_drafts("fun f() = 1\n", name="a.kt", language="kotlin", options=options)
        is None
    )
    assert (
        treesitter.symbol_drafts(
            "let x = 1;\n", name="a.js", language="javascript", options=options
        )
        is None
    )


@pytest.mark.parametrize(
    "name", ["cart.js", "search.ts", "inventory.go", "ledger.rs", "OrderService.java"]
)
@pytest.mark.parametrize("max_chars", [200, 600, 1200])
def test_metadata_shape_matches_python(name: str, max_chars: int) -> None:
    doc = _parse(name, max_chars=max_chars)
    assert doc.drafts
    for draft in doc.drafts:
        assert set(draft.metadata) == {
            "file",
            "symbol",
            "symbol_kind",
            "line_start",
            "line_end",
            "language",
        }
        assert draft.section == draft.metadata["symbol"]
        assert draft.kind == "code"
        assert draft.metadata["file"] == name
        start, end = draft.metadata["line_start"], draft.metadata["line_end"]
        assert isinstance(start, int) and isinstance(end, int) and 1 <= start <= end
        # Every chunk's last line is really in it.
        last = (FIXTURES / name).read_text().split("\n")[end - 1].strip()
        assert last in draft.text
