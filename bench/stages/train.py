"""The train stage: the policy trained from the reference with the run's loss variant (bench.train), its
checkpoint under paths.scratch and its log in the run folder."""

from __future__ import annotations

from pathlib import Path

from bench.stages.base import Context, Stage
from bench.stages.sample import decoding, online_labeller
from bench.train.fit import run_train


class Train(Stage):
    name = "train"

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.spec.checkpoint_dir() / "config.json", ctx.run_dir / "train_log.jsonl"]

    def run(self, ctx: Context) -> None:
        o = ctx.spec.onpolicy
        online = (online_labeller(ctx), decoding(ctx.spec)) if o.enabled and o.online else None
        run_train(ctx.spec, ctx.sources, ctx.run_dir, online)
