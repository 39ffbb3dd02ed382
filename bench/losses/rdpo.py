"""R-DPO: Park, Rafailov, Ermon, Finn 2024, "Disentangling Length from Quality in Direct Preference
Optimization", arXiv:2403.19159, Eq. 9.

    L = -log sigmoid(beta * [log pi(yw|x)/ref(yw|x) - log pi(yl|x)/ref(yl|x)] + alpha * (|yw| - |yl|))

DPO (log-probs summed over completion tokens) whose RL objective carries a length penalty alpha * |y|. Under
that penalty the Bradley-Terry reward is r(x, y) = beta * log pi(y|x)/ref(y|x) + alpha * |y| (+ a term in x
only), so the length difference enters the sigmoid with a plus sign: when the chosen answer is the longer
one, part of the preference is credited to length and the log-ratio margin is pushed less, which is what
keeps DPO from learning "longer is better". alpha = 0 is DPO. Lengths are in tokens of our tokenizer
(completion tokens, <eos> included), so alpha is in reward units per token and its scale depends on the
tokenizer and on beta. Implicit reward we log: beta * log pi/ref + alpha * |y|, whose chosen-minus-rejected
difference is the sigmoid argument (DPO's part alone is that minus alpha * |y|). TRL has no R-DPO (its
`ld_alpha` is LD-DPO, another method).

Worked example (checked in tests/losses/): beta = 0.1, alpha = 0.05, policy
chosen/rejected = -10 / -12, reference -11 / -11, lengths 20 / 10 tokens. Log-ratios +1 and -1, beta *
margin = 0.2, length term 0.05 * (20 - 10) = 0.5, argument 0.7; rewards 0.1 + 1.0 = 1.1 and -0.1 +
0.5 = 0.4; per-example loss = log(1 + e^-0.7) = 0.403186 (DPO alone: 0.598139).

    Check: beta=0.1 alpha=0.05
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 chosen_tokens=20 rejected_tokens=10
            ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.403186 chosen_rewards=1.1 rejected_rewards=0.4
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    alpha: float = 0.05

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(
            self.alpha >= 0, "alpha", "alpha must be >= 0 (a length penalty per token; 0 is plain DPO)"
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        ref_chosen, ref_rejected = stats.require_reference()
        dtype = stats.policy_chosen_logps.dtype
        chosen = self.beta * (stats.policy_chosen_logps - ref_chosen)
        chosen = chosen + self.alpha * stats.chosen_tokens.to(dtype)
        rejected = self.beta * (stats.policy_rejected_logps - ref_rejected)
        rejected = rejected + self.alpha * stats.rejected_tokens.to(dtype)
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
