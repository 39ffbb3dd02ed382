"""Studies on a real Slurm cluster: the single-node cluster of bench/cluster/local_slurm.sh (the `slurm`
fixture of conftest.py starts it when it is not running, and stops it again at the end). Slow tier: CI runs
it.

Shown: a 4-run study completes as a job array and its records equal the local launcher's; resubmitting a
finished study submits nothing; a preempted job (scancel --signal=USR2) requeues and resumes without redoing
finished stages; a job past its time limit requeues and resumes; a job cancelled during training (wandb on) is
recorded as cancelled, not as wandb's lost connection; a run
trains in two processes inside one job; Hydra's own submitit launcher runs ad-hoc sweeps."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.config import load_spec
from bench.core.records import read_json, read_jsonl
from bench.status import run_state, slurm_jobs
from bench.train.state import last_complete_checkpoint, trainer_dir
from tests.helpers import REPO, tiny_overrides

pytestmark = pytest.mark.slow
SLURM = ("launcher=slurm", "launcher.cpus_per_task=1", "launcher.mem_gb=2", "launcher.time_min=10")


def _bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _wait(what: str, ready: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _sacct(job: str) -> str:
    cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", job.split("_")[0]]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    return states.get(job, "").split(" ")[0]


def _study(tmp_path: Path, name: str, fixed: str, variants: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"study: {name}\nquestion: test\nfixed: [{fixed}]\nvariants:\n{variants}")
    return path


def _paths(root: Path, tag: str) -> list[str]:
    folder = root / tag
    return tiny_overrides(root, f"paths.results={folder / 'results'}", f"paths.scratch={folder / 's'}")


def _records(run_dir: Path) -> dict[str, Any]:
    return {
        "metrics": {(r["metric"], r.get("split")): r["value"] for r in read_jsonl(run_dir / "metrics.jsonl")},
        "generations": [r["completion"] for r in read_jsonl(run_dir / "generations.jsonl")],
        "losses": [r["loss"] for r in read_jsonl(run_dir / "train_log.jsonl") if "loss" in r],
    }


def test_study_runs_as_a_job_array_and_equals_the_local_launcher(slurm, tiny_root, tmp_path) -> None:
    variants = "  dpo: {loss.beta: [1, 2]}\n  ipo: {loss.beta: [0.5]}\n  simpo: {loss.beta: [2]}\n"
    study = _study(tmp_path, "array4", "train.max_steps=4", variants)
    on_slurm = _paths(tmp_path, "slurm")
    out = _bench("sweep", str(study), *on_slurm, *SLURM, "launcher.array_parallelism=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 run(s), 0 finished, 4 to run" in out.stdout
    study_dir = tmp_path / "slurm" / "results" / "array4"
    jobs = slurm_jobs(study_dir)
    assert len(jobs) == 4 and len({j.split("_")[0] for j in jobs.values()}) == 1  # one array
    script = next((study_dir / "_jobs").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3%2" in script and "#SBATCH --cpus-per-task=1" in script
    assert any(run_state(study_dir / r)[0] != "done" for r in jobs)  # returned before the runs finished

    on_local = _paths(tmp_path, "local")
    assert _bench("sweep", str(study), *on_local, "launcher=local", "launcher.workers=2").returncode == 0
    local_dir = tmp_path / "local" / "results" / "array4"
    for folder in (study_dir, local_dir):
        _wait("4 runs done", lambda f=folder: all(run_state(f / r)[0] == "done" for r in jobs), 600, 2)

    # A run folder says done before its job's process has exited (submitit still writes the result and Python
    # shuts down), so Slurm's COMPLETED, a hint beside the folder's state, can lag it by a few seconds.
    def status_when_completed() -> subprocess.CompletedProcess[str] | None:
        out = _bench("status", "array4", "--results", str(tmp_path / "slurm" / "results"))
        return out if out.stdout.count("COMPLETED") == 4 else None

    status = _wait("Slurm to record 4 COMPLETED jobs", status_when_completed, 120, 2)
    assert "4 done" in status.stdout
    for run_id in jobs:
        assert _records(study_dir / run_id) == _records(local_dir / run_id), run_id
        assert read_json(study_dir / run_id / "status.json")["attempts"][0]["slurm_job"] == jobs[run_id]

    again = _bench("sweep", str(study), *on_slurm, *SLURM)
    assert "4 run(s), 4 finished, 0 to run" in again.stdout
    assert len(read_json(study_dir / "study.json")["submissions"]) == 1  # nothing submitted


def _long_run(tmp_path: Path, name: str, steps: int, *extra: str) -> tuple[Path, Path]:
    fixed = f"train.max_steps={steps}, train.save_steps=50, train.logging_steps=50"
    study = _study(tmp_path, name, fixed, "  dpo: {loss.beta: [0.5]}\n")
    out = _bench("sweep", str(study), *_paths(tmp_path, name), *SLURM, *extra)
    assert out.returncode == 0, out.stderr[-3000:]
    study_dir = tmp_path / name / "results" / name
    return study, study_dir / next(iter(slurm_jobs(study_dir)))


def _status(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / "status.json") if (run_dir / "status.json").exists() else {}


def test_preempted_job_requeues_and_resumes_without_redoing_stages(slurm, tiny_root, tmp_path) -> None:
    _, run_dir = _long_run(tmp_path, "preempt", 600)
    job = slurm_jobs(run_dir.parent)[run_dir.name]
    fixed = ("train.max_steps=600", "train.save_steps=50", "train.logging_steps=50", "loss.beta=0.5")
    spec = load_spec([*_paths(tmp_path, "preempt"), "study=preempt", *fixed])
    assert spec.run_id == run_dir.name
    _wait("a training checkpoint", lambda: last_complete_checkpoint(trainer_dir(spec)), 300, 0.2)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # preemption, during training
    _wait("the requeued attempt", lambda: len(_status(run_dir).get("attempts", [])) == 2, 300, 0.5)

    def evaluating() -> dict[str, Any] | None:
        status = _status(run_dir)
        return status if status.get("stage") in ("judge", "lm_eval", "metrics") else None

    before = _wait("an evaluation stage", evaluating, 300, 0.1)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # preemption, after train and generate
    _wait("the run done", lambda: run_state(run_dir)[0] == "done", 400, 1)

    status = _status(run_dir)
    assert [a["slurm_restart"] for a in status["attempts"]] == [0, 1, 2]
    assert all(a["slurm_job"] == job for a in status["attempts"])
    info = read_json(run_dir / "train_info.json")
    assert info["resumed_from_step"] is not None and info["resumed_from_step"] >= 50
    steps = [r["step"] for r in read_jsonl(run_dir / "train_log.jsonl") if "loss" in r]
    assert steps == list(range(50, 601, 50))  # each logged step once, none lost
    finished_before = [s for s, e in before["stages"].items() if e.get("state") == "done"]
    assert {"train", "generate"} <= set(finished_before)
    for stage in finished_before:  # not redone by the third attempt
        assert status["stages"][stage]["attempt"] == 1
        assert status["stages"][stage]["finished"] == before["stages"][stage]["finished"]
    assert status["stages"]["metrics"]["attempt"] == 2


def test_job_past_its_time_limit_requeues_and_resumes(slurm, tiny_root, tmp_path) -> None:
    # A run far longer than any attempt, so that the time limit, not the machine's speed, decides that it
    # needs a second attempt (3000 steps once finished inside its first minute on an idle machine). Slurm
    # checks time limits every ~30 s, so an attempt is signalled 45-75 s after it starts; the test follows
    # the run into its second attempt and stops it there (finishing after a requeue is the preemption test's).
    limits = ("launcher.time_min=1", "launcher.signal_delay_s=15", "launcher.max_requeues=15")
    _, run_dir = _long_run(tmp_path, "timeout", 1_000_000, *limits)
    job = slurm_jobs(run_dir.parent)[run_dir.name]
    partial = run_dir / "train_log.jsonl.partial"

    def logged_steps() -> list[int]:
        return [r["step"] for r in read_jsonl(partial) if "loss" in r] if partial.exists() else []

    def resumed() -> int | None:
        logs = "".join(p.read_text() for p in (run_dir.parent / "_jobs").glob("*/*_log.err"))
        found = re.search(r"resuming training of dpo from step (\d+)", logs)
        return int(found.group(1)) if found else None

    start = _wait("the second attempt to resume training", resumed, 400, 1)
    _wait("a step logged after the resumption", lambda: max(logged_steps(), default=0) > start, 300, 1)
    subprocess.run(["scancel", job], check=True)
    status = _status(run_dir)
    assert [a["slurm_restart"] for a in status["attempts"]][:2] == [0, 1]
    logs = "".join(p.read_text() for p in (run_dir.parent / "_jobs").glob("*/*_log.err"))
    assert "this job is timed-out" in logs
    assert start >= 50
    steps = logged_steps()
    assert steps == list(range(50, steps[-1] + 1, 50))  # each logged step once, none lost across attempts


def test_cancelled_job_is_recorded_as_cancelled_and_resubmission_picks_it_up(
    slurm, tiny_root, tmp_path, monkeypatch
) -> None:
    # wandb on: a plain scancel signals every process of the job, wandb's service too, and the run used to
    # be recorded as failed with ConnectionResetError from the next write to it
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))  # the job inherits the environment
    study, run_dir = _long_run(tmp_path, "cancel", 5000, "logging.wandb=true")
    job = slurm_jobs(run_dir.parent)[run_dir.name]
    _wait("training", lambda: _status(run_dir).get("stage") == "train", 300, 0.5)
    time.sleep(3)  # into the training loop, wandb's service running
    subprocess.run(["scancel", job], check=True)
    _wait("the folder to record it", lambda: run_state(run_dir)[0] in ("cancelled", "failed"), 60, 0.5)
    state, stage, error = run_state(run_dir)
    assert (state, stage) == ("cancelled", "train"), error
    assert "was cancelled (scancel)" in error and "ConnectionResetError" not in error
    _wait("Slurm to record the cancellation", lambda: _sacct(job) == "CANCELLED", 120, 1)
    status = _bench("status", "cancel", "--results", str(run_dir.parent.parent))
    line = next(x for x in status.stdout.splitlines() if x.startswith(run_dir.name))
    assert line.split()[1] == "cancelled" and "CANCELLED" in line
    again = _bench("sweep", str(study), *_paths(tmp_path, "cancel"), *SLURM)
    assert "1 run(s), 0 finished, 1 to run" in again.stdout
    subprocess.run(["scancel", slurm_jobs(run_dir.parent)[run_dir.name]], check=False)


def test_two_training_processes_in_one_job_match_one_process(slurm, tiny_root, tmp_path) -> None:
    study = _study(tmp_path, "ddp", "train.max_steps=6", "  dpo: {loss.beta: [0.5]}\n")
    two = ("launcher.cpus_per_task=2", "train.processes=2")
    out = _bench("sweep", str(study), *_paths(tmp_path, "ddp"), *SLURM, *two)
    assert out.returncode == 0, out.stderr[-3000:]
    one = _bench("sweep", str(study), *_paths(tmp_path, "one"), "launcher=inproc", timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    study_dir = tmp_path / "ddp" / "results" / "ddp"
    run_id = next(iter(slurm_jobs(study_dir)))
    _wait("the run done", lambda: run_state(study_dir / run_id)[0] == "done", 600, 2)
    assert read_json(study_dir / run_id / "train_info.json")["processes"] == 2
    logs = "".join(p.read_text() for p in (study_dir / "_jobs").glob("*/*_log.*"))
    assert "training in 2 processes" in logs
    ddp = _records(study_dir / run_id)["losses"]
    single = _records(tmp_path / "one" / "results" / "ddp" / run_id)["losses"]
    assert ddp == pytest.approx(single, abs=1e-5)  # the same global batches, gradients averaged over ranks


def test_hydra_submitit_launcher_runs_an_adhoc_sweep(slurm, tiny_root, tmp_path) -> None:
    overrides = [
        *_paths(tmp_path, "hydra"),
        "study=hydra_adhoc",
        "loss=dpo,ipo",
        "loss.beta=0.5",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        # One folder that exists before submission, not the plugin's default .submitit/%j: submitit makes a
        # job's %j folder only after sbatch returns, and this cluster can start the job first, whose stdout
        # then cannot be opened (seen once: "Could not open stdout file ...: No such file or directory").
        f"hydra.launcher.submitit_folder={tmp_path / 'multirun' / '.submitit'}",
    ]
    cmd = [sys.executable, "-m", "bench.run", "-m", *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study_dir = tmp_path / "hydra" / "results" / "hydra_adhoc"
    runs = [p for p in study_dir.iterdir() if (p / "manifest.json").exists()]
    assert sorted(p.name.split("-")[0] for p in runs) == ["dpo", "ipo"]
    assert all(run_state(p)[0] == "done" for p in runs)


def _rounds_study(tmp_path: Path, name: str, steps: int) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"study: {name}\nquestion: rounds on Slurm\n"
        f"fixed: [train.max_steps={steps}, train.save_steps=50, train.logging_steps=50]\n"
        "variants:\n  dpo: {loss.beta: [0.5]}\n"
        "rounds: {count: 2, prompts_per_round: 16, reference: previous}\n"
    )
    return path


def _dependency(job: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    found = re.search(r"Dependency=(\S+)", out)
    return found.group(1) if found else ""


def test_rounds_are_submitted_at_once_each_after_the_one_before(slurm, tiny_root, tmp_path) -> None:
    study = _rounds_study(tmp_path, "rounds", 4)
    out = _bench("sweep", str(study), *_paths(tmp_path, "rounds"), *SLURM)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 run(s), 0 finished, 2 to run" in out.stdout
    study_dir = tmp_path / "rounds" / "results" / "rounds"
    record = read_json(study_dir / "study.json")
    first, second = (r["run_id"] for r in record["runs"])
    assert record["runs"][1]["after"] == first
    jobs = slurm_jobs(study_dir)
    # submitted together; round 2 waits on round 1's job (Slurm drops a satisfied dependency from its record)
    assert (
        _dependency(jobs[second]).startswith(f"afterok:{jobs[first]}")
        or run_state(study_dir / first)[0] == "done"
    )
    _wait(
        "both rounds done",
        lambda: all(run_state(study_dir / r)[0] == "done" for r in (first, second)),
        600,
        2,
    )
    info = read_json(study_dir / second / "train_info.json")
    assert (
        info["start_model"].endswith(f"{first}/checkpoint") and info["reference_model"] == info["start_model"]
    )
    first_ended = (study_dir / first / "status.json").stat().st_mtime  # its last write: the run done
    assert read_json(study_dir / second / "status.json")["attempts"][0]["t_start"] >= first_ended - 1
    assert read_json(study_dir / first / "status.json")["attempts"][0]["slurm_job"] == jobs[first]


def test_a_killed_round_blocks_its_successor_and_resubmission_resumes_the_chain(
    slurm, tiny_root, tmp_path
) -> None:
    study = _rounds_study(tmp_path, "killed", 2000)
    paths = _paths(tmp_path, "killed")
    assert _bench("sweep", str(study), *paths, *SLURM).returncode == 0
    study_dir = tmp_path / "killed" / "results" / "killed"
    record = read_json(study_dir / "study.json")
    first, second = (r["run_id"] for r in record["runs"])
    jobs = slurm_jobs(study_dir)
    spec = load_spec(record["runs"][0]["overrides"])  # round 1 exactly as the study submitted it
    _wait("a training checkpoint of round 1", lambda: last_complete_checkpoint(trainer_dir(spec)), 300, 0.5)
    subprocess.run(["scancel", jobs[first]], check=True)  # round 1 killed mid-training
    _wait("round 1 recorded cancelled", lambda: run_state(study_dir / first)[0] == "cancelled", 120, 1)

    def blocked() -> str | None:
        out = _bench("status", "killed", "--results", str(tmp_path / "killed" / "results")).stdout
        line = next((x for x in out.splitlines() if x.startswith(second)), "")
        return line if " blocked " in line else None

    line = _wait("round 2 shown blocked", blocked, 120, 2)
    assert f"previous round {first} is cancelled" in line
    assert not (study_dir / second / "train_info.json").exists()
    again = _bench("sweep", str(study), *paths, *SLURM)
    assert "2 run(s), 0 finished, 2 to run" in again.stdout, again.stdout
    _wait(
        "both rounds done",
        lambda: all(run_state(study_dir / r)[0] == "done" for r in (first, second)),
        900,
        2,
    )
    assert read_json(study_dir / first / "train_info.json")["resumed_from_step"] >= 50
    assert read_json(study_dir / second / "train_info.json")["start_model"].endswith(f"{first}/checkpoint")
