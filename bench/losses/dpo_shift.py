"""DPO-Shift: Yang et al. 2025, "DPO-Shift: Shifting the Distribution of Direct Preference Optimization",
arXiv:2502.07599, Sec. 3 (the fixed-f form).

    L = -log sigmoid(beta * log pi(yw|x)/ref(yw|x) - lam * beta * log pi(yl|x)/ref(yl|x))

DPO often lowers the chosen answer's likelihood along with the rejected one's ("likelihood displacement").
Scaling the rejected side's reward by lam < 1 makes pushing the rejected answer down worth less, so the
chosen answer's likelihood falls less (or rises), at some cost in reward margin; lam = 1 is DPO. The paper
also schedules lam over training (linear increases and decreases); this variant keeps it fixed. Definition
choices: log-probs summed over completion tokens, as DPO's; the implicit rewards logged are beta * log-ratio
on the chosen side and lam * beta * log-ratio on the rejected one, so their difference is the sigmoid's
argument. TRL has no DPO-Shift.

Worked example (checked in tests/losses/): beta = 0.1, lam = 0.8, policy chosen/rejected -10 / -12,
reference -11 / -11: log-ratios +1 and -1, argument 0.1 + 0.8 * 0.1 = 0.18, loss = log(1 + e^-0.18) =
0.607192; rewards 0.1 and -0.08.

    Check: beta=0.1 lam=0.8
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.607192 chosen_rewards=0.1 rejected_rewards=-0.08
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    lam: float = 0.95

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratios)")
        self._require(0 < self.lam <= 1, "lam", "lam must be in (0, 1] (1 is DPO)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.lam * self.beta * rejected_ratio
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
