"""SamPO: Lu et al. 2024, "Eliminating Biased Length Reliance of Direct Preference Optimization via
Down-Sampled KL Divergence", arXiv:2406.10957, Eq. 9-10.

    T_m = min(|yw|, |yl|);  S(y) = T_m of y's completion positions, drawn uniformly without replacement
    r~(y) = sum_{t in S(y)} [log pi(y_t | x, y_<t) - log ref(y_t | x, y_<t)]
    L = -log sigmoid(beta * [r~(yw) - r~(yl)])

DPO sums log-ratios over every token, so a longer answer's reward is a sum of more terms and its magnitude
tracks length. SamPO compares the two answers over the same number of tokens: the shorter keeps all of
its own, the longer contributes a random T_m of its positions, drawn afresh at every step. Needs the
per-token view (`needs_token_logps`); the reference's per-token log-probs come from the shared cache.

Definition choices: the same positions are used for the policy and the reference log-prob of a token (the
log-ratio per token of Eq. 9). The authors' code (github.com/LuJunru/SamPO, dpo_trainer.py,
`get_batch_logps`: `torch.multinomial(loss_mask[...].float(), min_length, replacement=False)`) draws the
positions inside the log-prob function, so its policy and reference passes draw independently; with our
cached reference that would mean two different subsets per token ratio, and we follow the equation. The
draw uses torch's generator, which the trainer seeds (and a resumed run restores), so runs repeat. Rewards:
beta * the sampled log-ratios. TRL has no SamPO.

Worked example (checked in tests/losses/): beta = 0.1; chosen 3 tokens, each with log-ratio -1 (policy -2,
reference -1), rejected 2 tokens with policy -3, -1 and reference -1, -1 (log-ratio -2). T_m = 2: any 2 of
the chosen tokens give -2, so margin 0, loss log 2 = 0.693147, rewards -0.2 and -0.2 (DPO: -3 against -2,
loss 0.744397).

    Check: beta=0.1
        batch: token_chosen_logps=-2:-2:-2 token_rejected_logps=-3:-1 token_ref_chosen_logps=-1:-1:-1
            token_ref_rejected_logps=-1:-1
        expect: loss=0.693147 chosen_rewards=-0.2 rejected_rewards=-0.2
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


def down_sample(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A mask (B, T) keeping `keep[b]` of row b's masked positions, uniformly at random without replacement
    (all of them where keep[b] >= their number): the keep[b] smallest of uniform scores."""
    scores = torch.rand(mask.shape, device=mask.device)
    scores = scores.masked_fill(mask == 0, 2.0)  # never before a completion position
    rank = scores.argsort(dim=1).argsort(dim=1)
    return ((rank < keep.unsqueeze(1)) & (mask > 0)).to(mask.dtype)


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_token_logps = True
    beta: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        t = stats.require_tokens()
        ref_chosen, ref_rejected = t.require_reference()
        shared = torch.minimum(t.chosen_mask.sum(1), t.rejected_mask.sum(1))
        chosen_keep = down_sample(t.chosen_mask, shared)
        rejected_keep = down_sample(t.rejected_mask, shared)
        chosen = self.beta * ((t.chosen_logps - ref_chosen) * chosen_keep).sum(1)
        rejected = self.beta * ((t.rejected_logps - ref_rejected) * rejected_keep).sum(1)
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
