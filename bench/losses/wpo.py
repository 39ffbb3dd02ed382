"""WPO: Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted Preference Optimization", arXiv:2406.11827,
Eq. 2 with the "sampled alignment" of Section 3 (TRL's DPOConfig `use_weighting`).

    w(x, y) = exp( (1/|y|) * sum_t [log pi(y_t | x, y_<t) - log sum_v pi(v | x, y_<t)^2] )   (no gradient)
    L = w(x, yw) * w(x, yl) * -log sigmoid(beta * [log pi(yw|x)/ref(yw|x) - log pi(yl|x)/ref(yl|x)])

Off-policy preference data was sampled from other models; WPO weights each pair by how likely the current
policy is to produce it, so pairs near the policy's own distribution count more (simulating on-policy
training). Each token's log-prob is measured against log sum_v pi(v)^2, the log-probability that two draws
from the policy's next-token distribution agree, so that a flat distribution does not make every weight
tiny; weights are per-token geometric means, detached. Needs the policy's per-token log-probs and
log sum p^2 (`token_outputs`, TRL's fused LM head computes it); the reference enters only through DPO's
summed log-probs. Definition choices are TRL's (checked against it on real batches in tests/losses/):
the mean is over completion tokens (<eos> included); rewards are DPO's.

Worked example (checked in tests/losses/): beta = 0.1; policy chosen tokens -1, -2 with log sum p^2 -1.5,
-1.0: aligned 0.5 and -1, mean -0.25, w = e^-0.25 = 0.778801; policy rejected token -2 with -1: w = e^-1 =
0.367879. Reference chosen -1, -1 (log-ratio -3 + 2 = -1), rejected -3 (log-ratio +1). DPO loss
log(1 + e^0.2) = 0.798139, times the weights: 0.228671; rewards -0.1 and 0.1.

    Check: beta=0.1
        batch: token_chosen_logps=-1:-2 token_rejected_logps=-2 token_ref_chosen_logps=-1:-1
            token_ref_rejected_logps=-3 token_chosen_log_sum_sq_probs=-1.5:-1.0
            token_rejected_log_sum_sq_probs=-1
        expect: loss=0.228671 chosen_rewards=-0.1 rejected_rewards=0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


def sampled_alignment_weight(
    logps: torch.Tensor, log_sum_sq: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """exp of the mean over completion tokens of log pi(y_t) - log sum_v pi(v)^2, detached (B,)."""
    with torch.no_grad():
        aligned = (logps - log_sum_sq) * mask
        return torch.exp(aligned.sum(1) / mask.sum(1).clamp_min(1))


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_token_logps = True
    token_outputs = ("log_sum_sq_probs",)
    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        t = stats.require_tokens()
        if t.chosen_log_sum_sq_probs is None or t.rejected_log_sum_sq_probs is None:
            raise RuntimeError("WPO needs log sum p^2 per token (token_outputs) but the batch has none")
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        weights = sampled_alignment_weight(t.chosen_logps, t.chosen_log_sum_sq_probs, t.chosen_mask)
        weights = weights * sampled_alignment_weight(
            t.rejected_logps, t.rejected_log_sum_sq_probs, t.rejected_mask
        )
        return LossOutput(-F.logsigmoid(chosen - rejected) * weights, chosen, rejected)
