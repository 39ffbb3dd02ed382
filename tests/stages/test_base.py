"""The stage contract: a new stage is a Stage subclass; the runner skips complete stages, checks what a stage
reads before running it, and records progress and failures in status.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import load_spec
from bench.core.errors import Cancelled, ConfigError
from bench.core.records import Status, read_json
from bench.pipeline import STAGE_NAMES, stages_named
from bench.sources import select
from bench.stages.base import Context, Stage, execute
from tests.helpers import tiny_overrides


class Count(Stage):
    """A stage written here, at test time: one module and one list entry is all a stage needs."""

    name = "count"

    def __init__(self) -> None:
        self.calls = 0

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / "count.txt"]

    def run(self, ctx: Context) -> None:
        self.calls += 1
        (ctx.run_dir / "count.txt").write_text(str(self.calls))


class NeedsCount(Stage):
    name = "needs_count"

    def reads(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / "count.txt"]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / "twice.txt"]

    def run(self, ctx: Context) -> None:
        if ctx.spec.seed == 13:
            raise RuntimeError("this seed is unlucky")
        (ctx.run_dir / "twice.txt").write_text((ctx.run_dir / "count.txt").read_text() * 2)


def _ctx(tmp_path: Path, *extra: str) -> Context:
    spec = load_spec(tiny_overrides(tmp_path, *extra))
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return Context(spec, select(spec), run_dir, tmp_path / "policy")


def test_a_new_stage_runs_once_and_is_skipped_when_complete(tmp_path: Path) -> None:
    ctx, count = _ctx(tmp_path), Count()
    status = Status(ctx.run_dir)
    execute([count, NeedsCount()], ctx, status)
    execute([count, NeedsCount()], ctx, Status(ctx.run_dir))
    assert count.calls == 1 and (ctx.run_dir / "twice.txt").read_text() == "11"
    stages = read_json(ctx.run_dir / "status.json")["stages"]
    assert stages["count"]["state"] == "done" and stages["needs_count"]["state"] == "done"


def test_a_stage_whose_inputs_are_missing_says_which_and_what_to_run(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    with pytest.raises(
        ConfigError, match=r"stage needs_count of .* needs .*count\.txt: run the stages before it"
    ):
        execute([NeedsCount()], ctx)


def test_a_failing_stage_is_recorded_with_its_error(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "seed=13")
    with pytest.raises(RuntimeError, match="unlucky"):
        execute([Count(), NeedsCount()], ctx, Status(ctx.run_dir))
    status = read_json(ctx.run_dir / "status.json")
    assert status["state"] == "failed" and status["stage"] == "needs_count"
    assert "RuntimeError: this seed is unlucky" in status["error"]


class CancelledMidway(Stage):
    """Cancelled by the job's SIGTERM handler; with `then`, unwinding fails on a helper process that died of
    the same signal (wandb's service: ConnectionResetError)."""

    name = "cancelled"

    def __init__(self, then: BaseException | None = None) -> None:
        self.then = then

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / "never.txt"]

    def run(self, ctx: Context) -> None:
        try:
            raise Cancelled("Slurm job 7 was cancelled (scancel)")
        finally:
            if self.then is not None:
                raise self.then


@pytest.mark.parametrize("then", [None, ConnectionResetError("Connection lost")])
def test_a_cancelled_stage_is_recorded_as_cancelled_not_failed(tmp_path: Path, then) -> None:  # type: ignore[no-untyped-def]
    ctx = _ctx(tmp_path)
    with pytest.raises(BaseException):  # noqa: B017 - either error goes on to the caller
        execute([Count(), CancelledMidway(then)], ctx, Status(ctx.run_dir))
    status = read_json(ctx.run_dir / "status.json")
    assert (status["state"], status["stage"]) == ("cancelled", "cancelled")
    assert (
        status["error"]
        == "cancelled during cancelled: Slurm job 7 was cancelled (scancel); a resubmission resumes"
    )
    assert status["stages"]["count"]["state"] == "done"


def test_the_pipeline_names_its_stages_in_order_and_refuses_unknown_ones() -> None:
    assert STAGE_NAMES == ("sample", "train", "reference", "generate", "judge", "lm_eval", "metrics", "curve")
    assert [s.name for s in stages_named(["metrics", "train"])] == ["train", "metrics"]  # pipeline order
    with pytest.raises(ConfigError, match=r"unknown stage 'judging'; stages: sample, train, reference"):
        stages_named(["judging"])
