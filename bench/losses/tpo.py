"""TPO: Saeidi, Verma, Uddin, Baral 2024, "Triple Preference Optimization: Achieving Better Alignment using a
Single Step Optimization", arXiv:2405.16681: each row is a pair plus a gold response (`data_shape = "gold"`);
a reference-free preference term between chosen and rejected, and the gold response's NLL.

    delta = log pi(yw|x) - log pi(yl|x)         (summed; divided by each completion's length for ipo, tpo_l)
    sigmoid: -(1 - eps) log sigmoid(beta delta) - eps log sigmoid(-beta delta)
    hinge:   max(0, 1 - beta delta)
    ipo:     (delta - 1/(2 beta))^2
    tpo_l:   the sigmoid loss of delta - gamma/beta (TPO-L, the length-normalised variant with a margin)
    loss = mean over rows of the above + alpha * (- sum_batch log pi(gold) / gold tokens in the batch)

This is TRL's implementation (trl/experimental/tpo/tpo_trainer.py `_compute_loss`: `delta_score =
chosen_logps - rejected_logps`, the four `loss_type` branches, and `nll_loss = F.cross_entropy(ref_logits[
ref_mask], ref_labels[ref_mask])` over the gold completion tokens), checked against it on real batches
(tests/losses/test_lists.py). The gold NLL is the token mean over the whole batch, so each row's share is
-log pi(gold_i) * B / (gold tokens in the batch) (as bench.losses.base.batch_token_mean_nll does for CPO).
The gold response is `stats.more` (one completion, not ranked). Rewards logged, as TRL does: beta * log pi
of chosen and rejected.

Worked example (checked in tests/losses/): beta = 0.1, alpha = 1, sigmoid. Chosen -10 / -20, rejected -12 /
-18: -log sigmoid(0.2) = 0.598139 and -log sigmoid(-0.2) = 0.798139, mean 0.698139; gold -6 / -9 over 3 and 6
tokens: NLL 15 / 9 = 1.666667; loss 2.364806. Rewards -1, -2 and -1.2, -1.8.

    Check: beta=0.1 alpha=1
        batch: policy_chosen_logps=-10,-20 policy_rejected_logps=-12,-18 chosen_tokens=2,2
            rejected_tokens=2,2 more_logps=-6,-9 more_tokens=3,6
        expect: loss=2.364806 chosen_rewards=-1,-2 rejected_rewards=-1.2,-1.8
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "tpo_l")


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference = False
    data_shape = "gold"

    beta: float = 0.01
    alpha: float = 1.0
    loss_type: str = "sigmoid"
    gamma: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-prob difference)")
        self._require(self.alpha >= 0, "alpha", "alpha must be >= 0 (weight of the gold response's NLL)")
        self._require(self.loss_type in LOSS_TYPES, "loss_type", f"one of {', '.join(LOSS_TYPES)}")
        self._require(0 <= self.label_smoothing < 0.5, "label_smoothing", "in [0, 0.5)")

    def _sigmoid(self, delta: torch.Tensor) -> torch.Tensor:
        eps = self.label_smoothing
        return -F.logsigmoid(self.beta * delta) * (1 - eps) - F.logsigmoid(-self.beta * delta) * eps

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen, rejected = stats.policy_chosen_logps, stats.policy_rejected_logps
        if self.loss_type in ("ipo", "tpo_l"):  # length-normalised, as TRL's TPO
            chosen = chosen / stats.chosen_tokens.clamp(min=1).to(chosen.dtype)
            rejected = rejected / stats.rejected_tokens.clamp(min=1).to(rejected.dtype)
        delta = chosen - rejected
        if self.loss_type == "sigmoid":
            losses = self._sigmoid(delta)
        elif self.loss_type == "hinge":
            losses = torch.relu(1 - self.beta * delta)
        elif self.loss_type == "ipo":
            losses = (delta - 1 / (2 * self.beta)) ** 2
        else:
            losses = self._sigmoid(delta - self.gamma / self.beta)
        if self.alpha:
            gold = stats.require_more()
            gold_logps = gold.logps[:, 0]
            share = gold_logps.numel() / gold.tokens[:, 0].sum().to(gold_logps.dtype)
            losses = losses + self.alpha * (-gold_logps * share)
        # TRL logs beta * log pi of the (normalised, for ipo and tpo_l) chosen and rejected log-probs
        return LossOutput(losses, self.beta * chosen, self.beta * rejected)
