"""The judge stage: the toy judge through a real alpaca_eval.evaluate call, win rates, the offline LC."""

from __future__ import annotations

import dataclasses
import math
import os
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the hub (the LC GLM must not download df_gamed)

from bench.config import RunSpec, load_spec
from bench.data.toyworld.build import world_params
from bench.data.toyworld.process import judge_prob
from bench.data.toyworld.vocab import NEUTRAL
from bench.errors import ConfigError
from bench.judge import (
    annotations_path,
    available_judges,
    check_judge,
    load_annotations,
    run_judge,
    win_rates,
)
from bench.judge.toy import ToyJudge, parse_prompt

TEMPLATE = (Path(__file__).parents[1] / "bench/judge/annotators/toy_judge/prompt.txt").read_text()


@pytest.fixture
def spec(tmp_path: Path) -> RunSpec:
    return load_spec(
        [
            "model=toy_tiny",
            "dataset=toy_tiny",
            "eval=tiny",
            f"paths.cache={tmp_path}",
            f"paths.results={tmp_path}/results",
        ]
    )


def _format(instruction: str, output_1: str, output_2: str) -> str:
    """What alpaca_eval's make_prompts does with the template (first occurrence of each placeholder)."""
    return (
        TEMPLATE.replace("{instruction}", instruction, 1)
        .replace("{output_1}", output_1, 1)
        .replace("{output_2}", output_2, 1)
    )


def _rows(completions: dict[tuple[int, int], str]) -> list[dict[str, Any]]:
    return [
        {
            "prompt_id": p,
            "sample": s,
            "prompt": f"review : film plot {p}",
            "completion": c,
            "n_tokens": len(c.split()),
        }
        for (p, s), c in completions.items()
    ]


@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
def test_toy_judge_prefers_length_and_returns_soft_preference(spec: RunSpec) -> None:
    from alpaca_eval.completion_parsers import eval_parser

    params = world_params(spec)
    judge = ToyJudge(params.judge_lambda, params.judge_tau)
    short, long = " good film was dull", " good film and plot was dull and the ending"  # sentiment 0 both
    prompts = [_format("review : film", short, long), _format("review : film", long, short)]
    out = judge(prompts=prompts)
    assert set(out) == {"completions", "price_per_example", "time_per_example"}
    assert out["price_per_example"] == [0.0, 0.0]
    p_long = judge_prob(short, long, params.judge_lambda, params.judge_tau)
    assert p_long > 0.5
    (pref_1,), (pref_2,) = (eval_parser(c) for c in out["completions"])
    assert pref_1 == 1 + p_long
    assert pref_2 == 1 + judge_prob(long, short, params.judge_lambda, params.judge_tau)
    assert pref_2 == pytest.approx(3 - pref_1, abs=1e-12)  # what alpaca_eval's switch-back relies on
    assert parse_prompt(prompts[0]) == (short, long)
    with pytest.raises(ValueError, match="exactly once"):
        parse_prompt(_format("review : film", short + " <|end|>", long))


def test_run_judge_all_pairs_files_and_skip(spec: RunSpec, tmp_path: Path) -> None:
    rng = random.Random(1)
    make = lambda: " " + " ".join(rng.choice(NEUTRAL) for _ in range(rng.randint(3, 12)))  # noqa: E731
    policy = {(p, s): make() for p in range(3) for s in range(2)}
    reference = {(p, s): make() for p in range(3) for s in range(2)}
    run_dir = tmp_path / "run"
    path = run_judge(spec, run_dir, _rows(policy), _rows(reference))

    assert path == run_dir / "judgments" / "toy" / "annotations.json" == annotations_path(spec, run_dir)
    assert (path.parent / "leaderboard.csv").is_file()
    assert sorted(p.name for p in path.parent.parent.iterdir()) == ["toy"]  # no temp folder left behind
    df = load_annotations(path)
    assert len(df) == 3 * 2 * 2
    assert not df.duplicated(["prompt_id", "policy_sample", "reference_sample"]).any()
    lam, tau = world_params(spec).judge_lambda, world_params(spec).judge_tau
    for row in df.itertuples():
        assert row.output_2 == policy[(row.prompt_id, row.policy_sample)]
        assert row.output_1 == reference[(row.prompt_id, row.reference_sample)]
        assert row.preference - 1 == pytest.approx(
            judge_prob(row.output_1, row.output_2, lam, tau), abs=1e-12
        )
    assert set(df["generator_2"]) == {"policy"} and set(df["generator_1"]) == {"reference"}
    board = pd.read_csv(path.parent / "leaderboard.csv", index_col=0)
    assert board.loc["policy", "win_rate"] == pytest.approx(100 * (df["preference"] - 1).mean())

    before = path.stat().st_mtime_ns
    assert run_judge(spec, run_dir, [], []) == path  # exists: skipped without looking at the rows
    assert path.stat().st_mtime_ns == before


