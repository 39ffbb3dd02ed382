"""Hinge (SLiC-HF): Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
arXiv:2305.10425, Sec. 2 (calibration loss max(0, delta - log P(y+|x) + log P(y-|x))), in the
reference-normalised "hinge-norm" form of RSO (Liu et al. 2023, arXiv:2309.06657), which is TRL's
`loss_type="hinge"`:

    L = max(0, 1 - beta h),   h = [log pi(yw|x) - log ref(yw|x)] - [log pi(yl|x) - log ref(yl|x)]

beta is RSO's gamma, the reciprocal of SLiC's margin delta: L = beta * max(0, 1/beta - h), so pairs whose
margin exceeds 1/beta nats (summed log-ratio) get no gradient. Departures from SLiC-HF: the margin is measured
against the reference (SLiC-HF uses raw policy log-probs), and SLiC-HF's regulariser (lambda times
cross-entropy on SFT targets) is left out (bench/losses/rpo.py shows how an NLL term is added). Implicit
reward logged: beta * log-ratio.

Worked example (checked in tests/losses/): beta = 0.1, policy chosen/rejected = -10 / -12,
reference chosen/rejected = -11 / -11. h = 2, beta h = 0.2, so
loss = max(0, 1 - 0.2) = 0.800000; rewards 0.1 and -0.1.

    Check: beta=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.800000 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.05

    def __post_init__(self) -> None:
        self._require(
            self.beta > 0, "beta", "beta must be > 0 (it is 1/margin: the hinge closes at h = 1/beta)"
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        return LossOutput(torch.relu(1 - (chosen - rejected)), chosen, rejected)
