"""NCA, pairwise form: Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
Rewards", arXiv:2402.05369, Sec. 4.1 (NCA loss for K = 2 responses with a preference label):

    L = -log sigmoid(r_w) - 1/2 log sigmoid(-r_w) - 1/2 log sigmoid(-r_l)
    r = beta * (log pi(y|x) - log ref(y|x))

Each response is classified on its own (absolute likelihood) rather than only through the margin r_w - r_l,
which is what keeps the chosen likelihood from falling as it does under DPO. Same as TRL's
`loss_type="nca_pair"`. Implicit reward logged: r = beta * log-ratio.

Worked example (checked in tests/losses/): beta = 0.1, policy chosen/rejected = -10 / -12,
reference chosen/rejected = -11 / -11. r_w = 0.1, r_l = -0.1;
-log sigmoid(0.1) = 0.644397, -1/2 log sigmoid(-0.1) = 0.372198, -1/2 log sigmoid(0.1) = 0.322198, so
loss = 0.644397 + 0.372198 + 0.322198 = 1.338793; rewards 0.1 and -0.1.

    Check: beta=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=1.338793 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.01

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales each log-ratio into a logit)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        losses = -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)
        return LossOutput(losses, chosen, rejected)
