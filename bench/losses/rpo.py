"""DPO + NLL on the chosen completion: Pang et al. 2024, "Iterative Reasoning Preference Optimization",
arXiv:2404.19733, Sec. 2 (the DPO+NLL loss), the recipe Llama 3 adopted (Dubey et al. 2024, arXiv:2407.21783,
Sec. 4.1.4, NLL coefficient 0.2):

    L = -log sigmoid(beta h) + alpha * ( -log pi(yw|x) / |yw| )

h is the DPO margin of summed log-ratios; the NLL term is the chosen completion's log-prob divided by its own
token count (<eos> included), then averaged over pairs like every per-example loss here. `alpha` weights the
NLL term, as in Llama 3 and TRL (`loss_type=["sigmoid", "sft"]`, `loss_weights=[1, alpha]`); Pang et al. write
NLL + alpha * DPO instead: the two agree at their alpha = 1 and otherwise differ by the overall scale (a
learning-rate change). The NLL term keeps the chosen likelihood from falling while the margin grows. Implicit
reward logged: beta * log-ratio (the DPO part).

Worked example (checked in tests/losses/): beta = 0.1, alpha = 1, policy chosen/rejected =
-10 / -12, reference chosen/rejected = -11 / -11, chosen tokens 5. DPO part -log sigmoid(0.2) = 0.598139, NLL
part 10 / 5 = 2, so
loss = 0.598139 + 1 * 2 = 2.598139; rewards 0.1 and -0.1.

    Check: beta=0.1 alpha=1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 chosen_tokens=5 ref_chosen_logps=-11
            ref_rejected_logps=-11
        expect: loss=2.598139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    alpha: float = 1.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(self.alpha >= 0, "alpha", "the NLL weight alpha must be >= 0 (0 gives plain DPO)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        # per sequence (each chosen completion by its own length), not per batch token as TRL's "sft"
        nll = -stats.policy_chosen_logps / stats.chosen_tokens.clamp(min=1)
        return LossOutput(-F.logsigmoid(chosen - rejected) + self.alpha * nll, chosen, rejected)
