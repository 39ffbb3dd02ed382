"""AOT, unpaired form: Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal
Transport", arXiv:2406.05882, Sec. 3 (unpaired AOT), TRL's `loss_type="aot_unpaired"`. Over B pairs:

    c_i = log pi(yw_i|x_i) - log ref(yw_i|x_i),   r_i = log pi(yl_i|x_i) - log ref(yl_i|x_i)
    L_k = -log sigmoid(beta * (c_(k) - r_(k))),   k = 1..B,   c_(k), r_(k): the k-th smallest of each

Paired AOT (bench/losses/aot.py) sorts margins; the unpaired form never pairs a chosen answer with its own
rejected one: it asks the distribution of chosen log-ratios to dominate the distribution of rejected ones,
quantile by quantile, so it also trains on data whose good and bad answers were collected apart (only their
batch is shared). The B losses are in sorted order, not pair order; the trainer only averages them. Log-probs
summed over tokens; no label smoothing (TRL's is 0 by default). Implicit rewards: beta * log-ratio, per pair.

Worked example (checked in tests/losses/): beta = 0.1, two pairs: policy chosen/rejected -10 / -12 and
-8 / -7, reference -11 / -11 and -7 / -10. Chosen log-ratios (1, -1), sorted (-1, 1); rejected (-1, 3), sorted
(-1, 3); quantile differences (0, -2); losses log 2 = 0.693147 and log(1 + e^0.2) = 0.798139, so the batch
loss = (0.693147 + 0.798139) / 2 = 0.745643.

    Check: beta=0.1
        batch: policy_chosen_logps=-10,-8 policy_rejected_logps=-12,-7 ref_chosen_logps=-11,-7
            ref_rejected_logps=-11,-10
        expect: loss=0.745643 chosen_rewards=0.1,-0.1 rejected_rewards=-0.1,0.3
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the quantile differences)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        delta = torch.sort(chosen_ratio).values - torch.sort(rejected_ratio).values
        return LossOutput(
            -F.logsigmoid(self.beta * delta), self.beta * chosen_ratio, self.beta * rejected_ratio
        )
