"""sbatch's refusals to the launcher setting they are about, and slurmstepd's word for what ended a job: the
parsing alone, on messages Slurm 22.05 writes (the slow tier asks a real cluster in
test_slurm_rejections.py)."""

from __future__ import annotations

import pytest

import bench.slurm_job
from bench.cli import main
from bench.config import load_spec
from bench.core import errors
from bench.sbatch import Node, blame, one_line
from bench.slurm_job import CancelWatch, ending
from bench.specs import LauncherSpec
from tests.helpers import tiny_overrides

CLUSTER = [
    Node("debug", True, 2, 23081, "(null)", "(null)", "infinite"),
    Node("short", False, 2, 23081, "(null)", "(null)", "5:00"),
]


def _launcher(tiny_root, *extra: str) -> LauncherSpec:  # type: ignore[no-untyped-def]
    base = ("launcher=slurm", "launcher.cpus_per_task=1", "launcher.mem_gb=2")  # what the node has
    return load_spec(tiny_overrides(tiny_root, *base, *extra)).launcher


@pytest.mark.parametrize(
    ("extra", "stderr", "setting", "hint"),
    [
        (
            ["launcher.partition=nope"],
            "sbatch: error: invalid partition specified: nope\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
            "partition",
            "partitions: debug, short",
        ),
        (  # --test-only says only this: the partition's nodes tell which resource
            ["launcher.mem_gb=500"],
            "allocation failure: Requested node configuration is not available",
            "mem_gb",
            "the largest node of partition debug has 23 GB",
        ),
        (
            ["launcher.cpus_per_task=64"],
            "sbatch: error: Batch job submission failed: More processors requested than permitted",
            "cpus_per_task",
            "has 2 CPUs",
        ),
        (
            ["launcher.gpus_per_node=1"],
            "sbatch: error: Invalid generic resource (gres) specification",
            "gpus_per_node",
            "no node of partition debug has a GPU",
        ),
        (
            ["launcher.partition=short", "launcher.time_min=10"],
            "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds "
            "some limit)",
            "time_min",
            "partition short allows at most 5 minutes",
        ),
        (
            ["launcher.qos=gold"],
            "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
            "(job submit limit, user's size and/or time limits)",
            "qos",
            "",
        ),
        (
            ["+launcher.additional_parameters.reservation=icml"],
            "sbatch: error: Batch job submission failed: Requested reservation is invalid",
            "additional_parameters.reservation",
            "",
        ),
    ],
)
def test_a_refusal_names_the_setting(tiny_root, extra, stderr, setting, hint) -> None:  # type: ignore[no-untyped-def]
    named, said = blame(one_line(stderr), _launcher(tiny_root, *extra), CLUSTER)
    assert named == setting and hint in said, said


def test_sbatch_messages_become_one_line() -> None:
    text = "sbatch: error: Memory specification can not be satisfied\n"
    text += "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
    expected = "Memory specification can not be satisfied; Requested node configuration is not available"
    assert one_line(text) == expected


def test_what_ended_a_job_from_slurmstepd() -> None:
    requeue = (
        "slurmstepd-vm: error: *** JOB 82 ON vm CANCELLED AT 2026-12-02T04:00:17 DUE TO JOB REQUEUE ***\n"
    )
    cancel = "slurmstepd-vm: error: *** JOB 114 ON vm CANCELLED AT 2026-12-02T04:44:03 ***\n"
    step = "slurmstepd-vm: error: *** STEP 114.0 ON vm CANCELLED AT 2026-12-02T04:44:03 ***\n"
    assert ending("training...\n" + step + cancel) == "cancelled"
    assert ending(requeue) == "due to job requeue"
    assert ending(requeue + "more output\n" + cancel) == "cancelled"  # the last one counts
    assert ending(step + "no job line\n") is None


def test_dry_run_without_slurm_says_it_did_not_ask(tiny_root, tmp_path, monkeypatch, capsys) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(
        "study: s\nquestion: q\nfixed: [train.max_steps=2]\nvariants:\n  dpo: {loss.beta: [1]}\n"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands
    assert main(["sweep", str(study), "--dry-run", *tiny_overrides(tiny_root, "launcher=slurm")]) == 0
    out = capsys.readouterr().out
    said = "slurm: did not ask the cluster whether it would accept the job(s): sbatch, srun, sacct, sinfo not"
    assert f"{said} on PATH" in out


def test_an_error_after_an_undecided_sigterm_is_a_cancellation_once_slurm_says_so(
    tmp_path, monkeypatch
) -> None:
    # The CI race: the controller still said RUNNING when the handler asked, the handler let the run go on,
    # and the next write to wandb's dead service failed. The failure asks the watch again. The controller's
    # answers are scripted here; test_slurm.py cancels a real job.
    monkeypatch.setenv("SLURM_JOB_ID", "114")
    monkeypatch.setattr(errors, "CANCEL_PROBES", [])
    monkeypatch.setattr(bench.slurm_job, "CANCEL_PROBES", errors.CANCEL_PROBES)
    monkeypatch.setattr(bench.slurm_job.signal, "signal", lambda *a: None)  # pytest keeps its own handler
    states = iter(["RUNNING", "RUNNING", "CANCELLED"])
    monkeypatch.setattr(bench.slurm_job, "job_state", lambda job: next(states))
    stderr = tmp_path / "114_0_log.err"
    stderr.write_text(
        "an earlier attempt\n*** JOB 114 ON vm CANCELLED AT 2026-12-02T04:00:17 DUE TO JOB REQUEUE ***\n"
    )
    watch = CancelWatch(stderr)
    watch.install()
    assert errors.cancelled_by(ConnectionResetError("Connection lost")) is None  # no SIGTERM yet: a failure
    watch.on_sigterm(15, None)  # RUNNING: left to the run
    with stderr.open("a") as f:
        f.write("slurmstepd-vm: error: *** JOB 114 ON vm CANCELLED AT 2026-12-02T04:44:03 ***\n")
    found = errors.cancelled_by(ConnectionResetError("Connection lost"))
    assert found is not None and "114 was cancelled" in str(found)


def test_an_error_after_a_time_limit_sigterm_stays_a_failure(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "82")
    monkeypatch.setattr(errors, "CANCEL_PROBES", [])
    monkeypatch.setattr(bench.slurm_job, "CANCEL_PROBES", errors.CANCEL_PROBES)
    monkeypatch.setattr(bench.slurm_job.signal, "signal", lambda *a: None)
    monkeypatch.setattr(bench.slurm_job, "job_state", lambda job: "TIMEOUT")
    stderr = tmp_path / "82_0_log.err"
    watch = CancelWatch(stderr)
    watch.install()
    stderr.write_text("*** JOB 82 ON vm CANCELLED AT 2026-12-02T04:00:17 DUE TO TIME LIMIT ***\n")
    watch.on_sigterm(15, None)  # submitit's: no Cancelled
    assert errors.cancelled_by(ConnectionResetError("Connection lost")) is None
