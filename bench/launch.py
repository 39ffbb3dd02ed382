"""Submitting a study's runs: the one module that imports submitit.

`launcher=inproc` runs them here, one after another (tests, debugging). `launcher=local` submits `workers`
submitit jobs and returns at once; each job walks the whole run list and takes every run no other process
holds (the per-run lock in bench.pipeline), so the runs spread over the workers, none runs twice, a failed run
does not stop the others, and a resubmission only finds what is unfinished. `launcher=slurm` submits one
job array per distinct set of resources (conf/launcher/slurm.yaml), one task per run; a preempted or
timed-out task is requeued by submitit and its run resumes (finished stages skip, training from its last
checkpoint). A job sbatch refuses is one line naming the setting (bench.sbatch), and `--dry-run` asks
sbatch --test-only about the same script first. The study manifest results/<study>/study.json records the
runs and every submission with its job ids.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import submitit
import torch
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import _make_sbatch_string

from bench import sbatch
from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import atomic_write_json, file_lock, read_json
from bench.pipeline import run_one
from bench.slurm_job import CancelWatch
from bench.specs import LauncherSpec
from bench.status import run_state
from bench.study import PlannedRun
from bench.train.distributed import allocated_cpus

log = logging.getLogger(__name__)


def work_through(overrides: list[list[str]], threads: int) -> dict[str, str]:
    """A worker job: run every run of the list that nobody else holds; returns each run's outcome."""
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


def _record(
    study_dir: Path, data: dict[str, Any], runs: list[PlannedRun], entry: dict[str, Any] | None
) -> None:
    """study.json: the question, source and runs of the study, and its submissions (`entry`; None: none)."""
    path = study_dir / "study.json"
    with file_lock(study_dir / ".study.lock"):
        manifest = read_json(path) if path.exists() else {"submissions": []}
        manifest.update(
            study=data["study"],
            question=data.get("question"),
            source=data.get("source"),  # a published comparison (bench report reads it)
            runs=[
                {"run_id": r.spec.run_id, "variant": r.variant, "overrides": r.overrides, "after": r.after}
                for r in runs
            ],
        )
        if entry is not None:
            manifest["submissions"].append(entry)
        atomic_write_json(path, manifest)


class RunJob(submitit.helpers.Checkpointable):  # type: ignore[misc]
    """One run as a Slurm job-array task. On preemption or near its time limit Slurm signals the job;
    submitit then calls `checkpoint` and requeues the returned submission: the same run, which resumes from
    its folder (finished stages skip, training continues from its last trainer checkpoint)."""

    def __init__(self, overrides: list[str], max_requeues: int) -> None:
        self.overrides = overrides
        self.max_requeues = max_requeues
        self.requeues = 0

    def __call__(self) -> str:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        torch.set_num_threads(allocated_cpus())
        # after submitit's own handlers: a plain scancel is recorded as cancelled (bench.slurm_job)
        CancelWatch(Path(submitit.JobEnvironment().paths.stderr)).install()
        spec = load_spec(self.overrides)
        run_one(spec)
        return run_state(spec.run_dir())[0]

    # submitit documents None as "do not requeue"; its stub types only the requeue case
    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission | None:  # type: ignore[override]
        if self.requeues >= self.max_requeues:
            log.error("requeued %d times already (launcher.max_requeues): not again", self.requeues)
            return None  # submitit then ends the job as failed; the run's status says why
        self.requeues += 1
        log.warning("requeue %d of at most %d", self.requeues, self.max_requeues)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


SLURM_REQUIRED = ("time_min", "nodes", "cpus_per_task", "array_parallelism", "max_requeues", "signal_delay_s")


