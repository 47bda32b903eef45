"""Faithfulness by an LLM judge: the versioned `eval.faithfulness` rubric, sentence by
sentence, against the chunks each sentence cites. Used when `tether eval answers
--judge MODEL` names a model; the lexical `support` score is the offline default."""

from __future__ import annotations

import math

from tether import prompts
from tether.errors import TetherError
from tether.evals.answers import sentences_with_citations
from tether.models.chat import ChatModel
from tether.observability.tracing import using_prompt
from tether.prompts.eval_faithfulness_v1 import JudgeInputs, JudgeOutput
from tether.rag import AnswerResult
from tether.structured import generate

JUDGE_PROMPT = "eval.faithfulness"


async def judged_faithfulness(
    judge: ChatModel, result: AnswerResult, *, version: int | None = None
) -> float:
    """Share of answer sentences the judge finds supported (NaN: declined, or the judge
    could not give a valid verdict for any sentence)."""
    if result.answer.declined:
        return math.nan
    prompt = prompts.get(JUDGE_PROMPT, version)
    texts = {item.chunk.id: item.chunk.text for item in [*result.retrieved, *result.context]}
    verdicts: list[bool] = []
    for sentence, cited in sentences_with_citations(result):
        evidence = [texts[c] for c in cited if c in texts]
        if not evidence:
            verdicts.append(False)  # a sentence that cites nothing is unsupported
            continue
        try:
            with using_prompt(prompt.key):
                generation = await generate(
                    judge,
                    prompt.render(JudgeInputs(sentence=sentence, evidence=evidence)),
                    JudgeOutput,
                    max_attempts=2,
                    max_tokens=200,
                )
        except TetherError:
            continue
        verdicts.append(generation.value.supported)
    return sum(verdicts) / len(verdicts) if verdicts else math.nan
