"""A reference that moves during training, for variants that declare `moving_reference` (TR-DPO).

Their reference log-probs cannot be cached: the reference is a second model in memory, scored on every batch
(no gradient), and after each optimiser step the variant says whether and how much of the policy to mix into
it (`reference_update(step) -> alpha or None`: ref <- alpha * policy + (1 - alpha) * ref, weight by weight).
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


def moving_reference_callback(trainer: Any, variant: Any, resume: Path | None) -> Any:
    from transformers import TrainerCallback

    class MovingReference(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if resume is not None:
                load(trainer.ref_model, resume)
                log.info("moving reference restored from %s", resume.name)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            alpha = variant.reference_update(state.global_step)
            if alpha is not None:
                mix_into(trainer.ref_model, trainer.accelerator.unwrap_model(trainer.model), alpha)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                save(trainer.ref_model, folder)

    return MovingReference()
