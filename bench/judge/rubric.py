"""A local LM as a pointwise judge with Self-Rewarding Language Models' additive 5-point rubric (Yuan et al.
2024, arXiv:2401.10020, Figure 2: the LLM-as-a-Judge prompt), for sampled training completions only
(onpolicy.judge=rubric): with onpolicy.judge_model=start the model a round starts from scores its own samples,
and the pair rule the paper uses (best against worst of the scored samples, ties dropped) can read the scores.

Definition choice. The paper samples the judge's answer (a justification, then "Score: <points>") three times
and averages the parsed scores. Here the assistant turn is opened with "Score:" and the score is the expected
value of the next token over the digits 0-5 (each digit's probability summed over its single-token
spellings, bare and after a space, renormalised over the six): one forward pass per completion,
deterministic, and always a number, so no verdict is ever unparseable; it skips the justification the paper
asks for first. The prompt is the paper's, rendered with the judge's chat template where it has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench.core.errors import ConfigError
from bench.judge.local_lm import LocalLMJudge, load_tokenizer, single_token_spellings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

POINTS = tuple(range(6))  # the additive rubric's totals: 0 (no criterion met) to 5
ANSWER_PREFIX = "Score:"  # the judge's turn starts here, as the paper's format asks it to conclude

# Yuan et al. 2024, Figure 2, with the two placeholders the paper marks: the instruction and the response.
PROMPT = """Review the user's question and the corresponding response using the additive 5-point scoring \
system described below. Points are accumulated based on the satisfaction of each criterion:
- Add 1 point if the response is relevant and provides some information related to the user's inquiry, even \
if it is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but does not \
completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a useful way, \
regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found \
in blogs or search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing the \
user's question directly and comprehensively, and is well-organized and helpful, even if there is slight \
room for improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI Assistant, \
without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, engaging, and \
insightful answer.

User: {instruction}

<response>{response}</response>

After examining the user's instruction and the response:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"
"""


def score_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Each of the digits 0-5's single-token spellings (bare and space-prefixed); ConfigError naming the
    digits a tokenizer cannot spell as one token, since the score is read from the next token."""
    groups = [single_token_spellings(tokenizer, str(point)) for point in POINTS]
    missing = [str(p) for p, ids in zip(POINTS, groups, strict=True) if not ids]
    if missing:
        raise ConfigError(
            "onpolicy.judge=rubric reads the score as the next token, and the judge model's tokenizer has "
            f"no single token for {', '.join(missing)}: use a judge model with a general-purpose vocabulary "
            "(onpolicy.judge_model=<folder>)"
        )
    return groups


def check(model_path: str) -> None:
    """Preflight: the judge's tokenizer loads and spells every score as one token (no weights loaded)."""
    score_token_ids(load_tokenizer(model_path))


class RubricJudge(LocalLMJudge):
    """The expected rubric score (0-5) of each completion of one prompt. Loads lazily, like LocalLMJudge."""

    def rubric_text(self, instruction: str, response: str) -> str:
        """What the judge reads: the rubric as the user's turn, then its own turn opened with "Score:"."""
        content = PROMPT.replace("{instruction}", instruction, 1).replace("{response}", response, 1)
        return self.render(f"<|im_start|>user\n{content}\n<|im_end|>") + ANSWER_PREFIX

    def scores(self, instruction: str, completions: list[str]) -> list[float]:
        encoded = [self.encode(self.rubric_text(instruction, c)) for c in completions]
        logp = self.next_token_logprobs(encoded, score_token_ids(self.tokenizer))
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return [float(v) for v in probs @ np.array(POINTS, dtype=float)]
