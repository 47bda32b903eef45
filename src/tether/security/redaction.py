"""Secret and PII redaction, applied before anything is logged, stored or exported.

Detectors are regular expressions with validators where the format has a checksum
(Luhn for card numbers, ISO 7064 mod 97 for IBANs, `ipaddress` for IPs), run in priority
order: a later detector never claims text an earlier one already found, so a card
number is not also a phone number. Entity names follow Presidio's, so the evaluation on
its synthetic set (`tether eval redaction`) compares like with like.

What this is not: a named-entity recogniser. Names and street addresses are found only
from cues ("my name is", "Dr.", a house number followed by a street word); the
evaluation reports how much that misses rather than hiding it.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Entity = Literal[
    "SECRET",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "PHONE_NUMBER",
    "URL",
    "DOMAIN_NAME",
    "PERSON",
    "STREET_ADDRESS",
]


@dataclass(frozen=True)
class Finding:
    entity: Entity
    start: int
    end: int


# --- validators ------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    code = re.sub(r"\s", "", candidate).upper()
    if not 15 <= len(code) <= 34 or not code[:2].isalpha() or not code[2:4].isdigit():
        return False
    moved = code[4:] + code[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _entropy(token: str) -> float:
    counts = Counter(token)
    return -sum(c / len(token) * math.log2(c / len(token)) for c in counts.values())


def _high_entropy(token: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F-]+", token):
        return False  # hex: trace ids, hashes and UUIDs are not secrets by themselves
    has_digit = any(c.isdigit() for c in token)
    has_upper = any(c.isupper() for c in token)
    has_lower = any(c.islower() for c in token)
    return has_digit and has_upper and has_lower and _entropy(token) >= 4.0


def _card_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 12 <= len(digits) <= 19 and luhn_valid(digits)


def _ssn_valid(candidate: str) -> bool:
    area, group, serial = candidate.split("-")
    return area not in {"000", "666"} and area[0] != "9" and group != "00" and serial != "0000"


_DATE_LIKE = re.compile(r"(?:19|20)\d\d[-./]\d\d?[-./]\d\d?|\d\d?[-./]\d\d?[-./](?:19|20)\d\d")
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d\s*[-\u2013]\s*(?:19|20)\d\d")


def _phone_valid(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate.split("x")[0])
    if not 7 <= len(digits) <= 15:
        return False
    if _DATE_LIKE.match(candidate) or _YEAR_RANGE.fullmatch(candidate):
        return False
    # A bare run of digits is a phone number only if it is long enough to dial.
    return not (candidate.isdigit() and len(candidate) < 10)


# --- detectors (priority order) --------------------------------------------------------------

_SECRET_PATTERNS = [
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\bsk-[A-Za-z0-9_\-]{16,}",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bglpat-[A-Za-z0-9_\-]{20,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    r"\bhf_[A-Za-z0-9]{30,}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
]
# The value after a credential-looking key or an Authorization scheme.
_SECRET_VALUE = re.compile(
    r"(?i)(?:\b(?:api[_-]?key|secret|token|password|passwd|pwd|authorization)\b[\"']?\s*[:=]\s*"
    r"[\"']?(?:bearer\s+|basic\s+)?|\bbearer\s+)([^\s\"',;]{8,})"
)
_TOKEN = re.compile(r"[A-Za-z0-9+/_\-=]{24,}")

_STREET_WORDS = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|"
    r"Terrace|Ter|Circle|Cir|Square|Sq|Parkway|Pkwy|Highway|Hwy|Trail|Row|Crescent|Close|"
    r"Strasse|Straße|Gasse|Weg|Allee|Platz|Rue|Via|Calle|Avenida|Katu|Gatan|Vej|Gade|Laan"
)
_NAME = r"[A-Z][a-zà-ÿ'\u2019-]+(?:\s+[A-Z]\.?(?=\s))?(?:\s+[A-Z][a-zà-ÿ'\u2019-]+){0,2}"


@dataclass(frozen=True)
class _Detector:
    entity: Entity
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None
    group: int = 0


_DETECTORS: list[_Detector] = [
    *(_Detector("SECRET", re.compile(p)) for p in _SECRET_PATTERNS),
    _Detector("SECRET", _SECRET_VALUE, group=1),
    _Detector(
        "EMAIL_ADDRESS",
        re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"),
    ),
    _Detector(
        "IBAN_CODE",
        re.compile(r"(?i)\b[a-z]{2}\d{2}(?:[ ]?[a-z0-9]{4}){2,7}(?:[ ]?[a-z0-9]{1,4})?\b"),
        iban_valid,
    ),
    _Detector("CREDIT_CARD", re.compile(r"(?<![\d.+])\d(?:[ -]?\d){11,18}(?![\d.])"), _card_valid),
    _Detector("US_SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), _ssn_valid),
    _Detector(
        "IP_ADDRESS",
        re.compile(
            r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"
            r"|(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
        ),
        _ip_valid,
    ),
    _Detector(
        "STREET_ADDRESS",
        re.compile(
            rf"\b\d{{1,5}}[A-Za-z]?(?:\s+\d{{1,5}})?\s+(?:[A-ZÀ-Ý][\w'\u2019.-]*\s+){{0,3}}"
            rf"(?:{_STREET_WORDS})\b\.?(?:\s*(?:Apt\.?|Suite|Unit|#)\s*\w+)?"
            rf"|\b(?:[A-ZÀ-Ý][\w'\u2019-]*(?:{_STREET_WORDS.lower()}))\s+\d{{1,5}}[A-Za-z]?"
            rf"(?:\s*(?:Apt\.?|Suite|Unit|#)\s*\w+)?"
        ),
    ),
    _Detector(
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?|00\d{1,3}[ .-]?)?"
            r"(?:\(\d{1,4}\)[ .-]?|\(0\)\s?)?"
            r"\d{1,4}(?:[ .-]?\(?\d{1,4}\)?){1,5}"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w])"
        ),
        _phone_valid,
    ),
    _Detector("URL", re.compile(r"\bhttps?://[^\s<>\"']+")),
    _Detector(
        "DOMAIN_NAME",
        re.compile(
            r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
            r"(?:com|org|net|edu|gov|io|ai|co|uk|de|fr|nl|it|es|info|biz|us|ca|au|ch|se|dk|hu)\b",
            re.IGNORECASE,
        ),
    ),
    _Detector(
        "PERSON",
        re.compile(
            rf"(?:\b(?:[Mm]y name is|[Nn]ame:|I am|I'm|[Cc]ontact|[Dd]ear|[Ss]igned,?)\s+"
            rf"|\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Sir|Madam)\.?\s+)({_NAME})"
        ),
        group=1,
    ),
]


def find(text: str) -> list[Finding]:
    """Every finding in `text`, non-overlapping, in text order."""
    taken: list[tuple[int, int]] = []
    found: list[Finding] = []

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    def claim(entity: Entity, start: int, end: int) -> None:
        if start < end and free(start, end):
            taken.append((start, end))
            found.append(Finding(entity, start, end))

    for detector in _DETECTORS:
        for match in detector.pattern.finditer(text):
            start, end = match.span(detector.group)
            if start < 0:
                continue
            value = text[start:end]
            if detector.valid is None or detector.valid(value):
                claim(detector.entity, start, end)
        if detector.entity == "SECRET" and detector.group == 1:
            # Unlabelled high-entropy tokens, right after the labelled secret formats.
            for match in _TOKEN.finditer(text):
                if _high_entropy(match.group()):
                    claim("SECRET", match.start(), match.end())
    return sorted(found, key=lambda f: f.start)


def redact(text: str, *, keep: Iterable[Entity] = ()) -> str:
    """`text` with every finding replaced by `[ENTITY]` (entities in `keep` left alone)."""
    kept = set(keep)
    out: list[str] = []
    at = 0
    for finding in find(text):
        if finding.entity in kept:
            continue
        out.append(text[at : finding.start])
        out.append(f"[{finding.entity}]")
        at = finding.end
    out.append(text[at:])
    return "".join(out)


def redact_value(value: object, *, max_chars: int | None = None) -> object:
    """Strings inside nested dicts, lists and tuples redacted (each cut to `max_chars`
    first, when given); other values kept."""
    if isinstance(value, str):
        return redact(value[:max_chars])
    if isinstance(value, Mapping):
        return {k: redact_value(v, max_chars=max_chars) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, max_chars=max_chars) for v in value]
    return value
