"""Launcher settings fail before anything is submitted, naming the key and the fix."""

from __future__ import annotations

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.launch import slurm_executor, slurm_parameters, submit
from bench.specs import LauncherSpec
from bench.study import PlannedRun
from tests.helpers import tiny_overrides


def _launcher(tiny_root, *extra: str) -> LauncherSpec:  # type: ignore[no-untyped-def]
    return load_spec(tiny_overrides(tiny_root, "launcher=slurm", *extra)).launcher


def test_slurm_settings_are_checked_before_submission(tiny_root, tmp_path) -> None:
    params = slurm_parameters(_launcher(tiny_root, "launcher.partition=gpu", "launcher.qos=high"))
    assert params["partition"] == "gpu" and params["qos"] == "high" and params["time"] == 240
    assert params["mem"] == "32GB" and params["array_parallelism"] == 32
    with pytest.raises(ConfigError, match=r"unknown key 'launcher.partion'. Did you mean 'partition'"):
        _launcher(tiny_root, "+launcher.partion=gpu")  # a typed spec: refused when the config is built
    with pytest.raises(ConfigError, match=r"launcher\.nodes must be 1"):
        slurm_parameters(_launcher(tiny_root, "launcher.nodes=2"))
    with pytest.raises(ConfigError, match=r"launcher\.time_min=0 must be >= 1"):
        slurm_executor(_launcher(tiny_root, "launcher.time_min=0"), tmp_path)
    # the requeue signal 120 s before a 2-minute limit: every attempt would be requeued at once
    with pytest.raises(ConfigError, match=r"launcher\.signal_delay_s=120 with launcher\.time_min=2: "):
        slurm_parameters(_launcher(tiny_root, "launcher.time_min=2"))
    assert slurm_parameters(_launcher(tiny_root, "launcher.time_min=3"))["signal_delay_s"] == 120


def test_slurm_without_slurm_commands_says_how_to_get_them(tiny_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, srun or sacct here
    with pytest.raises(ConfigError, match=r"sbatch, srun, sacct not found.*local_slurm\.sh up"):
        slurm_executor(_launcher(tiny_root), tmp_path)


def test_more_processes_than_gpus_is_refused(tiny_root) -> None:
    spec = load_spec(
        tiny_overrides(tiny_root, "launcher=slurm", "launcher.gpus_per_node=1", "train.processes=2")
    )
    run = PlannedRun("dpo", [], spec)
    with pytest.raises(ConfigError, match="one process per GPU at most"):
        submit({"study": "x"}, [run], [run])