def slurm_parameters(launcher: LauncherSpec) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters from the launcher settings; missing or impossible values fail here,
    before anything is submitted (and without Slurm: a dry run on a laptop checks them too)."""
    values = {key: getattr(launcher, key) for key in SLURM_REQUIRED}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise ConfigError(
            f"launcher.kind=slurm needs launcher.{missing[0]} (conf/launcher/slurm.yaml sets every Slurm key)"
        )
    for key in ("time_min", "cpus_per_task", "array_parallelism", "nodes"):
        if int(values[key]) < 1:
            raise ConfigError(f"launcher.{key}={values[key]} must be >= 1")
    if int(values["nodes"]) != 1:
        raise ConfigError("launcher.nodes must be 1: a run uses one node (its GPUs through train.processes)")
    delay, limit = int(values["signal_delay_s"]), int(values["time_min"])
    if delay < 0 or delay >= 60 * limit:
        raise ConfigError(
            f"launcher.signal_delay_s={delay} with launcher.time_min={limit}: "
            "the checkpoint-and-requeue signal would come before the run could start (every attempt is "
            "requeued at once); set signal_delay_s well below time_min * 60, e.g. 120 with time_min >= 10"
        )
    params: dict[str, Any] = {
        "time": int(values["time_min"]),
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": int(values["cpus_per_task"]),
        "array_parallelism": int(values["array_parallelism"]),
        "signal_delay_s": int(values["signal_delay_s"]),
        "setup": [str(line) for line in launcher.setup],
        "additional_parameters": dict(launcher.additional_parameters),
    }
    if launcher.mem_gb:
        params["mem"] = f"{int(launcher.mem_gb)}GB"
    if launcher.gpus_per_node:
        params["gpus_per_node"] = int(launcher.gpus_per_node)
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(launcher, key):
            params[key] = str(getattr(launcher, key))
    return params


def slurm_executor(launcher: LauncherSpec, folder: Path) -> submitit.SlurmExecutor:
    """A submitit SlurmExecutor with the launcher config's resources (bench.launch.slurm_parameters)."""
    params = slurm_parameters(launcher)
    missing = [c for c in ("sbatch", "srun", "sacct") if shutil.which(c) is None]
    if missing:  # submitit would say only 'Could not detect "srun"'
        raise ConfigError(
            f"launcher=slurm needs Slurm's commands on PATH ({', '.join(missing)} not found): submit from a "
            "login node of the cluster, or start a single-node cluster here: bench/cluster/local_slurm.sh up"
        )
    executor = submitit.SlurmExecutor(
        folder=str(folder),
        max_num_timeout=int(launcher.max_requeues or 0),
        python=launcher.python,
    )
    executor.update_parameters(**params)
    return executor


def _check_processes(todo: list[PlannedRun], launcher: LauncherSpec) -> None:
    gpus = int(launcher.gpus_per_node or 0)
    for run in todo:
        processes = run.spec.train.processes
        if gpus and processes > gpus:
            raise ConfigError(
                f"run {run.spec.run_id}: train.processes={processes} but launcher.gpus_per_node={gpus}: "
                "one process per GPU at most"
            )


