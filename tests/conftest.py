"""Shared fixtures: everything offline, tiny models built here, all files under pytest's tmp folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tests.helpers import REPO, tiny_overrides


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder whose cache holds one tiny toy world, built once."""
    from bench.config import load_spec
    from bench.sources.toy import world

    root = tmp_path_factory.mktemp("tiny")
    world(load_spec(tiny_overrides(root)))
    return root


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """The single-node cluster of bench/cluster/local_slurm.sh, started once per session when it is not
    running (and stopped again at the end); the Slurm test modules share it."""
    script = REPO / "bench" / "cluster" / "local_slurm.sh"
    started = not _slurm_up()
    if started:
        subprocess.run(["bash", str(script), "up"], check=True, timeout=900)
    yield
    subprocess.run(["scancel", "--user", "root"], check=False)
    if started:
        subprocess.run(["bash", str(script), "down"], check=True, timeout=120)
