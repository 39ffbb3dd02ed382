"""Evaluation over training: saved steps go through the same evaluation and form a curve by step."""

from __future__ import annotations

from bench.config import load_spec
from bench.core.records import read_json, read_jsonl
from bench.pipeline import run_one
from bench.train.state import step_checkpoints_dir
from tests.helpers import tiny_overrides


def test_every_steps_gives_a_curve_from_the_reference_to_the_final_policy(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root, "study=curve", "eval.every_steps=2", "loss.beta=0.5"))
    run_dir = run_one(spec)
    # step 4 is the last step: the final checkpoint, not saved twice
    assert sorted(p.name for p in step_checkpoints_dir(spec).iterdir()) == ["step-000002"]
    curve = read_jsonl(run_dir / "curve.jsonl")
    by_step: dict[int, dict[str, float]] = {}
    for row in (r for r in curve if "split" not in r):  # all prompts; split rows are beside them
        by_step.setdefault(row["step"], {})[row["metric"]] = row["value"]
    assert sorted(by_step) == [0, 2, 4]
    assert by_step[0]["kl_seq"] == 0.0 and by_step[0]["win_rate"] == 0.5  # the reference itself
    final = {r["metric"]: r["value"] for r in read_jsonl(run_dir / "metrics.jsonl") if "split" not in r}
    assert by_step[4]["kl_seq"] == final["kl_seq"]  # the run's own final metrics
    assert by_step[2]["kl_seq"] > 0
    for name in ("win_rate", "gold_win_rate", "kl_seq"):
        assert all(name in by_step[s] for s in by_step)
    assert read_json(run_dir / "status.json")["stages"]["curve"]["state"] == "done"
