from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import UnreadableDocument
from tether.ingest.formats.textsplit import (
    decode_utf8,
    normalize_whitespace,
    pack_paragraphs,
    split_sentences,
    tail_overlap,
)


def test_decode_strips_bom() -> None:
    assert decode_utf8(b"\xef\xbb\xbfhello") == "hello"


def test_decode_names_bad_byte_and_offset() -> None:
    with pytest.raises(UnreadableDocument, match=r"invalid byte 0xff at offset 5"):
        decode_utf8(b"abcde\xffgh")


def test_decode_offset_counts_the_bom() -> None:
    with pytest.raises(UnreadableDocument, match=r"offset 4"):
        decode_utf8(b"\xef\xbb\xbfa\xe9")


def test_decode_rejects_nul_as_binary() -> None:
    with pytest.raises(UnreadableDocument, match="binary file"):
        decode_utf8(b"PK\x03\x04\x00\x00zip")


def test_normalize_whitespace_collapses_runs_and_blank_lines() -> None:
    text = "a \t b\u00a0c  \r\n\r\n\r\n\r\nd\u200b e"
    assert normalize_whitespace(text) == "a b c\n\nd e"


def test_split_sentences_keeps_abbreviations_and_initials() -> None:
    text = "Dr. Smith met J. Doe at 9 a.m. on Monday. See e.g. the notes! Version 2.1 is out?"
    assert split_sentences(text) == [
        "Dr. Smith met J. Doe at 9 a.m. on Monday.",
        "See e.g. the notes!",
        "Version 2.1 is out?",
    ]


def test_pack_merges_small_paragraphs() -> None:
    chunks = pack_paragraphs(["one two.", "three four.", "five."], 100, 20)
    assert chunks == ["one two.\n\nthree four.\n\nfive."]


def test_pack_starts_new_chunk_when_full() -> None:
    paragraphs = ["a" * 40, "b" * 40, "c" * 40]
    chunks = pack_paragraphs(paragraphs, 90, 0)
    assert chunks == ["a" * 40 + "\n\n" + "b" * 40, "c" * 40]


def test_pack_splits_oversize_paragraph_at_sentences() -> None:
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(12)]
    chunks = pack_paragraphs([" ".join(sentences)], 120, 0)
    assert len(chunks) > 1
    assert all(len(c) <= 120 for c in chunks)
    # No sentence is cut: each chunk is a run of whole sentences.
    for chunk in chunks:
        assert chunk.endswith(".")
        assert chunk.startswith("Sentence number")


def test_pack_hard_cuts_only_a_sentence_longer_than_max() -> None:
    long_sentence = " ".join(["word"] * 60) + "."
    chunks = pack_paragraphs([f"Short one. {long_sentence} Tail here."], 80, 0)
    assert all(len(c) <= 80 for c in chunks)
    assert chunks[0].startswith("Short one.")
    assert chunks[-1].endswith("Tail here.")


def test_pack_cuts_a_word_longer_than_max() -> None:
    chunks = pack_paragraphs(["x" * 250], 100, 0)
    assert chunks == ["x" * 100, "x" * 100, "x" * 50]


def test_pack_overlap_repeats_previous_tail_on_split() -> None:
    sentences = [f"Fact {i} is stated plainly here." for i in range(10)]
    chunks = pack_paragraphs([" ".join(sentences)], 100, 40)
    assert len(chunks) > 2
    for previous, current in itertools.pairwise(chunks):
        overlap = current[: current.index("Fact", 1)].strip() if current.count("Fact") > 1 else ""
        assert overlap, "continuation should start with the previous chunk's tail"
        assert previous.endswith(overlap)
        assert len(overlap) <= 40
        assert len(current) <= 100


def test_pack_no_overlap_when_nothing_was_split() -> None:
    assert pack_paragraphs(["Only one short paragraph."], 200, 150) == ["Only one short paragraph."]


def test_tail_overlap_starts_at_sentence_or_word() -> None:
    text = "The first sentence ends here. The second one is the tail."
    assert tail_overlap(text, 35) == "The second one is the tail."
    assert tail_overlap("alpha beta gamma delta", 12) == "gamma delta"
    assert tail_overlap("abcdefghij", 5) == ""


_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,!?", min_size=1, max_size=12)
_paragraphs = st.lists(
    st.lists(_words, min_size=1, max_size=60).map(" ".join), min_size=0, max_size=8
)


@settings(max_examples=300, deadline=None)
@given(
    paragraphs=_paragraphs,
    max_chars=st.integers(min_value=20, max_value=300),
    overlap=st.integers(min_value=0, max_value=120),
)
def test_pack_paragraphs_properties(paragraphs: list[str], max_chars: int, overlap: int) -> None:
    chunks = pack_paragraphs(paragraphs, max_chars, overlap)
    assert all(0 < len(chunk) <= max_chars for chunk in chunks)

    expected = [word for paragraph in paragraphs for word in paragraph.split()]
    produced = iter(word for chunk in chunks for word in chunk.split())
    # Every input word appears, in order (overlap may add repeats in between).
    assert all(any(word == out for out in produced) for word in expected)
    if overlap == 0:
        assert [w for chunk in chunks for w in chunk.split()] == expected
