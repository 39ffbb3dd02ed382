"""Every variant through the one plumbing: two training steps on the toy model, and adding a variant is one
.py plus one .yaml."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from bench.config import CONF_DIR, load_spec, options
from bench.core.records import read_jsonl
from bench.losses import build_loss
from bench.sources import select
from tests.helpers import REPO, tiny_overrides


def _weights(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


@pytest.mark.parametrize("name", options("loss"))
def test_variant_trains_two_steps_and_moves_the_policy(name: str, tiny_root, tmp_path) -> None:
    from bench.sources.toy import world
    from bench.train.fit import run_train

    extra = []
    loss = load_spec(tiny_overrides(tiny_root, f"loss={name}")).loss
    if build_loss(loss.module, loss.params).data_shape == "gold":  # the toy world has none: a file that has
        spec = load_spec(tiny_overrides(tiny_root))
        rows = select(spec).data.training_pairs()
        path = tmp_path / "gold.jsonl"
        path.write_text("".join(json.dumps({**r, "gold": r["chosen"] + " good"}) + "\n" for r in rows))
        extra.append(f"dataset.train_path={path}")
    spec = load_spec(
        tiny_overrides(
            tiny_root,
            f"loss={name}",
            "train.max_steps=2",
            f"paths.scratch={tmp_path}",
            f"paths.results={tmp_path / 'results'}",
            *extra,
        )
    )
    checkpoint = run_train(spec, select(spec), spec.run_dir())
    log = [r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in log)
    assert any(r["grad_norm"] > 0 for r in log), "no gradient reached the policy"
    before = _weights(world(spec) / "reference")
    after = _weights(checkpoint)
    assert any(not torch.equal(before[k], after[k]) for k in after if k in before), "policy weights unchanged"


def test_a_new_variant_is_one_py_and_one_yaml(tiny_root, tmp_path) -> None:
    """Drop a throwaway loss into bench/losses/ and conf/loss/ and run it by name, with no other edit."""
    name = "zz_throwaway_margin"
    module = REPO / "bench" / "losses" / f"{name}.py"
    yaml = CONF_DIR / "loss" / f"{name}.yaml"
    module.write_text(
        '"""A throwaway hinge on the policy margin (test only)."""\n'
        "from dataclasses import dataclass\n\n"
        "import torch\n\n"
        "from bench.losses.base import LossOutput, PreferenceLoss, SequenceStats\n\n\n"
        "@dataclass(frozen=True)\n"
        "class Loss(PreferenceLoss):\n"
        "    needs_reference = False\n"
        "    beta: float = 1.0\n\n"
        "    def __call__(self, stats: SequenceStats) -> LossOutput:\n"
        "        margin = self.beta * (stats.policy_chosen_logps - stats.policy_rejected_logps)\n"
        "        return LossOutput(torch.relu(1 - margin), self.beta * stats.policy_chosen_logps,\n"
        "                          self.beta * stats.policy_rejected_logps)\n"
    )
    yaml.write_text('paper: "none (test)"\nbeta: 0.5  # margin scale\n')
    try:
        assert name in options("loss")
        overrides = tiny_overrides(
            tiny_root,
            f"loss={name}",
            "train.max_steps=2",
            "study=throwaway",
            f"paths.results={tmp_path / 'results'}",
            f"paths.scratch={tmp_path / 's'}",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "bench.cli", "run", *overrides, "--stages", "train"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        spec = load_spec(overrides)
        assert spec.run_id.startswith(f"{name}-toy_tiny-b0.5-")
        assert len([r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]) == 2
        listing = subprocess.run(
            [sys.executable, "-m", "bench.cli", "ls", "losses"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert name in listing.stdout
    finally:
        module.unlink(missing_ok=True)
        yaml.unlink(missing_ok=True)
