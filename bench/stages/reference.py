"""The reference stage: the reference model evaluated once per study, beside the runs that share it
(results/<study>/_reference/<model>-s<seed>-<key>/, keyed by bench.core.keys.REFERENCE): its samples on the
evaluation prompts (the other side of every run's judged pairs, and the zero of KL), its lm-eval results and
its metrics, the report's reference row. Judged against eval.reference_outputs when that is set (the SFT row
of an AlpacaEval table); against itself its win rates are 1/2 by definition.

Every run of a study reaches this stage; the first one computes it under the folder's lock, the others find
it complete.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.records import file_lock, read_jsonl, remove_temporaries
from bench.judge import annotations_path, run_judge
from bench.stages.base import Context, Stage
from bench.stages.generate import GENERATIONS, sample_reference
from bench.stages.lm_eval import OUTPUT_NAME as LM_EVAL
from bench.stages.lm_eval import run_lm_eval
from bench.stages.metrics import reference_metrics


class Reference(Stage):
    name = "reference"

    def outputs(self, ctx: Context) -> list[Path]:
        folder = ctx.reference_dir
        judged = [annotations_path(ctx.spec, folder)] if ctx.spec.eval.reference_outputs else []
        return [folder / GENERATIONS, *judged, folder / LM_EVAL, folder / "metrics.jsonl"]

    def run(self, ctx: Context) -> None:
        folder = ctx.reference_dir
        with file_lock(folder / ".lock"):  # one process computes it; the others wait, then find it
            remove_temporaries(folder)  # a killed holder's unfinished writes
            if not (folder / GENERATIONS).exists():
                sample_reference(ctx, folder)
            if ctx.spec.eval.reference_outputs and not annotations_path(ctx.spec, folder).exists():
                rows = read_jsonl(folder / GENERATIONS)
                run_judge(ctx.spec, ctx.sources, folder, rows, rows)
            if not (folder / LM_EVAL).exists():
                run_lm_eval(ctx.spec, ctx.sources, folder, ctx.sources.model.reference())
            if not (folder / "metrics.jsonl").exists():
                reference_metrics(ctx, folder)