def test_planted_length_bias_raw_high_lc_near_half(spec: RunSpec, tmp_path: Path) -> None:
    """Policy outputs longer than the reference's, sentiment equal (all neutral words): the judge's raw win
    rate is far above 0.5, and the length-controlled one stays near 0.5. The length ranges overlap: the GLM
    predicts at zero length difference, which it cannot extrapolate to when no pair comes near it."""
    rng = random.Random(0)

    def make(lo: int, hi: int) -> str:
        return " " + " ".join(rng.choice(NEUTRAL) for _ in range(rng.randint(lo, hi)))

    policy = {(p, s): make(14, 32) for p in range(32) for s in range(4)}
    reference = {(p, s): make(4, 18) for p in range(32) for s in range(4)}
    df = load_annotations(run_judge(spec, tmp_path / "run", _rows(policy), _rows(reference)))
    assert len(df) == 32 * 4 * 4
    # alpaca_eval showed some pairs in swapped order and mapped the soft preference back with 3 - x
    switched = df["preference_raw_completion"].astype(float) != df["preference"]
    assert 0 < switched.sum() < len(df)
    rates = win_rates(df)
    assert rates["win_rate"] > 0.8 and rates["win_rate_hard"] > 0.9
    assert abs(rates["lc_win_rate"] - 0.5) < 0.1
    board = pd.read_csv(tmp_path / "run/judgments/toy/leaderboard.csv", index_col=0)
    assert board.loc["policy", "length_controlled_winrate"] == pytest.approx(100 * rates["lc_win_rate"])


def test_unknown_judge_names_the_available_ones(spec: RunSpec, tmp_path: Path) -> None:
    assert "toy" in available_judges()
    check_judge(spec)
    bad = dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, judge="gpt9"))
    with pytest.raises(ConfigError, match=r"gpt9.*available judges: .*toy"):
        run_judge(bad, tmp_path / "run", [], [])
    with pytest.raises(ConfigError, match="available judges"):
        check_judge(bad)


def test_win_rates_hand_computed() -> None:
    prefs = {0: [2.0, 1.5, 1.2, 1.8], 1: [1.0, 1.9, 1.4, 1.5]}
    df = pd.DataFrame(
        [
            {"prompt_id": p, "preference": x, "output_1": " good film", "output_2": " dull plot"}
            for p, xs in prefs.items()
            for x in xs
        ]
    )
    rates = win_rates(df)
    # soft per prompt: (1 + .5 + .2 + .8)/4 = .625 and (0 + .9 + .4 + .5)/4 = .45
    assert rates["win_rate"] == pytest.approx((0.625 + 0.45) / 2)
    assert rates["win_rate_stderr"] == pytest.approx(abs(0.625 - 0.45) / 2)  # sd/sqrt(2) of two values
    # hard per prompt: (1 + .5 + 0 + 1)/4 = .625 and (0 + 1 + 0 + .5)/4 = .375
    assert rates["win_rate_hard"] == pytest.approx(0.5)
    assert rates["win_rate_hard_stderr"] == pytest.approx(0.125)
    # every pair has the same length difference: nothing to control for, LC is the raw rate
    assert rates["lc_win_rate"] == pytest.approx(rates["win_rate"])
    single = win_rates(df[df["prompt_id"] == 0])
    assert single["win_rate"] == pytest.approx(0.625) and math.isnan(single["win_rate_stderr"])
