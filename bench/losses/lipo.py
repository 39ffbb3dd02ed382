"""LiPO-lambda: Liu, Qin, Wu, Shen, Yan, Khalman, Joshi, Zhao, Liu, Chen, Li, Wang 2024, "LiPO: Listwise
Preference Optimization through Learning-to-Rank", arXiv:2402.01878, Eq. 6-7: a lambda-weighted pairwise
logistic loss over every ordered pair of a scored list, the LambdaLoss of learning-to-rank on DPO's implicit
rewards.

    s_i = beta * (log pi(y_i|x) - log ref(y_i|x)),   psi_i the data's score of y_i
    loss = sum over pairs with psi_i > psi_j of  Delta_ij * log(1 + exp(-(s_i - s_j)))
    Delta_ij = |G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|,  G_i = 2^psi_i - 1,  D(tau) = log(1 + tau)

tau_i is y_i's rank (1 = highest) when the list is sorted by the current s, so the weights follow the model
during training; they carry no gradient. Definition choices: D uses the natural log as the paper writes it
(LambdaLoss's DCG uses log2: a constant factor, which the learning rate absorbs); pairs with equal scores
give nothing; the per-row loss is the sum over its pairs (the paper's), and a ragged list's missing
completions take part in no pair. The gain 2^psi grows fast with the score scale: LiPO's labels are small
(0-1 reward-model probabilities or a 1-10 rating); rescale larger scores in the data. Its reference code is
not public; the formula is the paper's. Rewards logged: s of the first and second completion.

Worked example (checked in tests/losses/): beta = 0.5. Row 1: three completions with scores 2, 1, 0,
policy -10, -12, -9, reference -11 each: s = 0.5, -0.5, 1.0, ranks by s 2, 3, 1, D = log 3, log 4, log 2,
G = 3, 1, 0. Pairs: (1,2) Delta 2 * |1/log 3 - 1/log 4| = 0.377783, log(1 + e^-1) = 0.313262; (1,3) Delta
3 * |1/log 3 - 1/log 2| = 1.597367, log(1 + e^0.5) = 0.974077; (2,3) Delta |1/log 4 - 1/log 2| = 0.721348,
log(1 + e^1.5) = 1.701413: loss 2.901614. Row 2: two completions scored 1, 0, policy -5 / -6, reference -5.5
each: Delta = |1/log 2 - 1/log 3| = 0.532510, times log(1 + e^-0.5) = 0.474077: 0.252425. Mean 1.577020.

    Check: beta=0.5
        batch: policy_chosen_logps=-10,-5 policy_rejected_logps=-12,-6 ref_chosen_logps=-11,-5.5
            ref_rejected_logps=-11,-5.5 more_logps=-9,0 more_ref_logps=-11,0 more_mask=1,0
            more_scores=2:1:0,1:0:0
        expect: loss=1.577020 chosen_rewards=0.5,0.25 rejected_rewards=-0.5,-0.25
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


def lambda_weights(s: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, K, K) Delta_ij for the pairs with psi_i > psi_j among a row's completions, 0 elsewhere."""
    masked = s.detach().masked_fill(mask == 0, float("-inf"))
    ranks = masked.argsort(1, descending=True).argsort(1).to(s.dtype) + 1  # 1 = the highest s
    inverse_discount = 1 / torch.log1p(ranks)
    gain = torch.pow(2.0, scores.to(s.dtype)) - 1
    delta = (gain[:, :, None] - gain[:, None, :]).abs() * (
        inverse_discount[:, :, None] - inverse_discount[:, None, :]
    ).abs()
    valid = (mask[:, :, None] > 0) & (mask[:, None, :] > 0) & (scores[:, :, None] > scores[:, None, :])
    return torch.where(valid, delta, torch.zeros_like(delta))


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    data_shape = "list"
    needs_scores = True

    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the implicit rewards)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        policy, ref, _, mask = stats.completions()
        scores = stats.require_more().scores
        if ref is None or scores is None:
            raise RuntimeError("lipo needs reference log-probs and the data's scores of every completion")
        s = self.beta * (policy - ref)
        pair_losses = F.softplus(-(s[:, :, None] - s[:, None, :]))  # log(1 + exp(-(s_i - s_j)))
        losses = (lambda_weights(s, scores, mask) * pair_losses).sum((1, 2))
        return LossOutput(losses, s[:, 0], s[:, 1])
