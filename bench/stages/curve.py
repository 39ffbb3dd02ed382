"""The curve stage, evaluation over training: the policy saved every `eval.every_steps` steps goes through the
same evaluation stages as the final one (through the same runner, bench.stages.base.execute), into
run_dir/steps/step-NNNNNN/, and curve.jsonl gathers every metric by step (step 0 is the reference itself; the
last step is the run's own metrics). A reward-KL frontier over training, as in the DPO paper's IMDb
experiment, is drawn from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.core.records import atomic_write_jsonl, read_jsonl
from bench.stages.base import Context, Stage, execute
from bench.train.state import step_checkpoints_dir


class Curve(Stage):
    name = "curve"

    def __init__(self, per_step: Sequence[Stage]) -> None:
        self.per_step = tuple(per_step)  # the evaluation stages each saved step goes through

    def reads(self, ctx: Context) -> list[Path]:
        if ctx.spec.eval.every_steps <= 0:
            return []
        return [
            ctx.run_dir / "train_log.jsonl",
            ctx.reference_dir / "metrics.jsonl",
            ctx.run_dir / "metrics.jsonl",
        ]

    def outputs(self, ctx: Context) -> list[Path]:
        """None when evaluation over training is off: the stage is then complete."""
        return [ctx.run_dir / "curve.jsonl"] if ctx.spec.eval.every_steps > 0 else []

    def run(self, ctx: Context) -> None:
        rows: list[dict[str, Any]] = [
            {"step": 0, **r} for r in read_jsonl(ctx.reference_dir / "metrics.jsonl")
        ]
        final = max((r["step"] for r in read_jsonl(ctx.run_dir / "train_log.jsonl")), default=0)
        for checkpoint in sorted(step_checkpoints_dir(ctx.spec).glob("step-*")):
            step = int(checkpoint.name.removeprefix("step-"))
            if step == final:  # the final policy: its metrics are the run's own, not evaluated twice
                continue
            step_ctx = ctx.at(ctx.run_dir / "steps" / checkpoint.name, checkpoint, step)
            step_ctx.run_dir.mkdir(parents=True, exist_ok=True)
            execute(self.per_step, step_ctx)
            rows += [{"step": step, **r} for r in read_jsonl(step_ctx.run_dir / "metrics.jsonl")]
        rows += [{"step": final, **r} for r in read_jsonl(ctx.run_dir / "metrics.jsonl")]
        atomic_write_jsonl(ctx.run_dir / "curve.jsonl", rows)
