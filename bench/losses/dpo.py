"""DPO (sigmoid): Rafailov et al. 2023, arXiv:2305.18290, Eq. 7.

    L = -log sigmoid(beta * [(log pi(yw|x) - log ref(yw|x)) - (log pi(yl|x) - log ref(yl|x))])

with log-probs summed over completion tokens, as in the paper's reference code. Implicit reward:
r(x, y) = beta * (log pi(y|x) - log ref(y|x)).

Worked example (checked in tests/losses/): beta = 0.1, policy chosen/rejected = -10 / -12,
reference chosen/rejected = -11 / -11. Chosen log-ratio +1, rejected -1, margin 2, beta * margin = 0.2,
loss = -log sigmoid(0.2) = log(1 + e^-0.2) = 0.598139; rewards 0.1 and -0.1.

    Check: beta=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.598139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


def sigmoid_loss(stats: SequenceStats, beta: float) -> LossOutput:
    """DPO's loss and implicit rewards against the batch's reference (fixed or moving: TR-DPO, BEMA-DPO)."""
    chosen_ratio, rejected_ratio = stats.log_ratios()
    chosen, rejected = beta * chosen_ratio, beta * rejected_ratio
    return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        return sigmoid_loss(stats, self.beta)
