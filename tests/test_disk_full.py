"""A full disk (a small tmpfs, really full) stops a run with one line naming the path and the fix, leaves no
partial record and a status.json that says why, and the same command resumes to a clean run's records once
there is space."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import load_spec
from bench.core.errors import DiskFullError
from bench.core.records import Status, atomic_dir, atomic_write_text, read_json, read_jsonl
from bench.core.space import append_whole
from bench.pipeline import run_one, stages_named
from bench.specs import RunSpec
from bench.tracking import warn_if_full
from bench.train.state import keep_log_until, trainer_dir
from tests.helpers import REPO, tiny_overrides

EXTRA = ("study=full", "train.save_steps=2")
LEADERBOARD = "judgments/toy/leaderboard.csv"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the block (root only; the test is skipped where mounting is
    not permitted, e.g. an unprivileged container)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
        )
        why = (mounted.stderr.strip().splitlines() or ["mount failed"])[0] if mounted.returncode else ""
    except OSError as err:  # no mount command
        why = str(err)
    if why:
        pytest.skip(f"cannot mount a small tmpfs here ({why}); the full-disk tests need root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem of `folder` until it refuses (ENOSPC), then give `leave` bytes back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 65536)
    except OSError as err:
        assert err.errno == errno.ENOSPC
    while True:  # the last, smaller pieces
        try:
            os.write(fd, b"x" * 4096)
        except OSError:
            break
    os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    os.close(fd)
    return filler


def _leftovers(*folders: Path) -> list[Path]:
    """Half-written files and folders: temporaries never renamed, an unpublished final model."""
    return [
        p for f in folders for p in f.rglob("*") if p.name.endswith(".tmp") or p.name == "checkpoint.partial"
    ]


@pytest.fixture(scope="module")
def mountable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip before any compute where no tmpfs can be mounted."""
    with tmpfs(tmp_path_factory.mktemp("probe") / "disk", "64k"):
        pass


@pytest.fixture(scope="module")
def clean(mountable: None, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> RunSpec:
    """The same run on a disk with room, in one go: the records a resumed run must end with."""
    root = tmp_path_factory.mktemp("clean")
    root.joinpath("cache").symlink_to(tiny_root / "cache")
    spec = load_spec(tiny_overrides(root, *EXTRA))
    run_one(spec)
    return spec


def test_atomic_writes_on_a_full_disk_leave_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "256k") as disk:
        record = disk / "metrics.jsonl"
        atomic_write_text(record, "old\n")
        log = disk / "train_log.jsonl.partial"  # appended row by row: a row that does not fit is cut off
        log.write_text('{"step": 1}\n')
        fill(disk)
        with pytest.raises(DiskFullError, match=f"ENOSPC.*writing {record}: free space"):
            atomic_write_text(record, "new\n" * 50_000)
        folder = disk / "judgments"
        with pytest.raises(DiskFullError, match=f"writing {folder}"), atomic_dir(folder) as tmp:
            (tmp / "annotations.json").write_text("x" * 500_000)
        assert record.read_text() == "old\n" and not _leftovers(disk)

        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        with pytest.raises(DiskFullError, match=str(log)):
            append_whole(fd, b'{"step": 2, "pad": "' + b"x" * 500_000 + b'"}\n', log)
        os.close(fd)
        assert log.read_text() == '{"step": 1}\n'


def test_a_failure_is_recorded_in_status_json_even_on_a_disk_with_no_byte_left(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "256k") as disk:
        status = Status(disk)
        status.hold_reserve()
        status.begin_attempt()
        status.start("judge")
        fill(disk)
        with pytest.raises(DiskFullError):
            atomic_write_text(disk / "x.json", "{}")
        status.fail("judge", "disk full: the reason")
        assert read_json(disk / "status.json")["error"] == "disk full: the reason"
        assert not (disk / Status.RESERVE).exists()  # spent on the record


def test_a_torn_last_train_log_row_is_dropped_when_training_resumes(tmp_path: Path) -> None:
    log = tmp_path / "train_log.jsonl.partial"
    log.write_text('{"step": 1, "loss": 0.7}\n{"step": 2, "loss": 0.6}\n{"step": 3, "lo')
    keep_log_until(log, 2)
    assert read_jsonl(log) == [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}]
    # killed after the training ended but before its log was published: it resumes from the last step's
    # checkpoint and logs its own end-of-training row, so the earlier one goes
    log.write_text('{"step": 1, "loss": 0.7}\n{"step": 1, "train_runtime": 3.0, "train_loss": 0.7}\n')
    keep_log_until(log, 1)
    assert read_jsonl(log) == [{"step": 1, "loss": 0.7}]


