"""Several training processes for one run (accelerate launch, gloo on CPU): the same global batches, so two
processes reproduce one process's training; bad settings fail before any compute."""

from __future__ import annotations

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl, write_manifest
from bench.pipeline import preflight
from bench.sources import select
from bench.train.distributed import launch_command
from bench.train.fit import run_train
from tests.helpers import tiny_overrides


def _losses(run_dir) -> list[float]:  # type: ignore[no-untyped-def]
    return [r["loss"] for r in read_jsonl(run_dir / "train_log.jsonl") if "loss" in r]


def test_two_processes_reproduce_one_process(tiny_root) -> None:
    extra = ("train.max_steps=6", "loss.beta=0.7")  # 6 x 8 pairs < 63: no ragged last batch
    one = load_spec(tiny_overrides(tiny_root, "study=ddp_one", *extra))
    two = load_spec(tiny_overrides(tiny_root, "study=ddp_two", "train.processes=2", *extra))
    assert one.run_id == two.run_id  # the same experiment, spread differently
    run_train(one, select(one), one.run_dir())
    two.run_dir().mkdir(parents=True)
    write_manifest(two.run_dir(), two.run_id, two.config, {})  # the workers rebuild the run from it
    run_train(two, select(two), two.run_dir())
    assert read_json(two.run_dir() / "train_info.json")["processes"] == 2
    assert _losses(two.run_dir()) == pytest.approx(_losses(one.run_dir()), abs=1e-5)
    assert len(_losses(two.run_dir())) == 6


def test_launch_command_and_bad_settings(tiny_root, tmp_path) -> None:
    spec = load_spec(tiny_overrides(tiny_root, "train.processes=4"))
    cmd = launch_command(spec, tmp_path)
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert cmd[-3:] == ["-m", "bench.train.fit", str(tmp_path)]
    with pytest.raises(ConfigError, match=r"not divisible by train\.grad_accum x train\.processes"):
        load_spec(tiny_overrides(tiny_root, "train.processes=3"))  # batch 8
    with pytest.raises(ConfigError, match=r"train\.processes >= 1"):
        load_spec(tiny_overrides(tiny_root, "train.processes=0"))
    with pytest.raises(ConfigError, match="no such file"):
        preflight(load_spec(tiny_overrides(tiny_root, f"train.accelerate_config={tmp_path / 'fsdp.yaml'}")))
    config = tmp_path / "fsdp.yaml"
    config.write_text("distributed_type: FSDP\n")
    spec = load_spec(tiny_overrides(tiny_root, "train.processes=2", f"train.accelerate_config={config}"))
    cmd = launch_command(spec, tmp_path)
    assert "--multi_gpu" not in cmd and cmd[cmd.index("--config_file") + 1] == str(config)
