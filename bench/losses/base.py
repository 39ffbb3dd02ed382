"""What a preference loss sees and returns, and how it declares what it needs.

Every variant trains through the same plumbing (bench/train/trainer.py): the same tokenised batches, the same
forward passes, the same per-sequence statistics. A variant is a small frozen dataclass whose fields are its
hyperparameters; it declares what it needs through class attributes, and the trainer reads those
declarations (it never tests a variant's name).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch

from bench.core.errors import ConfigError


@dataclass(frozen=True)
class SequenceStats:
    """Per-sequence statistics of one batch of B preference pairs (all tensors of shape (B,)).

    Log-probs are summed over completion tokens (the prompt is context, not scored). `*_tokens` count the
    scored completion tokens, <eos> included, so a variant that averages divides by them.
    """

    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None  # None when the variant is reference-free
    ref_rejected_logps: torch.Tensor | None = None
    # Mismatched (prompt, completion) pairs, only for variants that declare `needs_kl_pairs`: shape (2B,),
    # each prompt of the batch with the chosen, then the rejected, completion of another row (a fixed
    # derangement, bench/train/klpairs.py). Summed completion log-probs as above; the policy's carry no
    # gradient.
    policy_kl_logps: torch.Tensor | None = None
    ref_kl_logps: torch.Tensor | None = None

    def require_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ref_chosen_logps is None or self.ref_rejected_logps is None:
            raise RuntimeError(
                "this loss needs reference log-probs but the batch has none (needs_reference?)"
            )
        return self.ref_chosen_logps, self.ref_rejected_logps

    def log_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(yw|x) - log ref(yw|x), log pi(yl|x) - log ref(yl|x)): the DPO family's building block."""
        ref_chosen, ref_rejected = self.require_reference()
        return self.policy_chosen_logps - ref_chosen, self.policy_rejected_logps - ref_rejected

    def require_kl_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.policy_kl_logps is None or self.ref_kl_logps is None:
            raise RuntimeError(
                "this loss needs log-probs of mismatched KL pairs but the batch has none (needs_kl_pairs?)"
            )
        return self.policy_kl_logps, self.ref_kl_logps


@dataclass(frozen=True)
class LossOutput:
    """Per-example losses (B,) to average, and the implicit rewards (B,) to log (the caller detaches)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


@dataclass(frozen=True)
class PreferenceLoss:
    """Base class: subclasses are frozen dataclasses whose fields are the paper's hyperparameters."""

    needs_reference: ClassVar[bool] = True  # False: no reference model is loaded for training
    # True: each training pair also gets mismatched (prompt, completion) pairs whose policy and reference
    # log-probs fill `policy_kl_logps` / `ref_kl_logps` (KTO's reference point z0). Their reference log-probs
    # are precomputed and cached like those of the pairs (which only `needs_reference` asks for).
    needs_kl_pairs: ClassVar[bool] = False

    def __call__(self, stats: SequenceStats) -> LossOutput:
        raise NotImplementedError

    @classmethod
    def hyperparameters(cls) -> dict[str, object]:
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def _require(self, ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise ConfigError(
                f"loss.{key}={getattr(self, key)!r} is out of range for {type(self).__name__}: {rule}"
            )


def batch_token_mean_nll(stats: SequenceStats) -> torch.Tensor:
    """Per-example shares (B,) of the chosen completions' NLL averaged over all their tokens in the batch.

    Their mean is sum_i -log pi(yw_i|x_i) / sum_i |yw_i|: TRL's CPO/ORPO `nn.CrossEntropyLoss` over the chosen
    labels and the SimPO code's `sft_loss` (completion tokens only, <eos> included)."""
    logps = stats.policy_chosen_logps
    return -logps * (logps.numel() / stats.chosen_tokens.sum().to(logps.dtype))
