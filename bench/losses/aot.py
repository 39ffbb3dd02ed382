"""AOT, paired form: Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport",
arXiv:2406.05882, Sec. 3 (paired AOT: first-order stochastic dominance of the policy's chosen-vs-rejected
margin over the reference's, solved in one dimension by sorting). Over a batch of B pairs:

    u_i = log pi(yw_i|x_i) - log pi(yl_i|x_i),   v_i = log ref(yw_i|x_i) - log ref(yl_i|x_i)
    L_k = -log sigmoid(beta * (u_(k) - v_(k))),   k = 1..B,   u_(k), v_(k): the k-th smallest of each

The quantiles are matched, not the pairs: the k-th smallest policy margin is compared with the k-th smallest
reference margin, so the loss asks the whole distribution of margins to dominate, and a pair's contribution
depends on the rest of its batch (larger batches give finer quantiles). The B losses are in sorted order, not
pair order; the trainer only averages them. Log-probs are summed over tokens. Same as TRL's `loss_type="aot"`
(its logistic relaxation, no label smoothing). Implicit reward logged: beta * log-ratio, per pair.

Worked example (checked in tests/losses/): beta = 0.1, two pairs: policy chosen/rejected
-10 / -12 and -8 / -7, reference chosen/rejected -11 / -11 and -9 / -10. u = (2, -1), v = (0, 1); sorted
u = (-1, 2), v = (0, 1); differences (-1, 1); per-quantile losses -log sigmoid(-0.1) = 0.744397 and
-log sigmoid(0.1) = 0.644397 (pairwise DPO would give 0.798139 and 0.598139), so the batch
loss = (0.744397 + 0.644397) / 2 = 0.694397.

    Check: beta=0.1
        batch: policy_chosen_logps=-10,-8 policy_rejected_logps=-12,-7 ref_chosen_logps=-11,-9
            ref_rejected_logps=-11,-10
        expect: loss=0.694397
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the quantile differences)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        ref_chosen, ref_rejected = stats.require_reference()
        policy_margin = torch.sort(stats.policy_chosen_logps - stats.policy_rejected_logps).values
        ref_margin = torch.sort(ref_chosen - ref_rejected).values
        losses = -F.logsigmoid(self.beta * (policy_margin - ref_margin))
        chosen = self.beta * (stats.policy_chosen_logps - ref_chosen)
        rejected = self.beta * (stats.policy_rejected_logps - ref_rejected)
        return LossOutput(losses, chosen, rejected)
