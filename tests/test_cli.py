"""The command line tells the user what exists and what is wrong: unknown keys with the group's keys,
`bench ls` without a group, whole descriptions, the stage names, the resolved config, and Hydra's own entry
point without tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.groups import GROUPS, options
from bench.stages import STAGE_NAMES
from tests.helpers import REPO, tiny_overrides


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "bench.cli", *args)


def _entries(listing: str) -> list[tuple[str, str]]:
    """(option, description) pairs of `bench ls <group>`, continuation lines joined."""
    out: list[tuple[str, str]] = []
    for line in listing.splitlines():
        if line.startswith(" ") and out:
            out[-1] = (out[-1][0], f"{out[-1][1]} {line.strip()}")
        elif line.strip():
            name, _, description = line.partition(" ")
            out.append((name, description.strip()))
    return out


def _leading_comments(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if not line.startswith("#"):
            break
        out.append(line)
    return out


def test_an_unknown_key_names_the_option_its_keys_and_near_matches() -> None:
    with pytest.raises(ConfigError) as err:
        load_spec(["loss=ipo", "loss.gamma_beta_ratio=0.5"])
    assert str(err.value) == (
        "unknown key 'loss.gamma_beta_ratio' (of loss=ipo). Valid keys of loss: average_log_probs, beta."
    )
    with pytest.raises(
        ConfigError, match=r"Did you mean 'learning_rate'\? Valid keys of train: .*batch_size"
    ):
        load_spec(["train.lerning_rate=0.1"])
    with pytest.raises(ConfigError, match=r"unknown key 'losss'. Did you mean 'loss'\? Valid keys: dataset"):
        load_spec(["losss.beta=1"])


def test_ls_without_a_group_lists_every_group_and_the_stages_and_descriptions_are_whole() -> None:
    out = _bench("ls")
    assert out.returncode == 0, out.stderr
    for group in GROUPS:
        assert f"  {group}" in out.stdout
    assert f"stages (bench run --stages a,b): {', '.join(STAGE_NAMES)}" in out.stdout
    # each description is the first sentence of the option's header comment, whole: wrapped, never cut
    for group in ("model", "dataset", "eval"):
        listing = _bench("ls", group).stdout
        described = dict(_entries(listing))
        assert sorted(described) == options(group)
        for name, description in described.items():
            lines = (REPO / "bench" / "conf" / group / f"{name}.yaml").read_text().splitlines()
            header = " ".join(line[1:].strip() for line in _leading_comments(lines))
            assert header.startswith(description), (name, description)
            assert description == header or description.endswith((".", ":")), (name, description)
    assert (
        "(then model=local at that checkpoint)."
        in dict(_entries(_bench("ls", "models").stdout))["gpt2_large"]
    )
    assert ", ".join(STAGE_NAMES) in " ".join(_bench("run", "--help").stdout.split())


def test_the_resolved_config_prints_as_yaml() -> None:
    out = _bench("config", "loss=ipo", "loss.beta=0.2")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["loss"]["beta"] == 0.2 and cfg["choices"]["loss"] == "ipo" and "paper" in cfg["loss"]
    assert _bench("run", "loss=ipo", "loss.beta=0.2", "--cfg", "job").stdout == out.stdout
    bad = _bench("config", "loss=ipo", "loss.beta=-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: loss.beta=-1") and not bad.stdout


def test_hydras_own_entry_point_answers_without_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    both = _run(sys.executable, "-m", "bench.run", "-m", "loss.beta=1,2", "--cfg", "job")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    assert "bench config" in both.stderr
    bad = _run(sys.executable, "-m", "bench.run", "loss=ipo", "loss.beta=-1", f"hydra.run.dir={tmp_path}")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "error: loss.beta=-1 is out of range" in bad.stderr


def test_validate_and_a_dry_run_read_the_data_as_a_sweep_dry_run_does(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from bench.cli import main

    bad = tmp_path / "prefs.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "a", "chosen": "b"}\n')
    overrides = ["dataset=local", f"dataset.path={bad}", "model=local", f"model.path={tmp_path / 'sft'}"]
    for command in (["validate"], ["run", "--dry-run"]):
        assert main([*command, *overrides]) == 2
        err = capsys.readouterr().err
        assert f"{bad} [train] (plain format): 1 bad row(s) of 2" in err
        assert "row 3: missing field 'rejected' (the row has prompt, chosen" in err  # the file's line number


def test_a_finished_run_ends_with_its_headline_metrics_folder_and_next_command(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from bench.status import run_summary

    run_dir = tmp_path / "results" / "my_study" / "dpo-toy-b1-s0-abc"
    run_dir.mkdir(parents=True)
    rows = [
        {"metric": "win_rate", "value": 0.8123, "stderr": 0.01, "ci_low": 0.79, "ci_high": 0.83},
        {"metric": "lc_win_rate", "value": 0.7, "stderr": None},
        {"metric": "win_rate", "value": 0.1, "split": "val"},  # per-split rows are not the headline
        {"metric": "kl_seq", "value": 3.5, "stderr": 0.1, "ci_low": 3.3, "ci_high": 3.7},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = run_summary(run_dir, 12.3)
    assert text.splitlines() == [
        "run dpo-toy-b1-s0-abc finished in 12 s: win_rate 0.812 [0.790, 0.830], lc_win_rate 0.700, "
        "kl_seq 3.500 [3.300, 3.700] (95% intervals over prompts)",
        f"  records: {run_dir}",
        "  next: bench report my_study   (tables and plots over the study's runs)",
    ]
    (run_dir / "metrics.jsonl").unlink()
    assert "stopped in 12 s before its metrics" in run_summary(run_dir, 12.3)


def test_an_error_inside_a_study_file_names_the_file_and_its_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench.study import expand

    study = tmp_path / "bad.yaml"
    study.write_text(
        "study: bad\nfixed:\n  - dataset=toy\n  - model=toy\ngrid:\n  seed: [0]\nvariants:\n"
        "  dpo:\n    loss.beta: [1]\n  simpo:\n    loss.beta: [2]\n    loss.gama: [0.5]\n"
    )
    with pytest.raises(ConfigError) as err:
        expand(study)
    first = str(err.value).splitlines()[0]
    assert first.startswith(
        f"{study}:12: loss.gama=0.5 (variant simpo): unknown key 'loss.gama' (of loss=simpo)"
    )
    assert len(first) < 250
    study.write_text(study.read_text().replace("loss.gama", "loss.gamma_beta_ratio").replace("[2]", "[-2]"))
    with pytest.raises(
        ConfigError, match=rf"^{study}:11: loss.beta=-2 \(variant simpo\): loss.beta=-2 is out"
    ):
        expand(study)
    study.write_text(study.read_text().replace("model=toy", "model=nosuch"))
    with pytest.raises(ConfigError, match="unknown model option 'nosuch'"):
        expand(study)


def test_bench_sample_writes_a_dataset_folder_any_run_can_train_on(tiny_root) -> None:
    overrides = tiny_overrides(tiny_root, "onpolicy.prompts_count=8", "onpolicy.rule=all_pairs")
    out = _bench("sample", *overrides)
    assert out.returncode == 0, out.stderr[-2000:]
    found = re.search(
        r"(\d+) pairs from 8 prompts \(4 samples each from (\S+), judge gold, rule all_pairs.* in (\S+)\n",
        out.stdout,
    )
    assert found, out.stdout
    folder = Path(found.group(3))
    assert len((folder / "pairs.jsonl").read_text().splitlines()) == int(found.group(1)) > 0
    assert f"dataset.train_path={folder / 'pairs.jsonl'}" in out.stdout
    again = _bench("sample", *overrides)  # the same key: the folder is reused, nothing sampled again
    assert str(folder) in again.stdout and "sampling part" not in again.stderr
