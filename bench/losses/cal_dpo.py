"""Cal-DPO: Xiao et al. 2024, "Cal-DPO: Calibrated Direct Preference Optimization for Language Model
Alignment", arXiv:2412.14516 (NeurIPS 2024), Eq. 10, as the authors' code computes it.

    h(y) = log pi(y|x) - log ref(y|x)        (summed over completion tokens; no beta)
    L = -log sigmoid(h(yw) - h(yl)) + cal_weight * [(h(yw) - 1/(2 beta))^2 + (h(yl) + 1/(2 beta))^2]

DPO's loss only sees the margin, so both answers' likelihoods can fall together. Cal-DPO adds a squared
calibration term that pulls the chosen log-ratio to +1/(2 beta) and the rejected one to -1/(2 beta): the
implicit rewards are anchored to a scale (1/beta apart), not only ordered. beta here sets the calibration
targets, not the sigmoid's slope.

Definition choices: the authors' code (github.com/tengxiao1/Cal-DPO, scripts/dpo_trainer.py, `dpo_loss`,
loss_type "Cal-DPO": `losses = DPO_loss + 0.5*Cal_loss`) weights the calibration term by 0.5, where the
paper's equation writes 1: `cal_weight` defaults to the code's 0.5. Its `F.mse_loss` averages the squares over
the batch; the batch mean of our per-example losses is the same number. The implicit reward we log is h
itself (the code logs the policy log-probs). TRL has no Cal-DPO.

Worked example (checked in tests/losses/): beta = 0.1 (targets +5 and -5), policy chosen/rejected -10 / -12,
reference -11 / -11: h = +1 and -1; sigmoid term log(1 + e^-2) = 0.126928; calibration
0.5 * ((1 - 5)^2 + (-1 + 5)^2) = 16; loss 16.126928; rewards 1 and -1.

    Check: beta=0.1 cal_weight=0.5
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=16.126928 chosen_rewards=1 rejected_rewards=-1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.001
    cal_weight: float = 0.5

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (the targets are +-1/(2 beta))")
        self._require(self.cal_weight >= 0, "cal_weight", "cal_weight must be >= 0 (0 is DPO at beta 1)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen, rejected = stats.log_ratios()
        target = 1.0 / (2.0 * self.beta)
        calibration = (chosen - target).square() + (rejected + target).square()
        return LossOutput(-F.logsigmoid(chosen - rejected) + self.cal_weight * calibration, chosen, rejected)
