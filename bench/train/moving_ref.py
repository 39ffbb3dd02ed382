"""A reference that moves during training, for variants that declare `moving_reference` (TR-DPO).

Their reference log-probs cannot be cached: the reference is a second model in memory, scored on every batch
(no gradient), and after each optimiser step the variant says whether and how much of the policy to mix into
it (`reference_update(step) -> alpha or None`: ref <- alpha * policy + (1 - alpha) * ref, weight by weight). A
variant whose `reference_averaging()` gives BEMA settings mixes in the policy's bias-corrected exponential
moving average instead (Block & Zhang 2025, arXiv:2508.00180), kept by TRL's own BEMACallback; its state
(theta_0, the EMA and the running BEMA weights) is saved and restored with the reference.
The reference's weights are saved into every resumable trainer checkpoint and loaded back on resume, so a
resumed run continues with the reference it had, not the initial one. Variants without the declaration keep
the cached, fixed reference and pay nothing for this.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

FILE = "moving_reference.safetensors"  # inside each trainer checkpoint-<step>/ folder
BEMA_FILE = "moving_reference_bema.safetensors"  # the BEMA state, for variants that average the policy


def mix_into(reference: torch.nn.Module, policy: torch.nn.Module, alpha: float) -> None:
    """reference <- alpha * policy + (1 - alpha) * reference, parameter by parameter (TRL's
    SyncRefModelCallback rule: TR-DPO's soft update; alpha = 1 is its hard update)."""
    with torch.no_grad():
        for ref_param, param in zip(reference.parameters(), policy.parameters(), strict=True):
            ref_param.mul_(1.0 - alpha).add_(param.detach().to(ref_param.dtype), alpha=alpha)


def save(reference: torch.nn.Module, checkpoint: Path) -> None:
    # safetensors' save_model, not save_file: it stores tied weights (embedding and head) once
    from safetensors.torch import save_model

    tmp = checkpoint / f".{FILE}.tmp"
    save_model(reference, str(tmp))
    tmp.replace(checkpoint / FILE)


def load(reference: torch.nn.Module, checkpoint: Path) -> None:
    """The reference as it was at `checkpoint`; an error when the checkpoint lacks it (a checkpoint of a run
    that did not move its reference cannot resume one that does)."""
    from safetensors.torch import load_model

    path = checkpoint / FILE
    if not path.exists():
        raise RuntimeError(f"{checkpoint} has no {FILE}: it cannot resume a run whose reference moves")
    load_model(reference, str(path))


def bema_tracker(settings: dict[str, Any]) -> Any:
    """TRL's BEMACallback with the given settings, minus its end-of-training copy of the BEMA model into the
    output folder (the harness keeps its own records; the reference it feeds is what matters here)."""
    from trl.trainer.callbacks import BEMACallback

    class Tracker(BEMACallback):  # type: ignore[misc]
        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            return None

    return Tracker(**settings)


def save_bema(bema: Any, checkpoint: Path) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for name, theta0, ema in zip(bema.param_names, bema.theta0_params, bema.ema_params, strict=True):
        tensors[f"theta0.{name}"] = theta0.contiguous()
        tensors[f"ema.{name}"] = ema.contiguous()
    for name, param in bema.running_model.named_parameters():
        tensors[f"running.{name}"] = param.detach().clone().contiguous()
    tmp = checkpoint / f".{BEMA_FILE}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(checkpoint / BEMA_FILE)


def load_bema(bema: Any, checkpoint: Path) -> None:
    from safetensors.torch import load_file

    path = checkpoint / BEMA_FILE
    if not path.exists():
        raise RuntimeError(
            f"{checkpoint} has no {BEMA_FILE}: it cannot resume a run that averages its policy"
        )
    tensors = load_file(str(path))
    with torch.no_grad():
        for name, theta0, ema in zip(bema.param_names, bema.theta0_params, bema.ema_params, strict=True):
            theta0.copy_(tensors[f"theta0.{name}"])
            ema.copy_(tensors[f"ema.{name}"])
        for name, param in bema.running_model.named_parameters():
            param.copy_(tensors[f"running.{name}"])


def moving_reference_callback(trainer: Any, variant: Any, resume: Path | None) -> Any:
    from transformers import TrainerCallback

    settings = variant.reference_averaging()
    bema = bema_tracker(settings) if settings is not None else None

    class MovingReference(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if bema is not None:  # theta_0 and the EMA start from the policy as training starts
                bema.on_train_begin(args, state, control, model=trainer.model)
            if resume is not None:
                load(trainer.ref_model, resume)
                if bema is not None:
                    load_bema(bema, resume)
                log.info("moving reference restored from %s", resume.name)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if bema is not None:
                bema.on_step_end(args, state, control, model=trainer.model)
            alpha = variant.reference_update(state.global_step)
            if alpha is not None:
                source = bema.running_model if bema is not None else trainer.model
                mix_into(trainer.ref_model, trainer.accelerator.unwrap_model(source), alpha)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                save(trainer.ref_model, folder)
                if bema is not None:
                    save_bema(bema, folder)

    return MovingReference()
