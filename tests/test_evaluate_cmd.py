"""`bench evaluate`: the evaluation stages on a run folder, a saved model, or the reference, no training."""

from __future__ import annotations

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl
from bench.pipeline import evaluate_target, run_one, stages_named
from tests.helpers import tiny_overrides


def _metrics(run_dir) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in read_jsonl(run_dir / "metrics.jsonl") if "split" not in r}


def test_evaluate_run_folder_model_folder_and_reference(tiny_root) -> None:
    overrides = tiny_overrides(tiny_root, "study=evalcmd", "loss.beta=1")
    spec = load_spec(overrides)
    run_dir = run_one(spec)
    before = (run_dir / "metrics.jsonl").stat().st_mtime_ns

    # The run folder itself, no overrides: evaluated in place, nothing recomputed.
    assert evaluate_target(str(run_dir), []) == run_dir
    assert (run_dir / "metrics.jsonl").stat().st_mtime_ns == before

    # The run folder with a changed evaluation: its own folder, the same checkpoint, fewer prompts.
    fewer = evaluate_target(str(run_dir), ["eval.max_prompts=4"])
    assert fewer != run_dir and fewer.name.startswith(f"eval-{run_dir.name}-")
    gens = read_jsonl(fewer / "generations.jsonl")
    assert {g["prompt_id"] for g in gens} == {0, 1, 2, 3}
    assert read_json(fewer / "manifest.json")["policy"] == str(spec.checkpoint_dir())
    assert read_json(fewer / "status.json")["state"] == "done"
    assert not (fewer / "train_log.jsonl").exists()

    # A saved model folder, evaluated against the configured reference.
    saved = evaluate_target(str(spec.checkpoint_dir()), overrides)
    assert saved.name.startswith("eval-checkpoint-")
    assert abs(_metrics(saved)["kl_seq"] - _metrics(run_dir)["kl_seq"]) < 1e-6  # same model, same samples

    # The reference against itself: no KL, and the decoding settings are recorded.
    ref = evaluate_target("reference", overrides)
    assert _metrics(ref)["kl_seq"] == pytest.approx(0.0, abs=1e-5)
    record = read_json(ref / "generation.json")
    assert (
        record["backend"] == "hf" and record["decoding"]["temperature"] == 1.0 and record["tokens_per_s"] > 0
    )

    from bench.report import collect

    frame, _ = collect(run_dir.parent)
    assert {"dpo", "eval:reference", f"eval:{run_dir.name}", "reference"} <= set(frame["variant"])


def test_evaluate_rejects_unknown_targets_and_group_changes(tiny_root, tmp_path) -> None:
    with pytest.raises(ConfigError, match="neither a run folder"):
        evaluate_target(str(tmp_path / "nothing"), tiny_overrides(tiny_root))
    spec = load_spec(tiny_overrides(tiny_root, "study=evalcmd2"))
    run_dir = run_one(spec, stages=stages_named(["train"]))
    with pytest.raises(ConfigError, match="Only dotted keys"):
        evaluate_target(str(run_dir), ["eval.no_such_key=3"])
