"""The judge stage: the toy judge through a real alpaca_eval.evaluate call, reference-outputs files, win rates
with bootstrap intervals, the judge's length sensitivity, and the offline LC GLMs (minimal and v1)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the hub (the LC GLM must not download df_gamed)

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.judge import (
    annotations_path,
    available_judges,
    judge_length_stats,
    load_annotations,
    win_rates,
)
from bench.judge.lc import lc_data, lc_fit, lc_refit
from bench.judge.toy import ToyJudge, parse_prompt
from bench.judge.winrates import lc_pseudo_values
from bench.specs import RunSpec
from bench.toyworld.build import world_params
from bench.toyworld.process import judge_prob
from bench.toyworld.vocab import NEUTRAL
from tests.helpers import REPO, check_judge, run_judge

TEMPLATE = (REPO / "bench/judge/annotators/toy_judge/prompt.txt").read_text()


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

    params = world_params(spec.dataset.world)
    judge = ToyJudge(lambda a, b: judge_prob(a, b, params.judge_lambda, params.judge_tau))
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
    lam, tau = world_params(spec.dataset.world).judge_lambda, world_params(spec.dataset.world).judge_tau
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
    rates = win_rates(df, bootstrap=200, ci_level=0.95, seed=spec.seed)
    assert rates["win_rate"] > 0.8 and rates["win_rate_hard"] > 0.9
    assert abs(rates["lc_win_rate"] - 0.5) < 0.1
    # the intervals say the same: raw far above one half, LC's interval close around it
    assert (
        rates["win_rate_ci_low"] > 0.75 and rates["lc_win_rate_ci_high"] - rates["lc_win_rate_ci_low"] < 0.2
    )
    assert rates["lc_win_rate_ci_low"] < rates["lc_win_rate"] < rates["lc_win_rate_ci_high"]
    assert rates["lc_glm"] == "length_controlled_minimal"
    # the judge's length sensitivity: a large positive slope (log-odds per 100 characters), preference tracks
    # length, and length control removes most of the raw win rate's excess
    stats = judge_length_stats(df, rates)
    assert set(stats) == {"judge_length_slope", "length_win_correlation", "lc_minus_raw"}
    assert stats["judge_length_slope"] > 1.5 and stats["length_win_correlation"] > 0.5
    assert (
        stats["lc_minus_raw"] == pytest.approx(rates["lc_win_rate"] - rates["win_rate"])
        and stats["lc_minus_raw"] < -0.2
    )
    assert judge_length_stats(df)["lc_minus_raw"] == pytest.approx(stats["lc_minus_raw"])  # recomputed alike
    board = pd.read_csv(tmp_path / "run/judgments/toy/leaderboard.csv", index_col=0)
    assert board.loc["policy", "length_controlled_winrate"] == pytest.approx(100 * rates["lc_win_rate"])
    assert board.loc["policy", "lc_glm"] == "length_controlled_minimal"
    assert (
        board.loc["policy", "length_controlled_winrate_ci_low"]
        < board.loc["policy", "length_controlled_winrate"]
    )


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


# ---------------------------------------------------------------- reference outputs


def with_eval(spec: RunSpec, **changes: Any) -> RunSpec:
    return dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, **changes))


def test_reference_outputs_file(spec: RunSpec, tmp_path: Path) -> None:
    policy = {(0, 0): " good film", (0, 1): " the plot was dull", (1, 0): " a fine cast", (1, 1): " bad"}
    ref_file = tmp_path / "baseline.jsonl"
    lines = [
        {"instruction": "review : film plot 0", "output": " a dull film", "generator": "gpt4_1106_preview"},
        {"instruction": "review : film plot 0 ", "output": " a good film", "generator": "gpt4_1106_preview"},
        {"instruction": "review : film plot 1", "output": " lovely", "generator": "gpt4_1106_preview"},
        {"instruction": "review : unused", "output": " x", "generator": "gpt4_1106_preview"},
    ]
    ref_file.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with_file = with_eval(spec, reference_outputs=str(ref_file))
    check_judge(with_file)
    df = load_annotations(run_judge(with_file, tmp_path / "run", _rows(policy), []))
    assert len(df) == 2 * 2 + 2 * 1  # prompt 0: two reference outputs in the file; prompt 1: one
    assert set(df.loc[df["prompt_id"] == 0, "output_1"]) == {" a dull film", " a good film"}
    assert set(df["generator_1"]) == {"gpt4_1106_preview"}

    missing = {**policy, (2, 0): " new", (3, 0): " newer"}
    with pytest.raises(
        ConfigError, match=r"no output for 2 of the 4 policy prompts.*film plot 2.*film plot 3"
    ):
        run_judge(with_file, tmp_path / "run2", _rows(missing), [])
    assert not (tmp_path / "run2").exists()  # refused before any annotation
    ref_file.write_text(json.dumps([{"instruction": "a", "answer": "b"}]))
    with pytest.raises(ConfigError, match="row 0: need string fields 'instruction' and 'output'"):
        check_judge(with_file)


# ---------------------------------------------------------------- win rates, bootstrap, LC GLMs


def _synthetic(n_prompts: int, pairs: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_prompts):
        for k in range(pairs):
            l1, l2 = rng.integers(20, 200), rng.integers(20, 260)
            pref = 1 / (1 + math.exp(-(l2 - l1) / 60 - 0.3 + rng.normal()))
            out.append(
                {
                    "prompt_id": p,
                    "pair": k,
                    "output_1": "x" * l1,
                    "output_2": "y" * l2,
                    "preference": 1 + pref,
                }
            )
    return pd.DataFrame(out)


def test_bootstrap_intervals_over_prompts() -> None:
    df = _synthetic(64, 4)
    plain = win_rates(df)
    assert math.isnan(plain["win_rate_ci_low"]) and math.isnan(plain["lc_win_rate_ci_high"])
    rates = win_rates(df, bootstrap=200, ci_level=0.9, seed=3)
    assert rates == win_rates(df, bootstrap=200, ci_level=0.9, seed=3)  # deterministic under a seed
    for name in ("win_rate", "win_rate_hard", "lc_win_rate"):
        assert rates[f"{name}_ci_low"] < rates[name] < rates[f"{name}_ci_high"]
        assert rates[name] == plain[name]
    # the plain-rate interval is the percentile interval of resampled per-prompt means, prompts drawn whole
    per_prompt = (df["preference"] - 1).groupby(df["prompt_id"]).mean().to_numpy()
    counts = np.random.default_rng(3).multinomial(64, np.full(64, 1 / 64), size=200)
    low, high = np.quantile(counts @ per_prompt / 64, [0.05, 0.95])
    assert (rates["win_rate_ci_low"], rates["win_rate_ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert rates["lc_win_rate_stderr"] > 0 and rates["lc_glm"] == "length_controlled_minimal"
    # the fixed-C refit is AlpacaEval's estimator: with every pair once it reproduces the full fit
    data = lc_data(df)
    value, C = lc_fit(data)
    assert C is not None and lc_refit(data, C, np.ones(len(df))) == pytest.approx(value, abs=1e-9)


def test_lc_pseudo_values_put_the_lc_win_rate_through_the_one_interval_method() -> None:
    """The LC win rate is a fitted GLM: its jackknife pseudo-values over prompts average to about its value
    and spread as it varies from prompt set to prompt set (the report's intervals rest on them)."""
    df = _synthetic(64, 4)
    pseudo = lc_pseudo_values(df)
    value = lc_fit(lc_data(df))[0]
    assert sorted(pseudo) == sorted(df["prompt_id"].unique())
    assert np.mean(list(pseudo.values())) == pytest.approx(value, abs=0.02)  # the jackknife estimate
    jackknife_se = np.std(list(pseudo.values()), ddof=1) / 8  # sqrt(64 prompts)
    assert jackknife_se == pytest.approx(win_rates(df, bootstrap=300, seed=1)["lc_win_rate_stderr"], rel=0.3)
    # no length variation: the LC win rate is the raw rate, whose pseudo-values are the per-prompt means
    same = df.assign(output_1="x" * 10, output_2="y" * 10)
    means = (same["preference"] - 1).groupby(same["prompt_id"]).mean()
    assert lc_pseudo_values(same) == pytest.approx(means.to_dict())


def _gamed_csv(path: Path, instructions: list[str], with_instruction: bool = True) -> Path:
    """A small stand-in for AlpacaEval's df_gamed.csv: two gamed baselines (verbose, concise) per instruction,
    rows of the first baseline first so that row label i is instruction i (as AlpacaEval's lookup assumes)."""
    rng = np.random.default_rng(7)
    difficulty = rng.normal(size=len(instructions))
    out = []
    for model, sign in (("gpt4_1106_preview_verbose", -1), ("gpt4_1106_preview_concise", 1)):
        for i, text in enumerate(instructions):
            std_delta = sign * abs(rng.normal()) * 1.5
            pref = 1 / (1 + math.exp(-(-0.8 * math.tanh(std_delta) - 0.5 * difficulty[i])))
            out.append({"index": i, "instruction": text, "model": model, "preference": pref,
                        "std_delta_len": std_delta, "instruction_difficulty": difficulty[i],
                        "not_gamed_baseline": False})  # fmt: skip
    frame = pd.DataFrame(out)
    frame.drop(columns=[] if with_instruction else ["instruction"]).to_csv(path, index=False)
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")  # sklearn 1.8+ deprecations in AlpacaEval's own fit
def test_lc_v1_from_a_local_gamed_csv(spec: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import alpaca_eval.metrics.glm_winrate as glm

    instructions = [f"review : film plot {i}" for i in range(8)]
    csv = _gamed_csv(tmp_path / "df_gamed.csv", instructions)
    rng = np.random.default_rng(1)
    policy = {(p, s): " " + " ".join(["plot"] * int(rng.integers(3, 20))) for p in range(8) for s in range(2)}
    reference = {
        (p, s): " " + " ".join(["film"] * int(rng.integers(3, 12))) for p in range(8) for s in range(2)
    }
    v1 = with_eval(spec, alpaca_eval_gamed_csv=str(csv))
    check_judge(v1)
    path = run_judge(v1, tmp_path / "run", _rows(policy), _rows(reference))
    df = load_annotations(path)
    assert (df["alpaca_eval_index"] == df["prompt_id"]).all()
    rates = win_rates(df, gamed_csv=csv)
    assert rates["lc_glm"] == "length_controlled_v1"
    assert (
        pd.read_csv(path.parent / "leaderboard.csv", index_col=0).loc["policy", "lc_glm"]
        == "length_controlled_v1"
    )
    assert win_rates(df)["lc_glm"] == "length_controlled_minimal"  # no csv, no v1

    # the same number as AlpacaEval's own get_length_controlled_winrate, its download pointed at our csv;
    # it takes one pair per instruction in index order (its `index` is the row position)
    one = df[(df["policy_sample"] == 0) & (df["reference_sample"] == 0)].sort_values("alpaca_eval_index")
    one = one.reset_index(drop=True)
    monkeypatch.setattr(glm, "hf_hub_download", lambda **kwargs: str(csv))
    theirs = glm.get_length_controlled_winrate(
        one.drop(columns=["alpaca_eval_index"]).copy(), glm_name="length_controlled_v1", save_weights_dir=None
    )
    ours = win_rates(one, gamed_csv=csv)
    assert ours["lc_glm"] == "length_controlled_v1"
    assert 100 * ours["lc_win_rate"] == pytest.approx(theirs["length_controlled_winrate"], abs=1e-9)

    # prompts that are not the csv's instruction set: minimal
    other = {k: v for k, v in policy.items() if k[0] < 6}
    df_other = load_annotations(run_judge(v1, tmp_path / "run2", _rows(other), _rows(reference)[:12]))
    assert (
        "alpaca_eval_index" not in df_other
        and win_rates(df_other, gamed_csv=csv)["lc_glm"] == "length_controlled_minimal"
    )

    # a csv without instructions: the reference-outputs file in AlpacaEval's order supplies the index
    bare = _gamed_csv(tmp_path / "bare.csv", instructions, with_instruction=False)
    ref_file = tmp_path / "ref.json"
    ref_file.write_text(
        json.dumps([{"instruction": t, "output": f" film {i}"} for i, t in enumerate(instructions)])
    )
    by_file = with_eval(spec, alpaca_eval_gamed_csv=str(bare), reference_outputs=str(ref_file))
    df_file = load_annotations(run_judge(by_file, tmp_path / "run3", _rows(policy), []))
    assert (df_file["alpaca_eval_index"] == df_file["prompt_id"]).all()
    assert win_rates(df_file, gamed_csv=bare)["lc_glm"] == "length_controlled_v1"
