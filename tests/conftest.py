"""Shared fixtures: everything offline, tiny models built here, all files under pytest's tmp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tests.helpers import tiny_overrides


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder whose cache holds one tiny toy world, built once."""
    from bench.config import load_spec
    from bench.sources.toy import world

    root = tmp_path_factory.mktemp("tiny")
    world(load_spec(tiny_overrides(root)))
    return root
