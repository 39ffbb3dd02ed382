"""What the cluster refuses, asked on the real single-node cluster (the `slurm` fixture of conftest.py; its
partition `short` allows 5 minutes). Slow tier.

Shown: `bench sweep --dry-run launcher=slurm` asks sbatch --test-only about the job it would submit and says
the cluster would take it; every refusal (a partition that does not exist, more memory or CPUs than the node
has, a GPU on a node without one, a time limit above the partition's), in a dry run or a real submission, is
one line naming the launcher setting with sbatch's own message, exit 2, and a refused submission leaves no
files behind; `bench status` shows why Slurm has not started a pending job."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.status import slurm_jobs
from tests.helpers import tiny_overrides

pytestmark = pytest.mark.slow
SLURM = ("launcher=slurm", "launcher.cpus_per_task=1", "launcher.mem_gb=2", "launcher.time_min=10")
REFUSED = [  # (overrides, the setting the error names, words of sbatch's message)
    (["launcher.partition=nope"], "launcher.partition=nope", "Invalid partition name specified"),
    (["launcher.mem_gb=100000"], "launcher.mem_gb=100000", "Requested node configuration is not available"),
    (
        ["launcher.cpus_per_task=512"],
        "launcher.cpus_per_task=512",
        "More processors requested than permitted",
    ),
    (
        ["launcher.gpus_per_node=1"],
        "launcher.gpus_per_node=1",
        "Invalid generic resource (gres) specification",
    ),
    (["launcher.partition=short"], "launcher.time_min=10", "Requested time limit is invalid"),
]


def _sweep(capsys, tmp_path: Path, tiny_root: Path, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    study = tmp_path / "refuse.yaml"
    variants = "variants:\n  dpo: {loss.beta: [1, 2]}\n"
    study.write_text(f"study: refuse\nquestion: test\nfixed: [train.max_steps=2]\n{variants}")
    paths = (f"paths.results={tmp_path / 'results'}", f"paths.scratch={tmp_path / 's'}")
    code = main(["sweep", str(study), *tiny_overrides(tiny_root, *paths), *SLURM, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_asks_the_cluster_and_names_each_refused_setting(slurm, tiny_root, tmp_path, capsys) -> None:
    code, out, _ = _sweep(capsys, tmp_path, tiny_root, "--dry-run")
    assert code == 0 and "slurm: the cluster would accept 2 run(s) (sbatch --test-only: Job" in out
    for overrides, setting, said in REFUSED:
        code, _, err = _sweep(capsys, tmp_path, tiny_root, "--dry-run", *overrides)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and errors, (overrides, err[-2000:])
        assert errors[0].startswith(f"error: {setting}: Slurm refuses the job (2 run(s)): "), errors[0]
        assert said in errors[0] and "Traceback" not in err, errors[0]
    assert not (tmp_path / "results" / "refuse").exists()  # a dry run writes nothing


def test_refused_submission_names_the_setting_and_leaves_no_files(slurm, tiny_root, tmp_path, capsys) -> None:
    for overrides, setting, said in (REFUSED[1], REFUSED[4]):
        code, _, err = _sweep(capsys, tmp_path, tiny_root, *overrides)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert code == 2 and len(errors) == 1, err[-2000:]
        assert errors[0].startswith(f"error: {setting}: Slurm refuses the job") and said in errors[0]
        assert "Traceback" not in err and "FailedJobError" not in err
        study_dir = tmp_path / "results" / "refuse"
        assert not (study_dir / "_jobs").exists() or not any((study_dir / "_jobs").iterdir())
        assert not (study_dir / "study.json").exists()  # nothing was submitted


def test_status_shows_why_a_pending_job_waits(slurm, tiny_root, tmp_path, capsys) -> None:
    code, _, err = _sweep(capsys, tmp_path, tiny_root, "+launcher.additional_parameters.begin=now+1hour")
    assert code == 0, err[-2000:]
    jobs = slurm_jobs(tmp_path / "results" / "refuse")
    try:
        deadline = time.monotonic() + 60
        while True:  # the scheduler gives its reason at its next pass (a few seconds here)
            assert main(["status", "refuse", "--results", str(tmp_path / "results")]) == 0
            out = capsys.readouterr().out
            if out.count("(BeginTime)") == 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert out.count("(BeginTime)") == 2, out
    finally:
        subprocess.run(["scancel", *{j.split("_")[0] for j in jobs.values()}], check=False)
