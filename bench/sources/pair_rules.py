"""Rules that turn K scored completions of one prompt into preference pairs (issue 15's preference data from a
model; the same rules serve any scored list).

Each rule takes the completions' scores (a pointwise judge's, a reward model's, the toy world's gold reward)
and returns pairs of indices (chosen, rejected) with the chosen one scored strictly higher: a tie carries no
preference and makes no pair.

  best_worst   the highest against the lowest (SimPO v0.2's on-policy data, Llama 3's rejection sampling)
  all_pairs    every pair with different scores, K(K-1)/2 at most
  random_pair  two distinct completions drawn at random, ordered by their scores (a pairwise judge can label
               such a pair without scores: `needs_scores` is False for it alone)
  rso          statistical rejection sampling (Liu et al. 2024, "Statistical Rejection Sampling Improves
               Preference Optimization", arXiv:2309.06657, Algorithm 1): candidates are accepted with
               probability exp((r - r_max) / beta), r_max the largest reward still in the pool, pass after
               pass until `num_samples` are accepted (or the pool is empty); the accepted ones are paired in
               order of acceptance, (1st, 2nd), (3rd, 4th), ..., each ordered by reward. The accepted
               completions approximate samples from the optimal policy pi* ~ pi_sft exp(r / beta).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.core.errors import ConfigError

Pair = tuple[int, int]


def _ordered(i: int, j: int, scores: Sequence[float]) -> list[Pair]:
    if scores[i] == scores[j]:
        return []
    return [(i, j)] if scores[i] > scores[j] else [(j, i)]


def best_worst(scores: Sequence[float]) -> list[Pair]:
    if len(scores) < 2:
        return []
    best = max(range(len(scores)), key=lambda i: scores[i])  # first of the tied best: the data's order
    worst = min(range(len(scores)), key=lambda i: scores[i])
    return _ordered(best, worst, scores)


def all_pairs(scores: Sequence[float]) -> list[Pair]:
    return [p for i, j in itertools.combinations(range(len(scores)), 2) for p in _ordered(i, j, scores)]


def random_pair(scores: Sequence[float], rng: np.random.Generator) -> list[Pair]:
    if len(scores) < 2:
        return []
    i, j = (int(k) for k in rng.choice(len(scores), size=2, replace=False))
    return _ordered(i, j, scores)


def rso_pass(
    rewards: Sequence[float], pool: Sequence[int], beta: float, room: int, rng: np.random.Generator
) -> list[int]:
    """One pass of Algorithm 1 over `pool`: each candidate in turn accepted with probability
    exp((r - r_max) / beta), r_max the largest reward in the pool, until `room` are accepted."""
    top = max(rewards[i] for i in pool)
    taken: list[int] = []
    for i in pool:
        if len(taken) == room:
            break
        if rng.uniform() < math.exp((rewards[i] - top) / beta):
            taken.append(i)
    return taken


def rso_accept(
    rewards: Sequence[float], beta: float, num_samples: int, rng: np.random.Generator
) -> list[int]:
    """Indices accepted by RSO's Algorithm 1, in order of acceptance: passes over the shrinking pool."""
    pool = list(range(len(rewards)))
    accepted: list[int] = []
    while pool and len(accepted) < num_samples:
        taken = rso_pass(rewards, pool, beta, num_samples - len(accepted), rng)
        accepted += taken
        pool = [i for i in pool if i not in taken]
    return accepted


def rso(
    scores: Sequence[float], rng: np.random.Generator, beta: float = 0.5, num_samples: int = 2
) -> list[Pair]:
    accepted = rso_accept(scores, beta, num_samples, rng)
    return [p for a, b in zip(accepted[0::2], accepted[1::2], strict=False) for p in _ordered(a, b, scores)]


@dataclass(frozen=True)
class PairRule:
    """A named rule with its settings (`rso`: beta and num_samples)."""

    name: str
    beta: float = 0.5
    num_samples: int = 2

    @property
    def needs_scores(self) -> bool:
        """Whether the rule needs pointwise scores (every rule but random_pair, which a pairwise judge can
        label)."""
        return self.name != "random_pair"

    def pairs(self, scores: Sequence[float], rng: np.random.Generator) -> list[Pair]:
        if self.name == "best_worst":
            return best_worst(scores)
        if self.name == "all_pairs":
            return all_pairs(scores)
        if self.name == "random_pair":
            return random_pair(scores, rng)
        return rso(scores, rng, self.beta, self.num_samples)


RULES = ("best_worst", "all_pairs", "random_pair", "rso")


def pair_rule(name: str, beta: float = 0.5, num_samples: int = 2) -> PairRule:
    """The rule called `name`, its settings checked (ConfigError naming the key and the fix)."""
    if name not in RULES:
        raise ConfigError(f"pair rule {name!r} is none of {', '.join(RULES)}")
    if name == "rso" and not (beta > 0 and num_samples >= 2):
        raise ConfigError(
            f"pair rule rso needs beta > 0 and num_samples >= 2 (one pair per two accepted samples); "
            f"got beta={beta}, num_samples={num_samples}"
        )
    return PairRule(name, beta, num_samples)


def list_pairs(
    scores: Sequence[Sequence[float]], rule: PairRule, seed: int, start: int = 0
) -> list[tuple[int, int, int]]:
    """(list index, chosen, rejected) of every list's pairs under `rule`. The random draws of list k come from
    its own generator seeded (seed, start + k), so a data set built part by part (`start` = the part's first
    list) equals one built in one go, and online batches (bench.train.online) draw the same way."""
    return [
        (k, c, r)
        for k, values in enumerate(scores)
        for c, r in rule.pairs(values, np.random.default_rng([seed, start + k]))
    ]


def pairs_from_lists(
    lists: Sequence[dict[str, object]], rule: PairRule, seed: int, start: int = 0
) -> tuple[list[dict[str, object]], int]:
    """(preference rows, prompts that gave no pair) from scored lists {prompt, completions, scores}, drawn
    as `list_pairs` draws them."""
    scores: list[list[float]] = []
    for k, item in enumerate(lists):
        completions, values = item["completions"], item["scores"]
        if (
            not isinstance(completions, list)
            or not isinstance(values, list)
            or len(completions) != len(values)
        ):
            raise ConfigError(f"list {start + k}: `completions` and `scores` must be lists of one length")
        scores.append(values)
    found = list_pairs(scores, rule, seed, start)
    rows: list[dict[str, object]] = []
    for k, c, r in found:
        completions = lists[k]["completions"]
        assert isinstance(completions, list)  # checked above
        rows.append(
            {
                "prompt": lists[k]["prompt"],
                "chosen": completions[c],
                "rejected": completions[r],
                "score_chosen": float(scores[k][c]),
                "score_rejected": float(scores[k][r]),
            }
        )
    return rows, len(lists) - len({k for k, _, _ in found})
