"""APO-zero: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions:
Addressing Underspecification in Alignment", arXiv:2408.06266, Eq. 7:

    L = 1 - sigmoid(r_w) + sigmoid(r_l),   r = beta * (log pi(y|x) - log ref(y|x))

Anchored: the chosen likelihood is pushed up and the rejected one down, each against the reference, not only
their difference; use it when the chosen completions are better than the model's own outputs. The paper writes
-sigmoid(r_w) + sigmoid(r_l); the constant 1 (TRL's form, same gradients) keeps the loss in [0, 2]. Implicit
reward logged: r.

Worked example (checked in tests/losses/): beta = 0.1, policy chosen/rejected = -10 / -12,
reference chosen/rejected = -11 / -11. r_w = 0.1, r_l = -0.1, sigmoid(0.1) = 0.524979,
sigmoid(-0.1) = 0.475021, so
loss = 1 - 0.524979 + 0.475021 = 0.950042; rewards 0.1 and -0.1.

    Check: beta=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.950042 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales each log-ratio into a logit)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        return LossOutput(1 - torch.sigmoid(chosen) + torch.sigmoid(rejected), chosen, rejected)
