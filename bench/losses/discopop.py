"""DiscoPOP (log-ratio modulated loss, LRML): Lu et al. 2024, "Discovering Preference Optimization Algorithms
with and for Large Language Models", arXiv:2406.08414, Eq. 5:

    L = (1 - sigmoid(rho / tau)) * (-log sigmoid(rho)) + sigmoid(rho / tau) * exp(-rho),   rho = beta h

with h the DPO margin of summed log-ratios. A blend, discovered by an LLM-driven search, of the logistic (DPO)
loss and the exponential loss, switched by the margin itself: tau is the width of the switch, so at tau = 0.05
pairs with rho well below 0 train on the logistic loss and pairs with rho well above 0 on the exponential one.
Same as TRL's `loss_type="discopop"` with `discopop_tau = tau`. Implicit reward logged: beta * log-ratio.

Worked example (checked in tests/losses/): beta = 0.05, tau = 0.05, policy chosen/rejected =
-10 / -12, reference chosen/rejected = -11 / -11. h = 2, rho = 0.1,
sigmoid(rho / tau) = sigmoid(2) = 0.880797, -log sigmoid(0.1) = 0.644397, exp(-0.1) = 0.904837, so
loss = 0.119203 * 0.644397 + 0.880797 * 0.904837 = 0.873792; rewards 0.05 and -0.05.

    Check: beta=0.05 tau=0.05
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.873792 chosen_rewards=0.05 rejected_rewards=-0.05
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.05
    tau: float = 0.05

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(
            self.tau > 0, "tau", "tau must be > 0 (it is the width of the logistic/exponential switch)"
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        rho = chosen - rejected
        mix = torch.sigmoid(rho / self.tau)
        losses = (1 - mix) * -F.logsigmoid(rho) + mix * torch.exp(-rho)
        return LossOutput(losses, chosen, rejected)
