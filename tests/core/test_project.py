"""The project root: DPO_BENCH_ROOT, else a setting, else the nearest folder upwards holding results/."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.project import ROOT_ENV, project_root, under_root


def test_the_root_is_found_upwards_like_git_finds_its_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ROOT_ENV, raising=False)
    (tmp_path / "proj" / "results").mkdir(parents=True)
    deep = tmp_path / "proj" / "a" / "b"
    deep.mkdir(parents=True)
    assert project_root(start=deep) == tmp_path / "proj"
    assert project_root(start=tmp_path / "proj") == tmp_path / "proj"
    assert project_root(start=tmp_path) == tmp_path  # no results/ above: a new project starts here
    assert project_root(str(tmp_path / "elsewhere"), start=deep) == tmp_path / "elsewhere"  # paths.root
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "env"))
    assert project_root(start=deep) == tmp_path / "env"  # the environment wins


def test_relative_paths_start_at_the_root_and_absolute_ones_stay(tmp_path: Path) -> None:
    assert under_root("results", tmp_path) == tmp_path / "results"
    assert under_root(".cache/refstats", tmp_path) == tmp_path / ".cache" / "refstats"
    assert under_root("/data/runs", tmp_path) == Path("/data/runs")
