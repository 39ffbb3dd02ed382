"""The metrics stage: bootstrap and ratio statistics, sample metrics, the judge's rows, metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.config import load_spec
from bench.core.records import read_jsonl
from bench.core.stats import bootstrap_ci, mean_se, ratio_se
from bench.sources import GoldReward, select
from bench.specs import RunSpec
from bench.stages.base import Context
from bench.stages.metrics import Metrics, _judge_metrics, judge_metric_rows, sample_metrics
from bench.toyworld.process import gold_reward, sentiment
from tests.helpers import tiny_overrides


@pytest.fixture()
def spec(tmp_path: Path) -> RunSpec:
    return load_spec(tiny_overrides(tmp_path, "eval.bootstrap=400", "eval.ci_level=0.9"))


def test_bootstrap_ci_of_a_mean_matches_the_normal_interval_and_is_seeded() -> None:
    x = np.random.default_rng(0).normal(1.0, 2.0, size=400)
    mean, se = mean_se(x)
    low, high = bootstrap_ci(x, np.mean, 2000, 0.95, seed=3)
    assert low < mean < high
    assert (high - low) / (2 * 1.96 * se) == pytest.approx(1, abs=0.1)
    assert bootstrap_ci(x, np.mean, 2000, 0.95, seed=3) == (low, high)
    narrow = bootstrap_ci(x, np.mean, 2000, 0.5, seed=3)
    assert low < narrow[0] < narrow[1] < high
    assert all(
        math.isnan(v) for v in bootstrap_ci(x, np.mean, 0, 0.95, 0) + bootstrap_ci(x[:1], np.mean, 9, 0.9, 0)
    )


def test_ratio_se_is_the_bootstrap_spread_of_a_ratio_of_sums() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(10, 40, size=300).astype(float)
    kl = 0.1 * tokens + rng.normal(0, 1, size=300)  # per-prompt sums, so the count is not fixed
    value, se = ratio_se(kl, tokens)
    assert value == pytest.approx(kl.sum() / tokens.sum())
    pairs = np.stack([kl, tokens], 1)
    index = rng.integers(0, 300, size=(3000, 300))
    spread = np.std([pairs[i, 0].sum() / pairs[i, 1].sum() for i in index])
    assert se == pytest.approx(spread, rel=0.1)


def _row(pid: int, j: int, words: list[str], logprobs: list[float], ref: list[float]) -> dict:
    return {
        "prompt_id": pid,
        "sample": j,
        "completion": " " + " ".join(words),
        "n_tokens": len(words),
        "finished": True,
        "logprobs": logprobs,
        "ref_logprobs": ref,
        "kl_steps": [abs(a - b) for a, b in zip(logprobs, ref, strict=True)],
    }


def test_sample_metrics_rows_lengths_and_intervals() -> None:
    policy = [
        _row(0, 0, ["good", "film"], [-1.0, -1.0, -0.5], [-2.0, -1.0, -0.5]),
        _row(0, 1, ["good"], [-1.0, -0.5], [-1.5, -0.5]),
        _row(1, 0, ["bad", "plot", "and", "cast"], [-1.0] * 5, [-1.2] * 5),
        _row(1, 1, ["great", "plot"], [-1.0] * 3, [-1.0] * 3),
    ]
    reference = [
        _row(0, 0, ["dull"], [-1.0] * 2, [-1.0] * 2),
        _row(1, 0, ["plot", "cast"], [-1.0] * 3, [-1.0] * 3),
    ]
    m = {
        r["metric"]: r
        for r in sample_metrics(
            policy, reference, gold=GoldReward((1.0, 3.0), gold_reward, sentiment), bootstrap=200, seed=0
        )
    }
    assert m["kl_seq"]["value"] == pytest.approx(((1.0 + 0.5) / 2 + (1.0 + 0.0) / 2) / 2)
    assert m["kl_token_mean"]["value"] == pytest.approx((1.0 + 0.5 + 1.0) / (3 + 2 + 5 + 3))
    assert m["length_tokens_mean"]["value"] == pytest.approx((1.5 + 3) / 2)
    assert m["length_ratio"]["value"] == pytest.approx((1.5 + 3) / (1 + 2))
    chars = [len(r["completion"]) for r in policy]
    ref_chars = [len(r["completion"]) for r in reference]
    assert m["length_chars_ratio"]["value"] == pytest.approx(
        (chars[0] + chars[1] + chars[2] + chars[3]) / 2 / sum(ref_chars)
    )
    for name in ("kl_seq", "kl_token_mean", "length_ratio", "gold_win_rate", "gold_win_rate_alpha3"):
        assert m[name]["ci_low"] <= m[name]["value"] <= m[name]["ci_high"], name
        assert m[name]["stderr"] >= 0, name
    plain = sample_metrics(policy, reference, GoldReward((1.0,), gold_reward, sentiment))
    assert not any("ci_low" in r for r in plain)  # no bootstrap asked for: no interval fields


def _annotations(prompts: int = 30, seed: int = 0) -> pd.DataFrame:
    """A length-biased judge: the policy (output_2) wins more often the longer it is than the reference."""
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(prompts):
        for i in range(2):
            for j in range(2):
                n1, n2 = rng.integers(2, 12), rng.integers(5, 16)  # the policy writes longer
                p = 1 / (1 + math.exp(-(n2 - n1) / 3 - 0.3))
                rows.append(
                    {
                        "prompt_id": pid,
                        "policy_sample": i,
                        "reference_sample": j,
                        "output_1": " film" * n1,
                        "output_2": " good" * n2,
                        "preference": 1 + float(rng.random() < p),
                    }
                )
    return pd.DataFrame(rows)


def test_judge_rows_through_the_adapter(spec: RunSpec) -> None:
    stats = _judge_metrics(_annotations(), spec)
    rows = {r["metric"]: r for r in judge_metric_rows(stats)}
    assert set(rows) == {
        "win_rate",
        "win_rate_hard",
        "lc_win_rate",
        "judge_length_slope",
        "length_win_correlation",
        "lc_minus_raw",
    }
    assert rows["lc_win_rate"]["glm"] == "length_controlled_minimal"
    for name in ("win_rate", "win_rate_hard"):
        r = rows[name]
        assert r["ci_low"] < r["value"] < r["ci_high"] and r["stderr"] > 0, r
        assert r["ci_high"] - r["ci_low"] == pytest.approx(2 * 1.645 * r["stderr"], rel=0.25)  # ci_level 0.9
    lc = rows["lc_win_rate"]
    assert "ci_low" not in lc or lc["ci_low"] <= lc["value"] <= lc["ci_high"]
    assert rows["judge_length_slope"]["value"] > 0 and rows["length_win_correlation"]["value"] > 0.2
    assert rows["lc_minus_raw"]["value"] == pytest.approx(lc["value"] - rows["win_rate"]["value"])
    assert rows["lc_minus_raw"]["value"] < 0  # the policy is longer and the judge likes length
    assert all(set(r) <= {"metric", "value", "stderr", "ci_low", "ci_high", "glm"} for r in rows.values())


def test_run_metrics_writes_every_row_with_intervals_and_offpolicy(
    spec: RunSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.judge import annotations_path

    run_dir = tmp_path / "run"
    gens = [
        _row(pid, j, ["good"] * (pid % 3 + 1), [-1.0] * (pid % 3 + 2), [-1.3] * (pid % 3 + 2))
        for pid in range(6)
        for j in range(2)
    ]
    ref = [_row(pid, j, ["film"], [-1.0] * 2, [-1.0] * 2) for pid in range(6) for j in range(2)]
    run_dir.mkdir()
    ctx = Context(spec, select(spec), run_dir, tmp_path / "policy")
    ctx.reference_dir.mkdir(parents=True)
    for path, rows in ((run_dir / "generations.jsonl", gens), (ctx.reference_dir / "generations.jsonl", ref)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "lm_eval.json").write_text(json.dumps({"results": {"toy_mc": {"acc,none": 0.5}}}))
    annotations = annotations_path(spec, run_dir)
    annotations.parent.mkdir(parents=True)
    annotations.write_text(_annotations(prompts=6).to_json(orient="records"))
    offpolicy = {"offpolicy_pairs": 4.0}
    for name in ("offpolicy_logratio_chosen", "offpolicy_logratio_rejected", "offpolicy_margin_accuracy"):
        offpolicy |= {name: 0.25, f"{name}_stderr": 0.1}
    # the off-policy log-ratios need a trained policy (tests/test_kl.py checks them); here only their rows
    monkeypatch.setattr("bench.stages.metrics._offpolicy", lambda ctx: offpolicy)
    Metrics().run(ctx)
    out = run_dir / "metrics.jsonl"
    m = {r["metric"]: r for r in read_jsonl(out) if "split" not in r}
    assert m["kl_seq"]["value"] == pytest.approx(np.mean([0.3 * (p % 3 + 2) for p in range(6)]))
    assert m["kl_seq"]["ci_low"] <= m["kl_seq"]["value"] <= m["kl_seq"]["ci_high"]
    assert m["gold_win_rate"]["ci_low"] <= m["gold_win_rate"]["ci_high"]
    assert m["offpolicy_margin_accuracy"] == {
        "metric": "offpolicy_margin_accuracy",
        "value": 0.25,
        "stderr": 0.1,
    }
    assert m["lc_win_rate"]["glm"] == "length_controlled_minimal" and "win_rate_hard" in m
    assert m["lm_eval/toy_mc/acc"]["value"] == 0.5
    assert {"kl_token_mean", "kl_token_k3_mean", "length_chars_ratio", "judge_length_slope"} <= set(m)
    assert all(r["stderr"] is None or isinstance(r["stderr"], float) for r in m.values())

    # the same metrics per prompt split, and the per-prompt values the report resamples
    from bench.core.splits import prompt_split

    per_prompt = read_jsonl(run_dir / "per_prompt.jsonl")
    assert [r["prompt_id"] for r in per_prompt] == list(range(6))
    assert all(r["split"] == prompt_split(r["prompt_id"]) for r in per_prompt)
    assert np.mean([r["win_rate"] for r in per_prompt]) == pytest.approx(m["win_rate"]["value"])
    assert np.mean([r["kl_seq"] for r in per_prompt]) == pytest.approx(m["kl_seq"]["value"])
    assert all("lc_win_rate" in r for r in per_prompt)  # jackknife pseudo-values within each split
    for split in ("val", "test"):
        rows = {r["metric"]: r for r in read_jsonl(out) if r.get("split") == split}
        mine = [r for r in per_prompt if r["split"] == split]
        assert {"win_rate", "lc_win_rate", "kl_seq", "gold_win_rate"} <= set(rows)
        assert rows["kl_seq"]["value"] == pytest.approx(np.mean([r["kl_seq"] for r in mine]))
        assert rows["win_rate"]["value"] == pytest.approx(np.mean([r["win_rate"] for r in mine]))


def test_the_offpolicy_diagnostic_is_left_out_for_unpaired_training_rows() -> None:
    """Unpaired rows (KTO's own data) have no chosen/rejected pairs: no diagnostic, and no model loaded."""
    from types import SimpleNamespace

    from bench.stages.metrics import _offpolicy, offpolicy_metric_rows

    class NoModels:
        def load(self, path: object) -> None:
            raise AssertionError("a model was loaded for a diagnostic that is left out")

    rows = [
        {"prompt": "p", "completion": "c", "label": True},
        {"prompt": "q", "completion": "d", "label": False},
    ]
    data = SimpleNamespace(training_rows=lambda: rows)
    spec = SimpleNamespace(dataset=SimpleNamespace(name="unpaired"))
    ctx = SimpleNamespace(sources=SimpleNamespace(data=data, model=NoModels()), spec=spec)
    assert _offpolicy(ctx) == {}  # type: ignore[arg-type]
    assert offpolicy_metric_rows({}) == []
