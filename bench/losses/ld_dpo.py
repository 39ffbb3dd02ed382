"""LD-DPO: Liu et al. 2024, "Length Desensitization in Direct Preference Optimization", arXiv:2409.06411,
Eq. 11-12 (TRL's DPOConfig `ld_alpha`).

    l_p = min(|yw|, |yl|)
    log p~(y|x) = sum_{t <= l_p} log p(y_t | x, y_<t) + alpha * sum_{t > l_p} log p(y_t | x, y_<t)
    L = -log sigmoid(beta * [log pi~(yw|x) - log ref~(yw|x) - (log pi~(yl|x) - log ref~(yl|x))])

DPO's summed log-probs grow with length, so the longer answer of a pair dominates the margin and DPO
learns verbosity. LD-DPO keeps the tokens the two answers share in number (the first l_p of each) at full
weight and scales the longer answer's excess tokens by alpha, for the policy and the reference alike.
alpha = 1 is DPO; alpha = 0 drops the excess tokens (SamPO's idea, deterministically: the first l_p
tokens, not a random subset). Needs the per-token view (`needs_token_logps`); the reference's per-token
log-probs come from the shared cache. Definition choices are TRL's (checked against it on real batches in
tests/losses/): l_p per pair in completion tokens (<eos> included); implicit rewards beta * the weighted
log-ratio.

Worked example (checked in tests/losses/): beta = 0.1, alpha = 0.5; chosen 3 tokens, rejected 2 (l_p = 2).
Policy chosen -1, -2, -3: -1 - 2 + 0.5 * -3 = -4.5; reference chosen -1, -1, -1: -2.5; log-ratio -2. Policy
rejected -3, -3: -6 against reference -1, -1: -2; log-ratio -4. beta * margin 0.2, loss 0.598139, rewards
-0.2 and -0.4 (plain DPO: log-ratios -3 and -4, loss 0.644397).

    Check: beta=0.1 alpha=0.5
        batch: token_chosen_logps=-1:-2:-3 token_rejected_logps=-3:-3 token_ref_chosen_logps=-1:-1:-1
            token_ref_rejected_logps=-1:-1
        expect: loss=0.598139 chosen_rewards=-0.2 rejected_rewards=-0.4
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


def shared_and_tail(
    logps: torch.Tensor, mask: torch.Tensor, shared: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """(sum of the first `shared` completion tokens' values, sum of the rest) per row."""
    position = mask.cumsum(dim=1) * mask  # 1..n on completion tokens, 0 elsewhere
    head = (position > 0) & (position <= shared.unsqueeze(1))
    tail = position > shared.unsqueeze(1)
    return (logps * head).sum(1), (logps * tail).sum(1)


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_token_logps = True
    beta: float = 0.1
    alpha: float = 0.5

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(
            0 <= self.alpha <= 1,
            "alpha",
            "alpha must be in [0, 1] (1 is DPO, 0 drops the longer answer's excess)",
        )

    def weighted(self, logps: torch.Tensor, mask: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        head, tail = shared_and_tail(logps, mask, shared)
        return head + self.alpha * tail

    def __call__(self, stats: SequenceStats) -> LossOutput:
        t = stats.require_tokens()
        ref_chosen, ref_rejected = t.require_reference()
        shared = torch.minimum(t.chosen_mask.sum(1), t.rejected_mask.sum(1))
        chosen = self.weighted(t.chosen_logps, t.chosen_mask, shared)
        chosen = chosen - self.weighted(ref_chosen, t.chosen_mask, shared)
        rejected = self.weighted(t.rejected_logps, t.rejected_mask, shared)
        rejected = rejected - self.weighted(ref_rejected, t.rejected_mask, shared)
        chosen, rejected = self.beta * chosen, self.beta * rejected
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
