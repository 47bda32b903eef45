"""Secret and PII detectors: what each must catch and what it must leave alone."""

from __future__ import annotations

import itertools

import pytest

from tether.security.redaction import find, iban_valid, luhn_valid, redact, redact_value


def entities(text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in find(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("mail jo.doe+x@mail.example.co.uk now", "EMAIL_ADDRESS", "jo.doe+x@mail.example.co.uk"),
        ("card 4111 1111 1111 1111 ok", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "CREDIT_CARD", "4111-1111-1111-1111"),
        ("iban GB82 WEST 1234 5698 7654 32 thanks", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),
        ("iban gb82west12345698765432", "IBAN_CODE", "gb82west12345698765432"),
        ("from 192.168.10.254 at", "IP_ADDRESS", "192.168.10.254"),
        ("v6 2001:db8::8a2e:370:7334 here", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
        ("ssn 123-45-6789", "US_SSN", "123-45-6789"),
        ("call +1-984-182-0190 today", "PHONE_NUMBER", "+1-984-182-0190"),
        ("call (602)272-9781x12", "PHONE_NUMBER", "(602)272-9781x12"),
        ("ring +41 (0)38 549 02 90", "PHONE_NUMBER", "+41 (0)38 549 02 90"),
        ("key sk-proj-abcdefghijklmnop1234 leaked", "SECRET", "sk-proj-abcdefghijklmnop1234"),
        ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv", "SECRET", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"),
        ("aws AKIAIOSFODNN7EXAMPLE", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
        ("Authorization: Bearer abc.def-ghi_jkl", "SECRET", "abc.def-ghi_jkl"),
        ('{"password": "hunter2hunter2"}', "SECRET", "hunter2hunter2"),
        ("blob Zx8Qw2Lm4Np6Rt0Vy1Ks3Hj5Gd7Fb9Ca", "SECRET", "Zx8Qw2Lm4Np6Rt0Vy1Ks3Hj5Gd7Fb9Ca"),
        ("My name is Ada Lovelace.", "PERSON", "Ada Lovelace"),
        ("lives at 221B Baker Street, London", "STREET_ADDRESS", "221B Baker Street"),
    ],
)
def test_detects(text: str, entity: str, value: str) -> None:
    assert (entity, value) in entities(text)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails the Luhn check
        "on 2023-01-15 at noon",  # a date, not a phone number
        "from 1998-2004 he worked",  # a year range
        "trace 4bf92f3577b34da6a3ce929d0e0e4736",  # hex ids stay readable
        "chunk c0a1b2c3d4e5f6a7 cited",
        "we sold 1500 units in 12 stores",
        "the quick brown fox jumps over the lazy dog",
    ],
)
def test_leaves_alone(text: str) -> None:
    assert find(text) == []


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("iban GB83 WEST 1234 5698 7654 32", "IBAN_CODE"),  # fails mod 97
        ("version 1.2.3.4000 released", "IP_ADDRESS"),  # 4000 > 255
    ],
)
def test_checksums_and_ranges_reject(text: str, entity: str) -> None:
    assert entity not in {e for e, _ in entities(text)}


def test_validators() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid(
        "DE88 3704 0044 0532 0130 00"
    )


def test_findings_do_not_overlap_and_earlier_detectors_win() -> None:
    text = "pay 4111111111111111 or call +44 7700 900123, mail a@b.io"
    found = find(text)
    assert [f.entity for f in found] == ["CREDIT_CARD", "PHONE_NUMBER", "EMAIL_ADDRESS"]
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start


def test_redact_replaces_and_can_keep() -> None:
    text = "Dr. Grace Hopper <grace@navy.mil> key=sk-live1234567890abcdef"
    assert redact(text) == "Dr. [PERSON] <[EMAIL_ADDRESS]> key=[SECRET]"
    assert redact(text, keep=["PERSON"]) == "Dr. Grace Hopper <[EMAIL_ADDRESS]> key=[SECRET]"


def test_redact_value_walks_nested_structures() -> None:
    value = {"a": ["mail x@y.com", 3, None], "b": {"c": ("192.168.0.1",)}, "d": 1.5}
    assert redact_value(value) == {
        "a": ["mail [EMAIL_ADDRESS]", 3, None],
        "b": {"c": ["[IP_ADDRESS]"]},
        "d": 1.5,
    }
