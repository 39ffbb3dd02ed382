"""DPO against a BEMA reference (bema_dpo): our moving reference, which runs TRL's own BEMACallback over the
policy, against TRL's experimental BEMA DPOTrainer over training steps; and the BEMA state's round trip
through a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.losses import build_loss
from bench.train.trainer import VariantTrainer
from tests.losses import parity

BEMA = {"update_freq": 1, "ema_power": 0.5, "bias_power": 0.2, "lag": 10, "ref_update_freq": 2}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> parity.Harness:
    return parity.build(tmp_path_factory.mktemp("parity_bema"))


def test_bema_dpo_trains_like_trls_bema_reference(harness: parity.Harness, tmp_path: Path) -> None:
    """Five steps, BEMA updated after every step and copied into the reference after steps 2 and 4."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig
    from trl.experimental.bema_for_ref_model import BEMACallback, DPOTrainer

    from bench.train.moving_ref import moving_reference_callback

    root = harness.root
    common = {**parity.TRAINING, "max_steps": 5}

    def models() -> dict[str, Any]:
        return parity.fresh_models(root)

    trl_bema = BEMACallback(
        update_freq=1, ema_power=0.5, bias_power=0.2, lag=10, update_ref_model=True, ref_model_update_freq=2
    )
    theirs = DPOTrainer(
        args=DPOConfig(output_dir=str(tmp_path / "trl"), **common), callbacks=[trl_bema], **models()
    )
    variant = build_loss("bema_dpo", {"beta": 0.5, **BEMA})
    ours = VariantTrainer(
        args=DPOConfig(output_dir=str(tmp_path / "ours"), **common),
        variant=variant,
        refstats={"identity": "parity-reference", "cache_dir": str(tmp_path / "cache")},
        **models(),
    )
    ours.add_callback(moving_reference_callback(ours, variant, None))
    their_losses, their_policy, their_reference = parity.train_steps(theirs)
    our_losses, our_policy, our_reference = parity.train_steps(ours)
    assert len(our_losses) == 5 and our_losses == pytest.approx(their_losses, abs=1e-5)
    initial = AutoModelForCausalLM.from_pretrained(str(root / "reference")).state_dict()
    policy_now = our_policy
    for name, value in our_reference.items():
        assert torch.allclose(value, their_reference[name], atol=1e-6), name
    moved = [k for k in our_reference if not torch.allclose(our_reference[k], initial[k])]
    assert moved  # it did move, and not onto the policy (BEMA lags it)
    assert any(not torch.allclose(our_reference[k], policy_now[k]) for k in moved)
    for name, value in our_policy.items():
        assert torch.allclose(value, their_policy[name], atol=1e-6), name
    assert not (tmp_path / "ours" / "bema").exists()  # TRL's end-of-training model copy is not written


def test_the_bema_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState

    from bench.train import moving_ref

    torch.manual_seed(0)
    policy = torch.nn.Sequential(torch.nn.Linear(3, 2))
    policy.config = None  # type: ignore[assignment]
    bema = moving_ref.bema_tracker({"update_freq": 1})
    bema.running_model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    bema.param_names = [n for n, _ in policy.named_parameters()]
    bema.thetat_params = list(policy.parameters())
    bema.theta0_params = [p.detach().clone() for p in policy.parameters()]
    bema.ema_params = [p.detach().clone() for p in policy.parameters()]
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    bema.on_step_end(None, TrainerState(global_step=1), TrainerControl(), model=policy)
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    moving_ref.save_bema(bema, checkpoint)
    fresh = moving_ref.bema_tracker({"update_freq": 1})
    fresh.running_model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    fresh.param_names = list(bema.param_names)
    fresh.theta0_params = [torch.zeros_like(p) for p in bema.theta0_params]
    fresh.ema_params = [torch.zeros_like(p) for p in bema.ema_params]
    moving_ref.load_bema(fresh, checkpoint)
    for a, b in zip(
        fresh.ema_params + fresh.theta0_params, bema.ema_params + bema.theta0_params, strict=True
    ):
        assert torch.equal(a, b)
    for a, b in zip(fresh.running_model.parameters(), bema.running_model.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="cannot resume a run that averages its policy"):
        moving_ref.load_bema(fresh, tmp_path)
