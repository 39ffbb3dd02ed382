"""BCO, paired form: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment",
arXiv:2404.04656, Sec. 4 (the BCO loss with reward shift delta), applied to both sides of each pair:

    L = -log sigmoid(r_w - delta) - log sigmoid(-(r_l - delta)),   r = beta * (log pi(y|x) - log ref(y|x))

The implicit reward is trained as a binary classifier: chosen completions towards label 1, rejected towards 0.
The paper's delta is a running mean of the rewards; `reward_shift = "zero"` (default) drops it, exactly as TRL
1.16's `loss_type="bco_pair"`; `"batch_mean"` uses the detached mean of this batch's 2B rewards, since a loss
object here keeps no state across steps (TRL's separate BCOTrainer keeps the running mean). Implicit reward
logged: r.

Worked example (checked in tests/losses/): beta = 0.1, reward_shift = zero, policy
chosen/rejected = -10 / -12, reference chosen/rejected = -11 / -11. r_w = 0.1, r_l = -0.1, delta = 0, so
loss = -log sigmoid(0.1) - log sigmoid(0.1) = 2 * 0.6443967 = 1.288793; rewards 0.1 and -0.1.

    Check: beta=0.1 reward_shift=zero
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=1.288793 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats

SHIFTS = ("zero", "batch_mean")


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.01
    reward_shift: str = "zero"

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales each log-ratio into a logit)")
        self._require(self.reward_shift in SHIFTS, "reward_shift", f"must be one of {', '.join(SHIFTS)}")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        delta = torch.zeros(())
        if self.reward_shift == "batch_mean":  # a constant for the gradient, like the paper's running mean
            delta = torch.cat([chosen, rejected]).mean().detach()
        losses = -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))
        return LossOutput(losses, chosen, rejected)
