"""Evaluation over training: the policy saved every `eval.every_steps` steps goes through the same generate,
judge and metrics code as the final one, into run_dir/steps/step-NNNNNN/, and curve.jsonl gathers every
metric by step (step 0 is the reference itself; the last step is the run's own metrics). This is what a
reward-KL frontier over training, as in the DPO paper's IMDb experiment, is drawn from.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.records import atomic_write_jsonl, read_jsonl

if TYPE_CHECKING:
    from bench.config import RunSpec


def curve_output(spec: RunSpec, run_dir: Path) -> list[Path]:
    """The curve stage's output: none when evaluation over training is off (the stage is then complete)."""
    return [run_dir / "curve.jsonl"] if spec.eval.every_steps > 0 else []


def run_curve(spec: RunSpec, run_dir: Path) -> Path | None:
    """Evaluate each saved step (each skipped when its metrics exist) and write curve.jsonl."""
    from bench.generate import reference_generations, run_generate
    from bench.judge import run_judge
    from bench.metrics import run_metrics
    from bench.train_state import step_checkpoints_dir

    if spec.eval.every_steps <= 0:
        return None
    out = run_dir / "curve.jsonl"
    if out.exists():
        return out
    ref_generations = reference_generations(spec)
    ref_rows = read_jsonl(ref_generations)
    rows: list[dict[str, Any]] = [
        {"step": 0, **r} for r in read_jsonl(ref_generations.parent / "metrics.jsonl")
    ]
    final = max((r["step"] for r in read_jsonl(run_dir / "train_log.jsonl")), default=0)
    for checkpoint in sorted(step_checkpoints_dir(spec).glob("step-*")):
        step = int(checkpoint.name.removeprefix("step-"))
        if step == final:  # the final policy: its metrics are the run's own, not evaluated twice
            continue
        step_dir = run_dir / "steps" / checkpoint.name
        step_dir.mkdir(parents=True, exist_ok=True)
        run_generate(spec, step_dir, checkpoint)
        run_judge(spec, step_dir, read_jsonl(step_dir / "generations.jsonl"), ref_rows)
        run_metrics(spec, step_dir, ref_generations)
        rows += [{"step": step, **r} for r in read_jsonl(step_dir / "metrics.jsonl")]
    rows += [{"step": final, **r} for r in read_jsonl(run_dir / "metrics.jsonl")]
    atomic_write_jsonl(out, rows)
    return out
