from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats import python

STORE_PATH = Path(__file__).parents[3] / "fixtures" / "docs" / "store.py"
STORE = STORE_PATH.read_bytes()
STORE_LINES = STORE.decode().split("\n")


def _parse(data: bytes = STORE, **options: int) -> ParsedDocument:
    return python.parse(data, name="store.py", options=ChunkOptions(**options))


def _chunk(symbol: str, doc: ParsedDocument | None = None) -> ChunkDraft:
    doc = doc or _parse()
    return next(d for d in doc.drafts if d.metadata["symbol"] == symbol)


def _imports(draft: ChunkDraft) -> list[str]:
    head = draft.text.split("\n\n", 1)[0]
    return [line for line in head.split("\n") if line.startswith(("import ", "from "))]


def test_one_chunk_per_symbol_and_methods_of_a_big_class() -> None:
    symbols = [(d.metadata["symbol"], d.metadata["symbol_kind"]) for d in _parse().drafts]
    assert symbols == [
        ("store", "module"),
        ("Record", "class"),
        ("Store", "class"),
        ("Store.__init__", "method"),
        ("Store.add", "method"),
        ("Store.get", "method"),
        ("Store.search", "method"),
        ("Store.__iter__", "method"),
        ("Store.close", "method"),
        ("_to_record", "function"),
        ("open_store", "function"),
        ("export_jsonl", "function"),
    ]


def test_function_gets_exactly_the_imports_it_uses() -> None:
    assert _imports(_chunk("open_store")) == ["from pathlib import Path"]
    assert _imports(_chunk("export_jsonl")) == ["import json", "from pathlib import Path"]
    assert _imports(_chunk("_to_record")) == ["import json"]


def test_from_import_is_reduced_to_the_names_used() -> None:
    # `from dataclasses import dataclass, field` - Record uses both; a method uses neither.
    assert _imports(_chunk("Record")) == ["from dataclasses import dataclass, field"]
    data = b"from typing import IO, Any\n\ndef f(x: Any) -> Any:\n    return x\n"
    assert _imports(_chunk("f", _parse(data))) == ["from typing import Any"]


def test_method_chunk_is_prefixed_with_class_line() -> None:
    search = _chunk("Store.search")
    assert search.text.startswith("class Store:\n    def search(")
    add = _chunk("Store.add")
    assert _imports(add) == ["import json"]
    assert "class Store:\n    def add(self, record: Record) -> None:" in add.text
    assert _imports(_chunk("Store.__iter__")) == ["from collections.abc import Iterator"]
    assert _imports(_chunk("Store.__init__")) == ["import sqlite3", "from pathlib import Path"]


def test_small_class_stays_whole() -> None:
    doc = _parse(max_chars=5000)
    store = _chunk("Store", doc)
    assert store.metadata["symbol_kind"] == "class"
    assert "def search(" in store.text and "def close(" in store.text
    assert not any(d.metadata["symbol_kind"] == "method" for d in doc.drafts)


def test_line_numbers_point_at_the_source() -> None:
    for draft in _parse().drafts:
        start, end = draft.metadata["line_start"], draft.metadata["line_end"]
        assert isinstance(start, int) and isinstance(end, int)
        if draft.metadata["symbol_kind"] in ("function", "method"):
            source = "\n".join(STORE_LINES[start - 1 : end])
            assert source in draft.text
    first_line = _chunk("open_store").metadata["line_start"]
    assert isinstance(first_line, int)
    assert STORE_LINES[first_line - 1].startswith("# Opening creates")  # the leading comment


def test_metadata_and_section() -> None:
    draft = _chunk("Store.get")
    assert draft.section == "Store.get"
    assert draft.kind == "code"
    assert draft.metadata["file"] == "store.py"
    assert draft.metadata["language"] == "python"


def test_module_chunk_has_docstring_and_globals_but_no_defs() -> None:
    module = _chunk("store")
    assert "A tiny SQLite-backed document store" in module.text
    assert "CREATE TABLE IF NOT EXISTS docs" in module.text
    assert _imports(module) == ["import logging"]
    assert "def open_store" not in module.text
    assert "import json" not in module.text


def test_title_is_first_docstring_line() -> None:
    assert _parse().title == "A tiny SQLite-backed document store with keyword search."


def test_trivial_module_body_gets_no_chunk() -> None:
    doc = _parse(b"import os\n\n__all__ = ['f']\n\ndef f() -> str:\n    return os.sep\n")
    assert [d.metadata["symbol"] for d in doc.drafts] == ["f"]


def test_dotted_and_aliased_imports_and_string_annotations() -> None:
    data = (
        b"import os.path\n"
        b"import numpy as np\n"
        b"from typing import TYPE_CHECKING\n"
        b"if TYPE_CHECKING:\n"
        b"    from app.models import User\n"
        b"\n"
        b"def load(p: str) -> 'User':\n"
        b"    return np.load(os.path.join(p, 'x.npy'))\n"
    )
    assert _imports(_chunk("load", _parse(data))) == [
        "import os.path",
        "import numpy as np",
        "from app.models import User",
    ]


def test_decorated_function_includes_decorator() -> None:
    data = b"import functools\n\n@functools.cache\ndef answer() -> int:\n    return 42\n"
    draft = _chunk("answer", _parse(data))
    assert "@functools.cache\ndef answer()" in draft.text
    assert draft.metadata["line_start"] == 3
    assert _imports(draft) == ["import functools"]


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(UnreadableDocument, match="line 3"):
        _parse(b"def ok():\n    return 1\ndef broken(:\n    pass\n")


def test_empty_module_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        _parse(b"import os\n")


def test_nested_class_in_a_split_class_keeps_both_class_lines() -> None:
    methods = "\n".join(f"    def f{i}(self) -> int:\n        return {i}\n" for i in range(60))
    data = (
        "import functools\n\n"
        "class Big:\n"
        "    class Inner:\n"
        "        def m(self) -> int:\n"
        "            return functools.reduce(max, [1, 2])\n\n"
        f"{methods}"
    ).encode()
    inner = _chunk("Big.Inner", _parse(data))
    assert inner.metadata["symbol_kind"] == "class"
    assert inner.text == (
        "import functools\n\n"
        "class Big:\n"
        "    class Inner:\n"
        "        def m(self) -> int:\n"
        "            return functools.reduce(max, [1, 2])"
    )
    assert inner.metadata["line_start"] == 4
