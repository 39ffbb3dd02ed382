"""Slow tier: at production toy-world sizes, DPO learns what the judge likes and the metrics show it."""

from __future__ import annotations

import pytest

from bench.config import load_spec
from bench.records import read_jsonl
from bench.run import run_one

pytestmark = pytest.mark.slow


def test_dpo_on_the_full_toy_world_wins_by_the_judge_more_than_by_gold(tmp_path) -> None:
    """Default world and training (beta 0.5, 188 steps): the judged win rate rises well above 1/2, the policy
    moves away from the reference (KL > 0) and lengthens, and the gold win rate trails the judge's."""
    overrides = [
        "loss.beta=0.5",
        "study=slow",
        "train.threads=2",
        f"paths.results={tmp_path / 'results'}",
        f"paths.scratch={tmp_path / 'scratch'}",
    ]
    run_dir = run_one(load_spec(overrides))
    m = {r["metric"]: r["value"] for r in read_jsonl(run_dir / "metrics.jsonl")}
    assert m["win_rate"] > 0.7
    assert m["kl_seq"] > 0.5 and m["kl_seq_k1"] > 0.5
    assert m["length_ratio"] > 1.1
    assert m["gold_win_rate"] < m["win_rate"]
    assert m["lc_win_rate"] < m["win_rate"]
