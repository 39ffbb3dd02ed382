"""The composed loss (bench/losses/compose.py): each component, alone, is the variant it is taken from, on
random batches with per-token views and unequal lengths; a recipe YAML runs it with no code of its own."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bench.config import load_spec
from bench.losses import SequenceStats, TokenStats, build_loss
from tests.helpers import tiny_overrides


def random_stats(seed: int, batch: int = 6, width: int = 9) -> SequenceStats:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, width + 1, (2, batch), generator=g)
    positions = torch.arange(width)
    masks = [(positions < lengths[i].unsqueeze(1)).double() for i in range(2)]

    def logps(mask: torch.Tensor, scale: float) -> torch.Tensor:
        return -scale * torch.rand(mask.shape, generator=g, dtype=torch.float64) * mask

    chosen, rejected = logps(masks[0], 3.0), logps(masks[1], 3.0)
    ref_chosen, ref_rejected = logps(masks[0], 3.0), logps(masks[1], 3.0)
    lssp_chosen, lssp_rejected = logps(masks[0], 1.5), logps(masks[1], 1.5)
    tokens = TokenStats(
        chosen, rejected, masks[0], masks[1], ref_chosen, ref_rejected, lssp_chosen, lssp_rejected
    )
    return SequenceStats(
        chosen.sum(1),
        rejected.sum(1),
        masks[0].sum(1).long(),
        masks[1].sum(1).long(),
        ref_chosen.sum(1),
        ref_rejected.sum(1),
        tokens=tokens,
    )


# (variant, its hyperparameters, the compose keys that make the same loss)
EQUAL: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("dpo", {"beta": 0.3}, {"beta": 0.3}),
    ("cdpo", {"beta": 0.3, "label_smoothing": 0.2}, {"beta": 0.3, "label_smoothing": 0.2}),
    ("hinge", {"beta": 0.3}, {"beta": 0.3, "link": "hinge"}),
    ("ipo", {"beta": 0.3}, {"beta": 0.3, "link": "squared"}),
    ("ipo", {"beta": 0.3, "average_log_probs": True}, {"beta": 0.3, "link": "squared", "length_norm": True}),
    (
        "simpo",
        {"beta": 2.0, "gamma_beta_ratio": 0.4},
        {"beta": 2.0, "length_norm": True, "ref_weight": 0.0, "gamma": 0.8},
    ),
    ("rpo", {"beta": 0.3, "alpha": 0.7}, {"beta": 0.3, "nll_weight": 0.7}),
    ("ld_dpo", {"beta": 0.3, "alpha": 0.4}, {"beta": 0.3, "ld_alpha": 0.4}),
    ("wpo", {"beta": 0.3}, {"beta": 0.3, "weighting": "wpo"}),
    ("dpop", {"beta": 0.3, "lam": 5.0}, {"beta": 0.3, "dpop_lambda": 5.0}),
]


@pytest.mark.parametrize(
    ("name", "params", "keys"), EQUAL, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(EQUAL)]
)
def test_each_component_alone_is_the_variant_it_comes_from(
    name: str, params: dict[str, Any], keys: dict[str, Any]
) -> None:
    for seed in range(3):
        stats = random_stats(seed)
        theirs = build_loss(name, params)(stats)
        ours = build_loss("compose", keys)(stats)
        assert torch.allclose(ours.losses, theirs.losses, atol=1e-9), (name, ours.losses, theirs.losses)
        if name not in ("ipo", "simpo", "rpo"):  # those log rewards on another scale (documented there)
            assert torch.allclose(ours.chosen_rewards, theirs.chosen_rewards, atol=1e-9)


def test_components_combine_and_differ_from_each_alone() -> None:
    stats = random_stats(7)
    both = build_loss("compose", {"beta": 0.3, "ld_alpha": 0.4, "weighting": "wpo"})(stats).losses
    alone = [build_loss("compose", k)(stats).losses for k in ({"beta": 0.3, "ld_alpha": 0.4}, {"beta": 0.3})]
    assert all((both - a).abs().max() > 1e-3 for a in alone)


def test_a_recipe_is_a_yaml_over_the_composed_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = load_spec(tiny_overrides(tmp_path, "loss=rainbowpo_style"))
    assert (spec.loss.name, spec.loss.module) == ("rainbowpo_style", "compose")
    assert spec.run_id.startswith("rainbowpo_style-")
    loss = build_loss(spec.loss.module, spec.loss.params)
    assert (loss.length_norm, loss.ref_weight, loss.beta, loss.gamma) == (True, 0.5, 2.0, 1.0)  # type: ignore[attr-defined]
    other = load_spec(tiny_overrides(tmp_path, "loss=rainbowpo_style", "loss.ref_weight=0.25"))
    assert other.run_id != spec.run_id
    with pytest.raises(Exception, match="ref_weight"):
        load_spec(tiny_overrides(tmp_path, "loss=rainbowpo_style", "loss.ref_weight=2"))
