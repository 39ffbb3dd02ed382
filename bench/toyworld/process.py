"""The toy world's ground truth: prompts, the base process, the gold reward and the length-biased judge.

Everything here is plain numpy over word lists, so a property (the judge likes length, the gold reward does
not) can be tested without a model. The design and the constants that were measured to work are in
docs/toyworld.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .vocab import NEGATIVE, NEUTRAL, POSITIVE, TOPICS, word_class


@dataclass(frozen=True)
class WorldParams:
    """The knobs of the world; their hash (with the reference model's) names the world's cache folder."""

    seed: int = 0
    min_topics: int = 2  # topic nouns per prompt, inclusive range
    max_topics: int = 6
    min_len: int = 4  # completion length in words before <eos>, uniform, inclusive
    max_len: int = 32
    p_base: float = 0.25  # mean probability of a positive (negative) word
    p_spread: float = 0.15  # how far the prompt moves that probability: p = base + spread * clip(2 mean a_w)
    judge_lambda: float = 0.3  # the judge's length bonus per nat of log length
    judge_tau: float = 0.1  # judge temperature: P(y1 > y2) = sigmoid((s1 - s2) / tau)
    # A word the judge misreads as praise, worth judge_hack_bonus / L each on top of its own class (the gold
    # reward keeps its class): a judge a policy can over-optimise (dataset=toy_overopt). Off by default.
    judge_hack_word: str = ""
    judge_hack_bonus: float = 0.0
    gold_alphas: tuple[float, ...] = (1.0, 3.0)  # repetition penalties the gold reward is reported at
    # Reference samples per training prompt: 2 makes pairs; K > 2 also writes ranked lists of K (lists.jsonl),
    # which the world's data then gives (dataset=toy_lists; pairwise variants get best against worst)
    list_size: int = 2
    n_sft: int = 40000  # base-process samples the reference model is fitted to
    n_train_prompts: int = 2000  # preference pairs, one per prompt
    n_heldout_prompts: int = 256  # evaluation prompts, disjoint from all training prompts
    n_task_docs: int = 200  # documents in each shipped lm-eval task


# Knobs that make another kind of world rather than a bigger or smaller one (off by default): a shrunk study
# of such a world keeps them on its tiny stand-in (bench.shrink), so it still exercises what it is about
WORLD_KINDS = ("judge_hack_word", "judge_hack_bonus", "list_size")


def judge_hack(params: WorldParams) -> tuple[str, float]:
    """(word, bonus) of the judge's misread word; ("", 0.0) in the default world."""
    return params.judge_hack_word, params.judge_hack_bonus


class Features:
    """Per-topic features a_w, b_w ~ U(-1, 1) that make p(x), q(x) an additive, learnable function of x."""

    def __init__(self, params: WorldParams):
        rng = np.random.default_rng([params.seed, 1])
        self.params = params
        self.a = dict(zip(TOPICS, rng.uniform(-1, 1, len(TOPICS)), strict=True))
        self.b = dict(zip(TOPICS, rng.uniform(-1, 1, len(TOPICS)), strict=True))

    def class_probs(self, topics: Sequence[str]) -> tuple[float, float]:
        """(p, q): probability that each completion word is positive, negative."""
        base, spread = self.params.p_base, self.params.p_spread
        p = base + spread * float(np.clip(2 * np.mean([self.a[t] for t in topics]), -1, 1))
        q = base + spread * float(np.clip(2 * np.mean([self.b[t] for t in topics]), -1, 1))
        return p, q


def prompt_text(topics: Sequence[str]) -> str:
    return "review : " + " ".join(topics)


def topics_of(prompt: str) -> list[str]:
    words = prompt.split()
    if words[:2] != ["review", ":"] or not words[2:]:
        raise ValueError(f"not a toy-world prompt (expected 'review : <topic> ...'): {prompt!r}")
    return words[2:]


def sample_prompts(
    rng: np.random.Generator, n: int, params: WorldParams, exclude: set[frozenset[str]]
) -> list[str]:
    """n distinct prompts whose topic sets are not in `exclude` (which grows, keeping splits disjoint)."""
    prompts: list[str] = []
    while len(prompts) < n:
        k = int(rng.integers(params.min_topics, params.max_topics + 1))
        topics = [TOPICS[i] for i in rng.choice(len(TOPICS), size=k, replace=False)]
        key = frozenset(topics)
        if key in exclude:
            continue
        exclude.add(key)
        prompts.append(prompt_text(topics))
    return prompts


def sample_completion(
    rng: np.random.Generator, p: float, q: float, params: WorldParams, length: int | None = None
) -> str:
    """One draw of the base process: a length, then each word's class, then a word uniformly in its class."""
    n = int(rng.integers(params.min_len, params.max_len + 1)) if length is None else length
    classes = rng.choice(3, size=n, p=[p, q, 1 - p - q])
    words = [
        POSITIVE[rng.integers(len(POSITIVE))]
        if c == 0
        else NEGATIVE[rng.integers(len(NEGATIVE))]
        if c == 1
        else NEUTRAL[rng.integers(len(NEUTRAL))]
        for c in classes
    ]
    return " " + " ".join(words)


def _counts(completion: str) -> tuple[int, int, int, int]:
    """(#positive, #negative, length, #distinct) over the completion's words."""
    words = completion.split()
    pos = sum(word_class(w) == "pos" for w in words)
    neg = sum(word_class(w) == "neg" for w in words)
    return pos, neg, len(words), len(set(words))


def sentiment(completion: str) -> float:
    """(#pos - #neg) / L, in [-1, 1]; 0 for an empty completion."""
    pos, neg, n, _ = _counts(completion)
    return (pos - neg) / max(n, 1)


def gold_reward(completion: str, alpha: float) -> float:
    """r* = (#pos - #neg)/L - alpha * (1 - distinct/L): length-neutral, penalises repetition."""
    pos, neg, n, distinct = _counts(completion)
    n = max(n, 1)
    return (pos - neg) / n - alpha * (1 - distinct / n)


def judge_score(completion: str, lam: float, hack: tuple[str, float] = ("", 0.0)) -> float:
    """s = (#pos - #neg)/L + lam * log L [+ bonus * #word / L for hack = (word, bonus)]: the judge's view,
    which rewards length (and a word the gold reward does not value as the judge does)."""
    pos, neg, n, _ = _counts(completion)
    n = max(n, 1)
    word, bonus = hack
    extra = bonus * completion.split().count(word) / n if bonus else 0.0
    return (pos - neg) / n + lam * math.log(n) + extra


def judge_prob(
    completion_1: str, completion_2: str, lam: float, tau: float, hack: tuple[str, float] = ("", 0.0)
) -> float:
    """P(the judge prefers completion_2 over completion_1) = sigmoid((s2 - s1) / tau)."""
    z = (judge_score(completion_2, lam, hack) - judge_score(completion_1, lam, hack)) / tau
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
