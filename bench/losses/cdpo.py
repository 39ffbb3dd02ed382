"""Conservative DPO (cDPO): E. Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO"
(https://ericmitchell.ai/cdpo.pdf, no arXiv id), Eq. 3:

    L = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)

i.e. the DPO loss (Rafailov et al. 2023, arXiv:2305.18290, Eq. 7) against labels smoothed to (1 - eps, eps):
each label is taken to be flipped with probability eps and the loss is the cross-entropy with that soft
target. h is the DPO margin of summed log-ratios. Its minimum sits at sigmoid(beta h) = 1 - eps, so the reward
margin stops growing at beta h = log((1 - eps)/eps); robust DPO (bench/losses/robust.py) instead de-biases the
loss and keeps pushing. Implicit reward logged: beta * (log pi(y|x) - log ref(y|x)).

Worked example (checked in tests/losses/): beta = 0.1, label_smoothing = 0.1, policy
chosen/rejected = -10 / -12, reference chosen/rejected = -11 / -11. h = 2, beta h = 0.2,
-log sigmoid(0.2) = 0.598139, -log sigmoid(-0.2) = 0.798139, so
loss = 0.9 * 0.598139 + 0.1 * 0.798139 = 0.618139; rewards 0.1 and -0.1.

    Check: beta=0.1 label_smoothing=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.618139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(
            0 <= self.label_smoothing < 0.5,
            "label_smoothing",
            "the flip probability eps must lie in [0, 0.5); at 0.5 the labels carry no preference",
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        logits = chosen - rejected
        eps = self.label_smoothing
        losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
        return LossOutput(losses, chosen, rejected)
