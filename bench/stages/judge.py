"""The judge stage: every policy sample against every reference sample of its prompt, through
`alpaca_eval.evaluate` (bench.judge), into judgments/<judge>/annotations.json and leaderboard.csv."""

from __future__ import annotations

from pathlib import Path

from bench.core.records import read_jsonl
from bench.judge import annotations_path, run_judge
from bench.stages.base import Context, Stage
from bench.stages.generate import GENERATIONS


class Judge(Stage):
    name = "judge"

    def reads(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / GENERATIONS, ctx.reference_dir / GENERATIONS]

    def outputs(self, ctx: Context) -> list[Path]:
        return [annotations_path(ctx.spec, ctx.run_dir)]

    def run(self, ctx: Context) -> None:
        policy, reference = (read_jsonl(p) for p in self.reads(ctx))
        run_judge(ctx.spec, ctx.sources, ctx.run_dir, policy, reference)
