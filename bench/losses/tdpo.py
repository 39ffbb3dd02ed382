"""TDPO: Zeng, Liu, Ma, Yang, Zhang, Wang 2024, "Token-level Direct Preference Optimization",
arXiv:2404.11999, Eq. 18 (TDPO1) and Eq. 20 (TDPO2): DPO with each completion's sequential KL divergence
from the reference, summed over its positions.

    m(y) = log pi(y|x) - log ref(y|x)                                     (summed over completion tokens)
    D(y) = sum_t KL(ref(. | x, y<t) || pi(. | x, y<t))                    (the whole next-token distributions)
    TDPO1: L = -log sigmoid(beta * [m(yw) - m(yl) + D(yw) - D(yl)])
    TDPO2: L = -log sigmoid(beta * [m(yw) - m(yl) + alpha * (sg(D(yw)) - D(yl))])

as the authors' code writes it (Vance0124/Token-level-Direct-Preference-Optimization, trainers.py
`tdpo_loss`: `logits = chosen_rejected_logps_margin + alpha * (chosen_position_kl.detach() -
rejected_position_kl)`, and `_tdpo_get_batch_logps`: `per_position_kl = (reference_vocab_ps *
(reference_vocab_logps - vocab_logps)).sum(-1)`, summed over the completion mask). The variant declares
`needs_position_kl`: the trainer keeps the reference as a live second model and returns full logits
(bench.train.position_kl), checked against the two models' distributions written out in tests/losses/.
Rewards logged, as the authors' code: beta * (m(y) + D(y)).

Worked example (checked in tests/losses/): beta = 0.1, alpha = 0.5, TDPO2. Policy chosen/rejected -10 / -12,
reference -11 / -11: m = 1 / -1; D = 0.4 / 1.0. beta * [2 + 0.5 * (0.4 - 1.0)] = 0.17, loss = log(1 +
e^-0.17) = 0.611755; rewards 0.1 * 1.4 = 0.14 and 0.1 * 0 = 0.

    Check: beta=0.1 alpha=0.5
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
            chosen_position_kl=0.4 rejected_position_kl=1.0
        expect: loss=0.611755 chosen_rewards=0.14 rejected_rewards=0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_position_kl = True

    beta: float = 0.1
    alpha: float = 0.5
    tdpo2: bool = True

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the margin)")
        self._require(self.alpha >= 0, "alpha", "alpha must be >= 0 (weight of the KL term, TDPO2)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_margin, rejected_margin = stats.log_ratios()
        chosen_kl, rejected_kl = stats.require_position_kl()
        if self.tdpo2:
            logits = chosen_margin - rejected_margin + self.alpha * (chosen_kl.detach() - rejected_kl)
        else:
            logits = chosen_margin - rejected_margin + chosen_kl - rejected_kl
        chosen_rewards = self.beta * (chosen_margin + chosen_kl).detach()
        rejected_rewards = self.beta * (rejected_margin + rejected_kl).detach()
        return LossOutput(-F.logsigmoid(self.beta * logits), chosen_rewards, rejected_rewards)
