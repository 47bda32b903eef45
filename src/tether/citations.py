"""Citation discipline: an answer may only cite chunks that were in its context."""

from __future__ import annotations

import re
from collections.abc import Collection

from tether.errors import CitationError
from tether.types import Answer

#: Inline citation tags as answers write them: "... sentence [c0123456789abcde]."
TAG = re.compile(r"\[(c[0-9a-f]{15})\]")


def cited_ids(text: str) -> list[str]:
    return list(dict.fromkeys(TAG.findall(text)))


def verify(answer: Answer, context_ids: Collection[str]) -> Answer:
    """Raise CitationError if the summary's tags or the citation list name any chunk that
    was not in the packed context; return the answer unchanged otherwise."""
    allowed = set(context_ids)
    named = set(cited_ids(answer.summary)) | {c.chunk_id for c in answer.citations}
    stray = sorted(named - allowed)
    if stray:
        raise CitationError(f"answer cites chunks that were not in its context: {stray}")
    if not answer.declined and not answer.citations:
        raise CitationError("a non-declined answer must cite at least one chunk")
    return answer
