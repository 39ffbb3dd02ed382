"""Study files: every file in sweeps/ expands and validates; bad files fail before anything runs; a study
resubmitted runs only what is unfinished; `bench status` reads the run folders."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.errors import ConfigError
from bench.study import expand
from tests.helpers import REPO, tiny_overrides


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_file_expands_and_validates(path) -> None:
    data, runs = expand(path)
    assert runs, f"{path.name} expands to no run"
    assert len({r.spec.run_id for r in runs}) == len(runs)
    assert all(r.spec.study == data["study"] for r in runs)
    assert data.get("question"), f"{path.name} must state its question"


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
    study = _write(
        tmp_path / "tiny.yaml",
        "study: tiny_sweep\nquestion: does it run?\nfixed: [train.max_steps=2]\n"
        "variants:\n  dpo: {loss.beta: [1, 2]}\n",
    )
    extra = tiny_overrides(
        tiny_root, f"paths.results={tmp_path / 'results'}", f"paths.scratch={tmp_path / 's'}"
    )

    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bench.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=600
        )

    first = bench("sweep", str(study), *extra, "launcher=inproc")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 run(s), 0 finished, 2 to run" in first.stdout
    again = bench("sweep", str(study), *extra)
    assert "2 run(s), 2 finished, 0 to run" in again.stdout
    status = bench("status", "tiny_sweep", "--results", str(tmp_path / "results"))
    assert status.returncode == 0 and "2 done" in status.stdout
