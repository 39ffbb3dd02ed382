"""NPO: Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning", arXiv:2404.05868, Eq. 3.

    L = -(2 / beta) * log sigmoid(-beta * [log pi(yl|x) - log ref(yl|x)])

DPO with the chosen answer dropped: only the rejected (negative) answer is pushed down, against the reference,
and the push fades as its log-ratio falls (the loss is bounded where gradient ascent on -log pi(yl|x) is
not). 2 / beta makes the gradient at the reference equal to gradient ascent's. NPO was built for unlearning;
here it is the negative-only baseline of a preference comparison: what DPO gains from its chosen answers is
the difference. With nll_weight > 0 the chosen answers enter only through an NLL term (the paper's NPO+RT
"retain" loss, our chosen answers as the retain set), normalised per token as CPO's (batch_token_mean_nll).

Definition choices: log-probs summed over completion tokens, as DPO's. Implicit rewards logged as DPO's,
beta * log-ratio on each side (the chosen reward moves only through shared weights). TRL has no NPO.

Worked example (checked in tests/losses/): beta = 0.1, policy rejected -12 against reference -11
(log-ratio -1): loss = 20 * log(1 + e^-0.1) = 12.887933; rewards 0.1 (chosen: -10 against -11) and -0.1.

    Check: beta=0.1 nll_weight=0
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
            chosen_tokens=5 rejected_tokens=6
        expect: loss=12.887933 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats, batch_token_mean_nll


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    nll_weight: float = 0.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the rejected log-ratio)")
        self._require(self.nll_weight >= 0, "nll_weight", "nll_weight must be >= 0 (0: negatives only)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        losses = -(2.0 / self.beta) * F.logsigmoid(-self.beta * rejected_ratio)
        if self.nll_weight:
            losses = losses + self.nll_weight * batch_token_mean_nll(stats)
        return LossOutput(losses, self.beta * chosen_ratio, self.beta * rejected_ratio)
