"""SLiC-HF: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
arXiv:2305.10425, Eq. 1 (rank calibration with the SFT regulariser on the chosen answers).

    L = max(0, delta - log pi(yw|x) + log pi(yl|x)) - reg_weight * log pi(yw|x)

A hinge on the policy's own sequence log-likelihoods, no reference model: the chosen answer must be at least
delta nats more likely than the rejected one, and a cross-entropy term keeps the policy near the chosen
answers (the paper's regulariser on SFT targets; with preference data alone the chosen answers are those).
`hinge` (bench/losses/hinge.py) is the later form with a reference log-ratio and beta; this is the original.
Definition choices: log-probs summed over completion tokens, as the paper's sequence likelihoods; the
regulariser is the summed NLL, as its Eq. 1 writes it (so its weight per token is reg_weight). Implicit
rewards: the policy's log-likelihoods. TRL has no SLiC-HF.

Worked example (checked in tests/losses/): delta = 1, reg_weight = 0.5, two pairs. Pair 1: policy
chosen/rejected -10 / -12: hinge max(0, 1 - 2) = 0, regulariser 0.5 * 10 = 5, loss 5. Pair 2: -12 / -11.5:
hinge 1 + 0.5 = 1.5, regulariser 6, loss 7.5. Batch mean 6.25.

    Check: delta=1 reg_weight=0.5
        batch: policy_chosen_logps=-10,-12 policy_rejected_logps=-12,-11.5
        expect: loss=6.25 chosen_rewards=-10,-12 rejected_rewards=-12,-11.5
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference = False
    delta: float = 1.0
    reg_weight: float = 0.5

    def __post_init__(self) -> None:
        self._require(self.delta > 0, "delta", "delta must be > 0 (the margin in nats the hinge asks for)")
        self._require(self.reg_weight >= 0, "reg_weight", "reg_weight must be >= 0 (0: no regulariser)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen, rejected = stats.policy_chosen_logps, stats.policy_rejected_logps
        losses = torch.relu(self.delta - chosen + rejected) - self.reg_weight * chosen
        return LossOutput(losses, chosen, rejected)
