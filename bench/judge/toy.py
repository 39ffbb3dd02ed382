"""The toy world's judge as an AlpacaEval completion function (`fn_completions`).

AlpacaEval formats each pair with the annotator's prompt template (annotators/toy_judge/prompt.txt) and hands
the prompts to a completion function. Here that function is this module's `ToyJudge`: it reads the two outputs
back out of the prompt and answers with the judge's *soft* preference, str(1 + P(output_2 preferred)), which
the annotator's `eval_parser` turns into a float in [1, 2]. Returning the probability rather than a sampled
label keeps the win rate free of label noise; the hard (tau -> 0) rate is recovered from the same number.

AlpacaEval randomly swaps output_1 and output_2 before formatting and maps a preference x back with 3 - x;
that is exact for this judge because P(a over b) = 1 - P(b over a).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench.core.errors import ConfigError
from bench.judge.markers import MARKERS as MARKERS  # re-exported: the toy template's markers
from bench.judge.markers import parse_marked_prompt

if TYPE_CHECKING:
    from bench.sources import Sources
    from bench.specs import RunSpec


def parse_prompt(prompt: str) -> tuple[str, str]:
    """(output_1, output_2) from a prompt formatted with the toy_judge template (bench.judge.markers).

    Raises ValueError when a marker is missing or repeated. Toy completions are words of a fixed vocabulary,
    so they cannot contain a marker; the parser still checks.
    """
    _, output_1, output_2 = parse_marked_prompt(prompt, "toy judge")
    return output_1, output_2


class ToyJudge:
    """Completion function for AlpacaEval: the data's own judge, P(output_2 preferred), as the text 1 + P.

    The toy world's judge is sigmoid((s2 - s1) / tau) with s = (#pos - #neg)/L + lambda log L
    (bench.toyworld.process.judge_score): it likes length, which the length-controlled win rate has to undo.
    """

    def __init__(self, prob_second: Callable[[str, str], float]):
        self.prob_second = prob_second

    def preference(self, output_1: str, output_2: str) -> float:
        """AlpacaEval's preference convention: 1 = output_1 wins, 2 = output_2 wins, soft in between."""
        return 1.0 + self.prob_second(output_1, output_2)

    def __call__(self, prompts: Sequence[str], **kwargs: Any) -> dict[str, list[Any]]:
        """The `fn_completions` contract: completions, price and time per example (kwargs are ignored)."""
        completions, times = [], []
        for prompt in prompts:
            t0 = time.perf_counter()
            completions.append(repr(self.preference(*parse_prompt(prompt))))  # repr: round-trips exactly
            times.append(time.perf_counter() - t0)
        return {
            "completions": completions,
            "price_per_example": [0.0] * len(completions),
            "time_per_example": times,
        }


def make_fn_completions(spec: RunSpec, sources: Sources) -> ToyJudge:
    """The judge that comes with the run's data (the toy world's); refused on data that has none."""
    prob = sources.data.judge_preference()
    if prob is None:
        raise ConfigError(
            f"eval.judge=toy scores the toy world's vocabulary, but dataset={spec.dataset.name} has no judge "
            "of its own: use "
            "eval.judge=local_lm or reward_model (with eval.judge_model), or an AlpacaEval annotator "
            "(e.g. weighted_alpaca_eval_gpt4_turbo); eval=chat and eval=alpaca_eval2 set one up"
        )
    return ToyJudge(prob)