def test_wandb_on_a_full_disk_is_a_warning_naming_the_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """wandb drops what its folder refuses without an error; the harness says so (tracking is a side
    channel, the run goes on)."""
    with tmpfs(tmp_path / "wandb", "64k") as disk:
        fill(disk)
        with caplog.at_level(logging.WARNING):
            warn_if_full(disk)
    assert f"wandb: {disk} is full (ENOSPC" in caplog.text and "WANDB_DIR" in caplog.text


def test_a_full_scratch_disk_fails_the_checkpoint_save_and_a_rerun_with_space_trains_the_same_model(
    tiny_root: Path, tmp_path: Path, clean: RunSpec, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path.joinpath("cache").symlink_to(tiny_root / "cache")
    overrides = tiny_overrides(tmp_path, *EXTRA)
    spec = load_spec(overrides)
    with tmpfs(tmp_path / "scratch", "160k") as scratch:  # room for the model, not for its first checkpoint
        assert main(["run", *overrides, "--stages", "train"]) == 1
        printed = capsys.readouterr().err
        err = [line for line in printed.splitlines() if line.startswith("error:")]
        assert "Traceback" not in printed and err == [
            "error: disk full (ENOSPC: no space left on device) writing "
            f"{trainer_dir(spec)}/checkpoint-2: free space on that filesystem, or point paths.scratch at "
            "another one, then rerun the same command (finished stages are kept)"
        ]
        status = read_json(spec.run_dir() / "status.json")
        assert status["state"] == "failed" and status["stage"] == "train"
        assert status["error"] == err[0].removeprefix("error: ")
        assert not spec.checkpoint_dir().exists() and not (spec.run_dir() / "train_log.jsonl").exists()
        assert not list(trainer_dir(spec).glob("checkpoint-*"))  # the half-written one was deleted
        assert not _leftovers(scratch, spec.run_dir())

        subprocess.run(["mount", "-o", "remount,size=8m", str(scratch)], check=True)
        assert main(["run", *overrides, "--stages", "train"]) == 0
        trained = spec.checkpoint_dir() / "model.safetensors"
        assert trained.read_bytes() == (clean.checkpoint_dir() / "model.safetensors").read_bytes()
    steps = [r["step"] for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_a_full_results_disk_fails_with_one_line_and_the_same_command_resumes_to_the_clean_records(
    tiny_root: Path, tmp_path: Path, clean: RunSpec
) -> None:
    tmp_path.joinpath("cache").symlink_to(tiny_root / "cache")
    overrides = tiny_overrides(tmp_path, *EXTRA)
    spec = load_spec(overrides)
    run_dir = spec.run_dir()
    with tmpfs(tmp_path / "results", "2m") as results:
        run_one(spec, stages_named(["train", "reference", "generate"]))
        before = {
            p: p.stat().st_mtime_ns for p in (run_dir / "train_log.jsonl", run_dir / "generations.jsonl")
        }
        filler = fill(results, leave=16 * 1024)  # room for the status, not for the judge's annotations
        cmd = [sys.executable, "-m", "bench.cli", "run", *overrides]
        failed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert failed.returncode == 1
        assert "Traceback" not in failed.stderr
        judged = run_dir / "judgments" / "toy"
        line = (
            f"error: disk full (ENOSPC: no space left on device) writing {judged}: free space on that "
            "filesystem, or point paths.results or paths.scratch at another one, then rerun the same command "
            "(finished stages are kept)"
        )
        assert failed.stderr.strip().splitlines()[-1] == line
        status = read_json(run_dir / "status.json")
        assert (status["state"], status["stage"], status["error"]) == ("failed", "judge", line[7:])
        assert status["stages"]["judge"]["state"] == "failed"
        assert not judged.exists() and not (run_dir / "metrics.jsonl").exists()
        assert not _leftovers(results)

        filler.unlink()  # space freed: the same command again (in this process, which has torch loaded)
        assert main(cmd[3:]) == 0
        assert {p: p.stat().st_mtime_ns for p in before} == before  # finished stages not recomputed
        assert read_json(run_dir / "status.json")["state"] == "done"
        for name in (
            "generations.jsonl",
            "metrics.jsonl",
            "per_prompt.jsonl",
            "judgments/toy/leaderboard.csv",
        ):
            assert (run_dir / name).read_bytes() == (clean.run_dir() / name).read_bytes(), name
        assert not (run_dir / Status.RESERVE).exists()
