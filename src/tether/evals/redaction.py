"""How well redaction finds PII, on Presidio's labelled-span format.

A gold span counts as found when a finding of the same entity overlaps it (`recall`);
a finding counts as correct when it overlaps a gold span of its entity (`precision`).
`masked` is the share of gold spans that some finding of any entity overlaps: what a
reader of a redacted trace would actually be protected from. Entity types the redactor
does not detect are reported with recall 0, not left out.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from tether.errors import DatasetError
from tether.security.redaction import find

#: A URL finding that overlaps a gold DOMAIN_NAME span is the same thing at a finer grain.
_SAME = {("URL", "DOMAIN_NAME")}


class PiiSpan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entity_type: str
    start_position: int
    end_position: int


class PiiCase(BaseModel):
    model_config = ConfigDict(extra="ignore")

    full_text: str
    spans: list[PiiSpan]


class EntityScore(BaseModel):
    gold: int
    found: int
    correct: int
    recall: float
    precision: float
    masked: float


class RedactionReport(BaseModel):
    cases: int
    entities: dict[str, EntityScore]

    def as_json(self) -> dict[str, object]:
        """Keyed by entity type; NaN (nothing to measure) becomes null, as JSON has no NaN."""
        return {
            "cases": self.cases,
            **{
                entity: {
                    k: None if isinstance(v, float) and math.isnan(v) else v
                    for k, v in score.model_dump().items()
                }
                for entity, score in self.entities.items()
            },
        }


def load_pii_cases(path: Path) -> list[PiiCase]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(PiiCase.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise DatasetError(f"{path}:{n}: not a Presidio case: {exc}") from exc
    return cases


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def evaluate_redaction(cases: list[PiiCase]) -> RedactionReport:
    gold: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    masked: Counter[str] = Counter()
    found: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for case in cases:
        findings = find(case.full_text)
        for span in case.spans:
            a, b = span.start_position, span.end_position
            overlapping = [f for f in findings if f.start < b and f.end > a]
            gold[span.entity_type] += 1
            if overlapping:
                masked[span.entity_type] += 1
            if any(
                f.entity == span.entity_type or (f.entity, span.entity_type) in _SAME
                for f in overlapping
            ):
                recalled[span.entity_type] += 1
        for f in findings:
            found[f.entity] += 1
            if any(
                f.start < s.end_position
                and f.end > s.start_position
                and (f.entity == s.entity_type or (f.entity, s.entity_type) in _SAME)
                for s in case.spans
            ):
                correct[f.entity] += 1
    entities = {}
    for entity in sorted(set(gold) | set(found)):
        entities[entity] = EntityScore(
            gold=gold[entity],
            found=found[entity],
            correct=correct[entity],
            recall=_ratio(recalled[entity], gold[entity]),
            precision=_ratio(correct[entity], found[entity]),
            masked=_ratio(masked[entity], gold[entity]),
        )
    return RedactionReport(cases=len(cases), entities=entities)
