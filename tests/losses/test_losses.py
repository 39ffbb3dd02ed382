"""Loss variants: the worked example in each docstring, the registry, and bad hyperparameters."""

from __future__ import annotations

import importlib
import math
import re

import pytest
import torch

from bench.config import options
from bench.core.errors import ConfigError
from bench.losses import SequenceStats, build_loss


def _worked_example(name: str) -> dict[str, float]:
    """Parse 'key = value' pairs of the docstring's 'Worked example' paragraph."""
    doc = importlib.import_module(f"bench.losses.{name}").__doc__ or ""
    assert "Worked example" in doc, f"bench/losses/{name}.py needs a worked example in its docstring"
    return doc


def test_dpo_worked_example_matches_the_formula() -> None:
    doc = _worked_example("dpo")
    loss = build_loss("dpo", {"beta": 0.1})
    stats = SequenceStats(
        policy_chosen_logps=torch.tensor([-10.0]),
        policy_rejected_logps=torch.tensor([-12.0]),
        chosen_tokens=torch.tensor([5]),
        rejected_tokens=torch.tensor([6]),
        ref_chosen_logps=torch.tensor([-11.0]),
        ref_rejected_logps=torch.tensor([-11.0]),
    )
    out = loss(stats)
    expected = float(re.search(r"loss = .* = ([0-9.]+)", doc).group(1))
    assert math.isclose(out.losses.item(), expected, abs_tol=1e-6)
    assert math.isclose(out.losses.item(), math.log1p(math.exp(-0.2)), rel_tol=1e-6)
    assert torch.allclose(out.chosen_rewards, torch.tensor([0.1])) and torch.allclose(
        out.rejected_rewards, torch.tensor([-0.1])
    )


def test_every_loss_yaml_has_a_module_and_a_paper() -> None:
    import yaml

    from bench.config import CONF_DIR

    for name in options("loss"):
        data = yaml.safe_load((CONF_DIR / "loss" / f"{name}.yaml").read_text())
        assert data.get("paper"), f"conf/loss/{name}.yaml must name its paper"
        params = {
            k: v for k, v in data.items() if k not in ("paper", "equation", "implementation", "defaults")
        }
        build_loss(data.get("implementation", name), params)  # a recipe runs its implementation's code


def test_unknown_hyperparameter_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown hyperparameter loss.gamma for loss 'dpo'.*Valid: beta"):
        build_loss("dpo", {"gamma": 1.0})


def test_reference_needed_but_missing_is_an_error() -> None:
    stats = SequenceStats(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))
    with pytest.raises(RuntimeError, match="needs reference log-probs"):
        build_loss("dpo", {"beta": 1.0})(stats)
