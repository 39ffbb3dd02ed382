"""ODPO: Amini, Vieira, Cotterell 2024, "Direct Preference Optimization with an Offset", arXiv:2402.10571,
Eq. 6 with the log-scaled offset of its experiments.

    Delta = alpha * log(score(yw) - score(yl))     (offset=difference; ratio: log(score(yw) / score(yl)))
    L = -log sigmoid(beta * [log pi(yw|x)/ref(yw|x) - log pi(yl|x)/ref(yl|x)] - Delta)

DPO treats every pair alike; ODPO asks the policy's reward margin to exceed an offset that grows with how
much better the chosen answer scored (a reward model's, a classifier's or a rater's scores, carried by the
data: `needs_scores`), so a clear preference is pushed further than a near tie. alpha = 0 is DPO.

Definition choices. The offset and its log scaling are the authors' code (github.com/rycolab/odpo,
trainers.py, `preference_loss`: `margin = torch.log(chosen_rewards - rejected_rewards)` and
`losses = -F.logsigmoid(beta * logits - alpha * margin)`). The log is undefined where the chosen answer did
not score higher (noisy labels: the toy world's judge draws its labels); as the score gap closes the offset
tends to -inf and the pair's loss and gradient to 0, so such pairs get exactly that limit (loss 0), and the
preflight says how many there are. Implicit rewards: DPO's, beta * log-ratio. TRL has no ODPO.

Worked example (checked in tests/losses/): beta = 0.1, alpha = 1. Pair 1: log-ratios +1 / -1 (margin 0.2),
scores 7 / 5: offset log 2 = 0.693147, loss -log sigmoid(0.2 - 0.693147) = 0.969817. Pair 2: the same
log-ratios, scores 3 / 4 (the rejected answer scored higher): loss 0. Batch mean 0.484908; rewards 0.1 and
-0.1 for both. offset=ratio needs positive scores (log of their ratio), and is then defined for every pair.

    Check: beta=0.1 alpha=1
        batch: policy_chosen_logps=-10,-10 policy_rejected_logps=-12,-12 ref_chosen_logps=-11,-11
            ref_rejected_logps=-11,-11 chosen_scores=7,3 rejected_scores=5,4
        expect: loss=0.484908 chosen_rewards=0.1,0.1 rejected_rewards=-0.1,-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.errors import ConfigError

from .base import LossOutput, PreferenceLoss, SequenceStats

OFFSETS = ("difference", "ratio")  # the authors' code: ratio=False (difference) or True


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_scores = True
    beta: float = 0.1
    alpha: float = 1.0
    offset: str = "difference"

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(self.alpha >= 0, "alpha", "alpha must be >= 0 (the offset's scale; 0 is DPO)")
        self._require(self.offset in OFFSETS, "offset", f"offset must be one of {', '.join(OFFSETS)}")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        score_chosen, score_rejected = (s.to(chosen.dtype) for s in stats.require_scores())
        if self.offset == "ratio":  # positive scores (checked before training): always defined
            offset = self.alpha * torch.log(score_chosen / score_rejected)
            return LossOutput(-F.logsigmoid(chosen - rejected - offset), chosen, rejected)
        usable = score_chosen > score_rejected
        gap = torch.where(usable, score_chosen - score_rejected, torch.ones_like(score_chosen))
        losses = -F.logsigmoid(chosen - rejected - self.alpha * torch.log(gap))
        return LossOutput(torch.where(usable, losses, torch.zeros_like(losses)), chosen, rejected)

    def score_notes(self, chosen: list[float], rejected: list[float]) -> str | None:
        if self.offset == "ratio":
            if min(chosen + rejected) <= 0:
                raise ConfigError(
                    "loss.offset=ratio takes the log of score_chosen / score_rejected, so every score must "
                    "be positive; use loss.offset=difference for scores that can be 0 or negative"
                )
            return None
        ignored = sum(c <= r for c, r in zip(chosen, rejected, strict=True))
        if not ignored:
            return None
        return (
            f"{ignored} of {len(chosen)} pairs have score_chosen <= score_rejected: ODPO gives them no loss "
            "(the limit of its log offset as the score gap closes)"
        )
