"""Output checks run on a model's answer before it leaves the system.

Three leaks are blocked:

* a registered secret (an access code, an internal identifier) in the answer. Attackers
  ask for it spelled out, spaced, punctuated or reversed, so secrets of four or more
  letters and digits are compared on letters and digits only, forwards and backwards;
  shorter ones would match inside ordinary words that way and are matched as whole words
  only. A secret with no letter or digit is matched exactly, and not at all below four
  characters (a secret "." would block every sentence).
* a credential, as tether's redaction detectors see one (API keys, tokens, private keys,
  `password=` values), whether or not anyone registered it.
* the system prompt. Extraction attacks ask for it verbatim, as a list, as Python
  `print` lines, so the answer is compared on word 5-gram shingles: a long run of prompt
  words in order, or a large share of the prompt's shingles, is a leak. An answer that
  reuses a few of the prompt's words ("access granted") shares no long run and passes.

What this is not: a paraphrase detector. A model that summarises its prompt in its own
words gets through; the injection screen and the prompt's own wording are the walls there.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from tether.security.redaction import find

Reason = Literal["secret", "credential", "system_prompt"]


class OutputVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    reasons: tuple[Reason, ...] = ()
    #: The original text when allowed, the refusal otherwise.
    text: str


_WORD = re.compile(r"\w+")
_SHINGLE = 5
#: A run of this many prompt words in the prompt's order is a leak on its own.
_RUN_WORDS = 10
#: Or this share of the prompt's shingles, scattered (a reformatted prompt loses the
#: shingles that span its line breaks but keeps most of the rest).
_SHARE = 0.3
#: Below this many words a prompt's own words are too common to call anything a leak.
_MIN_PROMPT_WORDS = 3
_SHORT_SECRET = 4


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _alnum(text: str) -> str:
    return "".join(ch for ch in _fold(text) if ch.isalnum())


def _shingles(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


class _Prompt:
    """The system prompt, pre-shingled once so each check is one pass over the output."""

    def __init__(self, prompt: str) -> None:
        words = _WORD.findall(_fold(prompt))
        self.n = min(_SHINGLE, len(words))
        self.words = words
        self.vocabulary = frozenset(words)
        self.shingles = frozenset(_shingles(words, self.n)) if words else frozenset()

    def leaked(self, output: str) -> bool:
        if len(self.words) < _MIN_PROMPT_WORDS:
            return False
        words = _WORD.findall(_fold(output))
        # A second view without the words the prompt never uses: `print("…")`, list
        # bullets and numbering are then gone and the prompt's lines join up again.
        kept = [w for w in words if w in self.vocabulary]
        if len(self.words) <= _RUN_WORDS:
            # Too short for a run to mean more than the prompt itself: the whole prompt.
            return any(
                tuple(self.words) in set(_shingles(view, len(self.words))) for view in (words, kept)
            )
        matched: set[tuple[str, ...]] = set()
        for view in (words, kept):
            run = 0
            for shingle in _shingles(view, self.n):
                if shingle in self.shingles:
                    matched.add(shingle)
                    run += 1
                    if run + self.n - 1 >= _RUN_WORDS and view is words:
                        return True
                else:
                    run = 0
        return len(matched) >= _SHARE * len(self.shingles)


class OutputGuard:
    """Blocks answers that carry a secret, a credential or the system prompt."""

    def __init__(
        self,
        *,
        system_prompt: str = "",
        secrets: Sequence[str] = (),
        refusal: str = "I can't share that.",
    ) -> None:
        if isinstance(secrets, str):
            raise TypeError("secrets must be a sequence of strings, not one string")
        self._prompt = _Prompt(system_prompt)
        self._refusal = refusal
        self._loose: list[str] = []
        self._exact: list[re.Pattern[str]] = []
        for secret in secrets:
            folded, plain = _alnum(secret), _fold(secret.strip())
            if len(folded) >= _SHORT_SECRET:
                self._loose.append(folded)
            elif folded:
                self._exact.append(re.compile(rf"(?<!\w){re.escape(plain)}(?!\w)"))
            elif len(plain) >= _SHORT_SECRET:
                self._exact.append(re.compile(re.escape(plain)))
            # else: a secret like "." is indistinguishable from punctuation; checking it
            # would block every answer, so it is not checked at all.

    def _has_secret(self, text: str) -> bool:
        if self._loose:
            flat = _alnum(text)
            if any(s in flat or s[::-1] in flat for s in self._loose):
                return True
        folded = _fold(text)
        return any(p.search(folded) for p in self._exact)

    def check(self, text: str) -> OutputVerdict:
        reasons: list[Reason] = []
        if self._has_secret(text):
            reasons.append("secret")
        if any(f.entity == "SECRET" for f in find(text)):
            reasons.append("credential")
        if self._prompt.leaked(text):
            reasons.append("system_prompt")
        if reasons:
            return OutputVerdict(allowed=False, reasons=tuple(reasons), text=self._refusal)
        return OutputVerdict(allowed=True, text=text)
