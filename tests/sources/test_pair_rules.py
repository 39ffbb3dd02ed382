"""Pair rules on hand-made scores (the exact pairs each chooses), and RSO's acceptance against its formula
(Liu et al. 2024, Algorithm 1: accept with probability exp((r - r_max) / beta))."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.core.errors import ConfigError
from bench.sources.pair_rules import all_pairs, best_worst, pair_rule, random_pair, rso, rso_accept, rso_pass

SCORES = [0.2, 0.9, 0.5, 0.9, 0.1]  # two tied best (1 and 3), one worst (4)


def test_best_worst_takes_the_first_tied_best_against_the_worst() -> None:
    assert best_worst(SCORES) == [(1, 4)]
    assert best_worst([0.5, 0.5, 0.5]) == []  # all tied: no preference
    assert best_worst([1.0]) == []


def test_all_pairs_orders_every_untied_pair_by_score() -> None:
    pairs = all_pairs(SCORES)
    assert len(pairs) == 9  # C(5, 2) = 10, less the tied (1, 3)
    assert (1, 3) not in pairs and (3, 1) not in pairs
    assert all(SCORES[c] > SCORES[r] for c, r in pairs)
    assert set(pairs) == {(0, 4), (1, 0), (2, 0), (3, 0), (1, 2), (1, 4), (3, 2), (2, 4), (3, 4)}


def test_random_pair_draws_two_distinct_completions_uniformly() -> None:
    rng = np.random.default_rng(0)
    counts: dict[frozenset[int], int] = {}
    for _ in range(5000):
        for c, r in random_pair([0.0, 1.0, 2.0], rng):
            assert c > r  # higher score (index = score here) is chosen
            counts[frozenset((c, r))] = counts.get(frozenset((c, r)), 0) + 1
    assert len(counts) == 3 and all(abs(n / 5000 - 1 / 3) < 0.03 for n in counts.values())
    assert not pair_rule("random_pair").needs_scores and pair_rule("rso").needs_scores


def test_rso_accepts_each_candidate_with_its_formula_probability() -> None:
    rewards, beta, trials = [1.0, 0.5, 0.0, -1.0], 0.5, 20000
    rng = np.random.default_rng(1)
    counts = np.zeros(len(rewards))
    for _ in range(trials):
        for i in rso_pass(rewards, range(len(rewards)), beta, len(rewards), rng):
            counts[i] += 1
    expected = [math.exp((r - max(rewards)) / beta) for r in rewards]  # 1, e^-1, e^-2, e^-4
    assert np.allclose(counts / trials, expected, atol=0.01), (counts / trials, expected)
    # a second pass's maximum is the best reward left: after the best is taken, the next one is certain
    assert rso_pass(rewards, [1, 2, 3], beta, 1, rng) == [1]


def test_rso_pairs_the_accepted_samples_in_order_and_stops_at_num_samples() -> None:
    rng = np.random.default_rng(2)
    rewards = [3.0, 2.0, 1.0, 0.0]
    accepted = rso_accept(rewards, beta=100.0, num_samples=3, rng=rng)  # large beta: accept almost all
    assert len(accepted) == 3 and len(set(accepted)) == 3
    pairs = rso(rewards, np.random.default_rng(2), beta=100.0, num_samples=4)
    assert len(pairs) == 2 and all(rewards[c] > rewards[r] for c, r in pairs)
    assert rso_accept(rewards, beta=1e-3, num_samples=2, rng=rng)[0] == 0  # tiny beta: the best first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tournament",), "none of best_worst"),
        (("rso", 0.0), "beta > 0"),
        (("rso", 0.5, 1), "num_samples >= 2"),
    ],
)
def test_bad_rules_and_settings_name_the_fix(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pair_rule(*args)  # type: ignore[arg-type]


def test_pairs_from_lists_built_part_by_part_equal_one_build() -> None:
    from bench.sources.pair_rules import pairs_from_lists

    rng = np.random.default_rng(3)
    lists = [
        {
            "prompt": f"p{k}",
            "completions": [f"c{k}-{i}" for i in range(4)],
            "scores": rng.normal(size=4).tolist(),
        }
        for k in range(10)
    ]
    lists[4]["scores"] = [1.0, 1.0, 1.0, 1.0]  # all tied: no pair
    for name in ("random_pair", "rso", "best_worst"):
        rule = pair_rule(name, beta=0.3, num_samples=2)
        whole, empty = pairs_from_lists(lists, rule, seed=7)
        first, e1 = pairs_from_lists(lists[:6], rule, seed=7)
        second, e2 = pairs_from_lists(lists[6:], rule, seed=7, start=6)
        assert whole == first + second and empty == e1 + e2 >= 1
        assert all(r["score_chosen"] > r["score_rejected"] for r in whole)
    rows, _ = pairs_from_lists(lists[:1], pair_rule("best_worst"), seed=0)
    scores = lists[0]["scores"]
    assert rows == [
        {
            "prompt": "p0",
            "chosen": f"c0-{int(np.argmax(scores))}",
            "rejected": f"c0-{int(np.argmin(scores))}",
            "score_chosen": max(scores),
            "score_rejected": min(scores),
        }
    ]