def slurm_groups(runs: list[PlannedRun]) -> list[list[PlannedRun]]:
    """The runs by their Slurm resources: each group is one job array (a study whose variants ask for
    different resources, e.g. launcher.gpus_per_node in a variant's grid, submits one array per setting)."""
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        key = json.dumps(slurm_parameters(run.spec.launcher), sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def check_launcher(runs: list[PlannedRun]) -> None:
    """The launcher settings of a study, checked with its runs (also by `bench sweep --dry-run`)."""
    if runs and runs[0].spec.launcher.kind == "slurm":
        for group in slurm_groups(runs):
            _check_processes(group, group[0].spec.launcher)


def _script(executor: submitit.SlurmExecutor, count: int) -> str:
    """The sbatch script submitit would submit for `count` runs with this executor: its own renderer, so the
    dry run asks about exactly the job a submission sends (a single run is not an array)."""
    params = dict(executor.parameters)
    if count > 1:
        params["map_count"] = count
    return str(_make_sbatch_string(command=executor._submitit_command_str, folder=executor.folder, **params))


def ask_cluster(study: str, todo: list[PlannedRun]) -> list[str]:
    """`bench sweep --dry-run launcher=slurm`: sbatch --test-only on each job the submission would send,
    when Slurm can be asked here. Lines to print; a refused job raises ConfigError naming the setting."""
    if not todo:
        return ["slurm: nothing to submit, so the cluster was not asked"]
    why_not = sbatch.unreachable()
    if why_not:
        return [f"slurm: did not ask the cluster whether it would accept the job(s): {why_not}"]
    lines = []
    for group in slurm_groups(todo):
        launcher = group[0].spec.launcher
        executor = slurm_executor(launcher, group[0].spec.paths.results / study / "_jobs" / "%j")
        executor.update_parameters(job_name=f"bench-{study}")
        with tempfile.TemporaryDirectory() as tmp:  # the script only: nothing lands in the study's _jobs/
            script = Path(tmp) / "job.sh"
            script.write_text(_script(executor, len(group)))
            accepted, message = sbatch.test_only(script)
        if not accepted:
            raise ConfigError(sbatch.refusal(message, launcher, len(group)))
        lines.append(f"slurm: the cluster would accept {len(group)} run(s) (sbatch --test-only: {message})")
    return lines


def submit(data: dict[str, Any], runs: list[PlannedRun], todo: list[PlannedRun]) -> list[str]:
    """Launch the unfinished runs with the study's launcher; returns the job ids (none for inproc). With no
    unfinished run, only the study's record (study.json: question, source, runs) is brought up to date."""
    launcher = (todo or runs)[0].spec.launcher
    kind = launcher.kind
    study_dir = runs[0].spec.paths.results / data["study"]
    study_dir.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "launcher": kind,
        "runs": [r.spec.run_id for r in todo],
    }
    if not todo:
        _record(study_dir, data, runs, None)
        return []
    if kind == "inproc":
        _record(study_dir, data, runs, entry | {"job_ids": []})
        for run in todo:
            run_one(run.spec)
        return []
    if kind == "slurm":
        return _submit_slurm(data, runs, todo, study_dir, entry)
    workers = max(1, min(launcher.workers, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    executor = submitit.LocalExecutor(folder=str(study_dir / "_jobs" / "%j"))
    if launcher.timeout_min is None:
        raise ConfigError("launcher.kind=local needs launcher.timeout_min (a worker job's limit in minutes)")
    executor.update_parameters(timeout_min=int(launcher.timeout_min))
    queue = [r.overrides for r in todo]
    with _detached_output():
        jobs = [executor.submit(work_through, queue, threads) for _ in range(workers)]
    job_ids = [str(j.job_id) for j in jobs]
    _record(study_dir, data, runs, entry | {"job_ids": job_ids, "workers": workers})
    log.info("submitted %d run(s) to %d local worker job(s): %s", len(todo), workers, ", ".join(job_ids))
    return job_ids


def _submit_slurm(
    data: dict[str, Any],
    runs: list[PlannedRun],
    todo: list[PlannedRun],
    study_dir: Path,
    entry: dict[str, Any],
) -> list[str]:
    check_launcher(todo)
    jobs_by_run: dict[str, str] = {}
    try:
        for wave in round_waves(todo):
            for group in slurm_groups(wave):
                jobs_by_run |= _submit_array(data["study"], group, study_dir, jobs_by_run)
    finally:  # the arrays Slurm took before it refused one are recorded: they run
        if jobs_by_run:
            job_ids = list(jobs_by_run.values())
            _record(study_dir, data, runs, entry | {"job_ids": job_ids, "jobs": jobs_by_run})
    return list(jobs_by_run.values())


def round_waves(todo: list[PlannedRun]) -> list[list[PlannedRun]]:
    """The runs to submit in waves: the first holds every run whose previous round (if any) is not among them
    (finished, or none); wave k the runs whose previous round is in wave k-1."""
    depth: dict[str, int] = {}
    for run in todo:  # a study lists each round after the one before
        depth[run.spec.run_id] = depth[run.after] + 1 if run.after in depth else 0
    waves: list[list[PlannedRun]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for run in todo:
        waves[depth[run.spec.run_id]].append(run)
    return waves


def _submit_array(
    study: str, group: list[PlannedRun], study_dir: Path, submitted: dict[str, str] | None = None
) -> dict[str, str]:
    """One job array, or for rounds after a submitted one, one job each that Slurm starts only once the
    previous round's job succeeded (--dependency=afterok on its array task; a failed round's successors are
    cancelled by Slurm, --kill-on-invalid-dep, and `bench status` says why). Returns run id -> job id. A
    refusal by sbatch becomes a ConfigError naming the setting, and the files submitit wrote for it
    (pickles, the sbatch script) are removed."""
    submitted = submitted or {}
    if any(r.after in submitted for r in group):
        out: dict[str, str] = {}
        for run in group:
            after = submitted.get(run.after or "")
            out |= _submit_jobs(study, [run], study_dir, after)
        return out
    return _submit_jobs(study, group, study_dir, None)


def _submit_jobs(study: str, group: list[PlannedRun], study_dir: Path, after: str | None) -> dict[str, str]:
    launcher = group[0].spec.launcher
    jobs_dir = study_dir / "_jobs"
    executor = slurm_executor(launcher, jobs_dir / "%j")
    executor.update_parameters(job_name=f"bench-{study}")
    if after is not None:
        extra = dict(launcher.additional_parameters)
        extra |= {"dependency": f"afterok:{after}", "kill_on_invalid_dep": "yes"}
        executor.update_parameters(additional_parameters=extra)
    # One submission of a study at a time, so the files that appear in _jobs/ meanwhile are this one's
    with file_lock(study_dir / ".submit.lock"):
        before = set(jobs_dir.iterdir()) if jobs_dir.exists() else set()
        try:
            # submitit prints sbatch's stderr before raising: the error below says it once, on one line
            with contextlib.redirect_stderr(io.StringIO()), executor.batch():  # one job array
                jobs = [executor.submit(RunJob(r.overrides, int(launcher.max_requeues or 0))) for r in group]
        except FailedJobError as err:
            for path in set(jobs_dir.iterdir()) - before if jobs_dir.exists() else ():
                if path.is_file() and (path.suffix == ".pkl" or path.name.startswith(".submission_file_")):
                    path.unlink()
            if not before and jobs_dir.exists() and not any(jobs_dir.iterdir()):
                jobs_dir.rmdir()  # made for this submission only
            raise ConfigError(sbatch.refusal(str(err), launcher, len(group))) from None
    log.info("submitted %d run(s) as Slurm job(s) %s", len(group), str(jobs[0].job_id).split("_")[0])
    return {r.spec.run_id: str(j.job_id) for r, j in zip(group, jobs, strict=True)}
