"""Robust DPO (rDPO): Chowdhury, Kini & Natarajan 2024, "Provably Robust DPO: Aligning Language Models with
Noisy Feedback", arXiv:2403.00409, Sec. 3.1 (the de-biased loss l-hat_eps):

    L = [(1 - eps) l(h) - eps l(-h)] / (1 - 2 eps),   l(h) = -log sigmoid(beta h)

with h the DPO margin of summed log-ratios. If each label is flipped independently with probability eps, the
expectation of L over the flips equals the clean DPO loss, so eps is a noise rate to be estimated, not a
smoothing knob. Unlike cDPO (bench/losses/cdpo.py) the loss is unbounded below for eps > 0 (it keeps rewarding
larger margins, about -eps beta h / (1 - 2 eps)), so negative values are expected. Implicit reward logged:
beta * log-ratio.

Worked example (checked in tests/losses/): beta = 0.1, label_smoothing = 0.1, policy
chosen/rejected = -10 / -12, reference chosen/rejected = -11 / -11. h = 2,
l(2) = -log sigmoid(0.2) = 0.598139, l(-2) = -log sigmoid(-0.2) = 0.798139, so
loss = (0.9 * 0.598139 - 0.1 * 0.798139) / 0.8 = 0.573139; rewards 0.1 and -0.1.

    Check: beta=0.1 label_smoothing=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.573139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.01
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(
            0 <= self.label_smoothing < 0.5,
            "label_smoothing",
            "the label-flip rate eps must lie in [0, 0.5): the loss divides by 1 - 2 eps",
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        logits = chosen - rejected
        eps = self.label_smoothing
        losses = (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)
        return LossOutput(losses, chosen, rejected)
