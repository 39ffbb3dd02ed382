"""Plackett-Luce DPO: Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023, "Direct Preference Optimization:
Your Language Model is Secretly a Reward Model", arXiv:2305.18290, Appendix A.3 (Eq. 18 there): DPO for a
ranking of K completions instead of a pair.

    s_k = beta * (log pi(y_k|x) - log ref(y_k|x)),  y_1 > y_2 > ... > y_K the data's ranking
    loss = - sum_{k=1}^{K-1} [ s_k - log sum_{j=k}^{K} exp(s_j) ]

The Plackett-Luce likelihood of the ranking under the implicit reward; for K = 2 it is DPO's loss exactly
(tested). The k = K term is log 1 = 0 and is left out. Definition choices: the per-row loss is the sum over
ranks, not divided by K-1 (the paper's objective; a list of K weighs K-1 choices); a ragged list's missing
completions are masked out of every sum (`ListStats.mask`), so a row with K = 2 in a batch of longer lists is
its DPO loss. Ties in the data's scores keep the data's order (bench.sources.shapes). The rewards logged are
s_1 (best, "chosen") and s_2 (second, "rejected"). No public reference code ships this objective; the
formula is the paper's.

Worked example (checked in tests/losses/): beta = 0.5. Row 1 ranks three completions with policy -10, -12,
-9 and reference -11 each: s = 0.5, -0.5, 1.0; terms 0.5 - log(e^0.5 + e^-0.5 + e^1) = -1.104131 and -0.5 -
log(e^-0.5 + e^1) = -1.701413: loss 2.805544. Row 2 has two: policy -5 / -6, reference -5.5 each, s = 0.25 /
-0.25, loss log(1 + e^-0.5) = 0.474077 (DPO's). Batch mean 1.639810; rewards 0.5, 0.25 and -0.5, -0.25.

    Check: beta=0.5
        batch: policy_chosen_logps=-10,-5 policy_rejected_logps=-12,-6 ref_chosen_logps=-11,-5.5
            ref_rejected_logps=-11,-5.5 more_logps=-9,0 more_ref_logps=-11,0 more_mask=1,0
        expect: loss=1.639810 chosen_rewards=0.5,0.25 rejected_rewards=-0.5,-0.25
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


def suffix_logsumexp(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, K): log sum_{j >= k, mask_j = 1} exp(values_j) at each k (-inf past a row's last completion)."""
    masked = values.masked_fill(mask == 0, float("-inf"))
    return torch.flip(torch.logcumsumexp(torch.flip(masked, [1]), 1), [1])


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    data_shape = "list"

    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the implicit rewards)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        policy, ref, _, mask = stats.completions()
        if ref is None:
            raise RuntimeError("plackett_luce needs reference log-probs")
        s = self.beta * (policy - ref)
        terms = torch.where(mask > 0, s - suffix_logsumexp(s, mask), torch.zeros_like(s))
        return LossOutput(-terms.sum(1), s[:, 0], s[:, 1])
