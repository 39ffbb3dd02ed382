"""Submitting a study's runs: the one module that imports submitit.

`launcher=inproc` runs them here, one after another (tests, debugging). `launcher=local` submits `workers`
submitit jobs and returns at once; each job walks the whole run list and takes every run no other process
holds (the per-run lock in bench.run), so the runs spread over the workers, none runs twice, a failed run
does not stop the others, and a resubmission only finds what is unfinished. The study manifest
results/<study>/study.json records the runs and every submission with its job ids.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.records import atomic_write_json, file_lock, read_json

if TYPE_CHECKING:
    from bench.study import PlannedRun

log = logging.getLogger(__name__)


def work_through(overrides: list[list[str]], threads: int) -> dict[str, str]:
    """A worker job: run every run of the list that nobody else holds; returns each run's outcome."""
    import torch

    from bench.config import load_spec
    from bench.run import run_one
    from bench.study import run_state

    torch.set_num_threads(threads)
    outcome: dict[str, str] = {}
    for run in overrides:
        spec = load_spec(run)
        try:
            run_one(spec)
        except Exception as err:  # recorded in the run's status.json; the next run goes on
            log.error("run %s failed: %s", spec.run_id, err)
        outcome[spec.run_id] = run_state(spec.run_dir())[0]
    return outcome


@contextlib.contextmanager
def _detached_output() -> Iterator[None]:
    """Start jobs with stdout/stderr on /dev/null (their logs go to submitit's files under _jobs/): a job
    that inherited our pipe would keep `bench sweep | tee ...` (or a caller reading our output) waiting
    for it to finish, which would make the submission block after all."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _record(study_dir: Path, data: dict[str, Any], runs: list[PlannedRun], entry: dict[str, Any]) -> None:
    path = study_dir / "study.json"
    with file_lock(study_dir / ".study.lock"):
        manifest = read_json(path) if path.exists() else {"submissions": []}
        manifest.update(
            study=data["study"],
            question=data.get("question"),
            runs=[{"run_id": r.spec.run_id, "variant": r.variant, "overrides": r.overrides} for r in runs],
        )
        manifest["submissions"].append(entry)
        atomic_write_json(path, manifest)


def submit(data: dict[str, Any], runs: list[PlannedRun], todo: list[PlannedRun]) -> list[str]:
    """Launch the unfinished runs with the study's launcher; returns the job ids (none for inproc)."""
    from bench.errors import ConfigError
    from bench.run import run_one

    launcher = todo[0].spec.launcher
    kind = launcher.get("kind", "inproc")
    study_dir = Path(todo[0].spec.paths["results"]) / data["study"]
    study_dir.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "launcher": kind,
        "runs": [r.spec.run_id for r in todo],
    }
    if kind == "inproc":
        _record(study_dir, data, runs, entry | {"job_ids": []})
        for run in todo:
            run_one(run.spec)
        return []
    if kind != "local":
        raise ConfigError(
            f"launcher kind {kind!r} is not available yet: use launcher=local or launcher=inproc"
        )
    import submitit

    workers = max(1, min(int(launcher.get("workers", 1)), len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    executor = submitit.LocalExecutor(folder=str(study_dir / "_jobs" / "%j"))
    executor.update_parameters(timeout_min=int(launcher.get("timeout_min", 24 * 60)))
    queue = [r.overrides for r in todo]
    with _detached_output():
        jobs = [executor.submit(work_through, queue, threads) for _ in range(workers)]
    job_ids = [str(j.job_id) for j in jobs]
    _record(study_dir, data, runs, entry | {"job_ids": job_ids, "workers": workers})
    log.info("submitted %d run(s) to %d local worker job(s): %s", len(todo), workers, ", ".join(job_ids))
    return job_ids
