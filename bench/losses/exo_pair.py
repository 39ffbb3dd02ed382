"""EXO, pairwise form: Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment",
arXiv:2402.00856, Eq. 16 (EXO-pref with K = 2): the reverse KL from the model's distribution over the pair to
the label distribution, instead of DPO's forward cross-entropy:

    L = q log(q / (1 - eps)) + (1 - q) log((1 - q) / eps),   q = sigmoid(beta h)

where h is the DPO margin of summed log-ratios and the hard label is smoothed to (1 - eps, eps) so the log is
finite (eps > 0 is required). Reverse KL is mode-seeking: the loss is minimised at q = 1 - eps and, unlike
DPO, penalises putting mass on the rejected side more than it rewards the chosen one. Same as TRL's
`loss_type="exo_pair"` with `label_smoothing = eps`. Implicit reward logged: beta * log-ratio.

Worked example (checked in tests/losses/): beta = 0.1, label_smoothing = 0.001, policy
chosen/rejected = -10 / -12, reference chosen/rejected = -11 / -11. h = 2, q = sigmoid(0.2) = 0.549834,
q log(q / 0.999) = -0.328327, (1 - q) log((1 - q) / 0.001) = 2.750342, so
loss = -0.328327 + 2.750342 = 2.422015; rewards 0.1 and -0.1.

    Check: beta=0.1 label_smoothing=0.001
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=2.422015 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    label_smoothing: float = 1e-3

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(
            0 < self.label_smoothing < 0.5,
            "label_smoothing",
            "eps must lie in (0, 0.5): the loss takes log(eps), and eps >= 0.5 reverses the preference",
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        logits = chosen - rejected
        eps = self.label_smoothing
        # q log(q / (1 - eps)) + (1 - q) log((1 - q) / eps); logsigmoid keeps log q finite where q underflows
        chosen_term = torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-eps))
        rejected_term = torch.sigmoid(-logits) * (F.logsigmoid(-logits) - math.log(eps))
        return LossOutput(chosen_term + rejected_term, chosen, rejected)
