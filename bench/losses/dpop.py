"""DPO-Positive (DPOP): Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with
DPO-Positive", arXiv:2402.13228, Eq. 3.

    L = -log sigmoid(beta * [log pi(yw|x)/ref(yw|x) - log pi(yl|x)/ref(yl|x)
                             - lam * max(0, log ref(yw|x)/pi(yw|x))])

DPO can lower the likelihood of the chosen answer as long as the rejected one falls faster (the paper shows
it does on pairs that differ in a few tokens). DPOP adds a hinge inside the sigmoid that is zero while the
policy keeps the chosen answer at least as likely as the reference does and grows with every nat it loses,
scaled by lam. lam = 0 is DPO. Log-probs are summed over completion tokens, as DPO's. Definition choices: the
penalty sits inside beta's bracket, as the paper's Eq. 3 writes it (so beta scales it too); the implicit
reward we log is the chosen side's whole term, beta * (log-ratio - lam * penalty), so that chosen minus
rejected reward is the sigmoid argument. TRL has no DPOP.

Worked example (checked in tests/losses/): beta = 0.1, lam = 50, two pairs against a reference at -11 / -11.
Pair 1: policy chosen/rejected -12 / -13: the chosen answer lost 1 nat, penalty 50 * 1, argument
0.1 * (-1 - 50 + 2) = -4.9, loss log(1 + e^4.9) = 4.907419, rewards -5.1 and -0.2. Pair 2: policy
-10 / -12: chosen log-ratio +1, no penalty, argument 0.2, loss 0.598139 (DPO's), rewards 0.1 and -0.1.
Batch mean 2.752779.

    Check: beta=0.1 lam=50
        batch: policy_chosen_logps=-12,-10 policy_rejected_logps=-13,-12 ref_chosen_logps=-11,-11
            ref_rejected_logps=-11,-11
        expect: loss=2.752779 chosen_rewards=-5.1,0.1 rejected_rewards=-0.2,-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    lam: float = 50.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(self.lam >= 0, "lam", "lam must be >= 0 (the weight of the chosen-likelihood hinge)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        penalty = torch.clamp(-chosen_ratio, min=0.0)  # max(0, log ref(yw|x) - log pi(yw|x))
        chosen = self.beta * (chosen_ratio - self.lam * penalty)
        rejected = self.beta * rejected_ratio
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
