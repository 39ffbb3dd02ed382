"""The stage contract: what every stage of a run is, and the one loop that runs a list of them.

A stage has a name, the files it reads, the files whose existence means it is complete (every one written
atomically), and `run(ctx)`. `execute` skips a complete stage, checks that what a stage reads is there before
it runs, and records progress in the run's status.json when it has one. It knows nothing stage-specific:
the pipeline (bench.pipeline) hands it the ordered stage list, and the curve stage hands it the evaluation
stages once per saved step.
"""

from __future__ import annotations

import logging
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from bench.core.errors import ConfigError, cancelled_by
from bench.core.keys import REFERENCE, key_hash
from bench.core.records import Status
from bench.core.space import disk_full_error
from bench.sources import Sources
from bench.specs import RunSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What a stage works on: the run's spec and sources, the folder its files go to, and the model it
    evaluates (the run's checkpoint, a saved step, any saved model, or the reference)."""

    spec: RunSpec
    sources: Sources
    run_dir: Path
    policy: Path
    step: int | None = None  # a step of evaluation over training; None for a final model

    @property
    def reference_dir(self) -> Path:
        """The study's evaluation of the reference model, shared by every run with the same reference inputs
        (bench.core.keys.REFERENCE): its samples, judgments, lm-eval and metrics."""
        s = self.spec
        key = key_hash(REFERENCE, s.config)
        return s.paths.results / s.study / "_reference" / f"{s.model.name}-s{s.seed}-{key}"

    def at(self, run_dir: Path, policy: Path, step: int | None) -> Context:
        return replace(self, run_dir=run_dir, policy=policy, step=step)


class Stage(ABC):
    """One step of the data flow: reads files, writes files, skipped when its outputs exist."""

    name: ClassVar[str]

    def reads(self, ctx: Context) -> list[Path]:
        """Files an earlier stage must have written before this one runs."""
        return []

    @abstractmethod
    def outputs(self, ctx: Context) -> list[Path]:
        """The files whose existence means this stage is complete (an empty list: nothing to do)."""

    @abstractmethod
    def run(self, ctx: Context) -> None:
        """Compute and write the outputs (atomically)."""

    def complete(self, ctx: Context) -> bool:
        return all(p.exists() for p in self.outputs(ctx))


def execute(stages: Sequence[Stage], ctx: Context, status: Status | None = None) -> None:
    """Run each stage that is not complete, in order; with `status`, record each stage's progress, timing and
    error in the run's status.json."""
    for stage in stages:
        t0 = time.perf_counter()
        if stage.complete(ctx):
            if status is not None:
                status.done(stage.name, 0.0, skipped=True)
            log.info("[%s] %s: already complete, skipped", ctx.run_dir.name, stage.name)
            continue
        missing = [str(p) for p in stage.reads(ctx) if not p.exists()]
        if missing:
            raise ConfigError(
                f"stage {stage.name} of {ctx.run_dir} needs {', '.join(missing)}: run the stages before it "
                "(bench run without --stages runs them all)"
            )
        if status is not None:
            status.start(stage.name)
        log.info("[%s] %s ...", ctx.run_dir.name, stage.name)
        try:
            stage.run(ctx)
        except (KeyboardInterrupt, SystemExit) as err:  # preemption / time limit (submitit exits), Ctrl-C
            if status is not None:
                status.interrupt(
                    stage.name, f"{type(err).__name__}: stopped during {stage.name}; a rerun resumes"
                )
            raise
        except BaseException as err:
            cancel = cancelled_by(err)
            if status is not None and cancel is not None:
                status.cancel(stage.name, f"cancelled during {stage.name}: {cancel}; a resubmission resumes")
                raise
            # A full disk, however the library that hit it words it, becomes the one-line DiskFullError: the
            # user's fix is space, not a bug report, so status.json gets the line and no traceback.
            full = disk_full_error(err, ctx.run_dir)
            if status is not None:
                trace = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}"
                status.fail(stage.name, str(full) if full else trace)
            if full is None or full is err:
                raise
            raise full from err
        seconds = time.perf_counter() - t0
        if status is not None:
            status.done(stage.name, seconds)
        log.info("[%s] %s done in %.1f s", ctx.run_dir.name, stage.name, seconds)
