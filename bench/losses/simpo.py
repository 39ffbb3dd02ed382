"""SimPO: Meng, Xia, Chen 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
arXiv:2405.14734, Eq. 6.

    L = -log sigmoid(beta / |yw| * log pi(yw|x) - beta / |yl| * log pi(yl|x) - gamma)
    gamma = gamma_beta_ratio * beta

No reference model: the implicit reward is the length-normalised log-prob r(x, y) = beta * log pi(y|x) / |y|
(summed completion log-prob over its token count, <eos> included), which is what we log. gamma is the target
reward margin in reward units. We parameterise it as the paper's own code does (`gamma_beta_ratio`, README:
start at 0.5, search 0-1), so that changing beta keeps the margin in mean log-prob units (gamma / beta nats
per token) fixed. TRL's `CPOTrainer(loss_type="simpo")` takes `simpo_gamma` as the absolute gamma instead:
the same loss is `simpo_gamma = gamma_beta_ratio * beta` there. The optional `sft_weight` adds the SimPO
code's SFT term (its SimPOConfig default 0): the chosen completions' NLL averaged over all their tokens in
the batch, as TRL's `cpo_alpha` term (see bench/losses/base.py, `batch_token_mean_nll`).

Worked example (checked in tests/losses/): beta = 2, gamma_beta_ratio = 0.5
(gamma = 1), sft_weight = 0, policy chosen/rejected = -10 / -18 summed over 5 / 6 tokens. Mean log-probs -2
and -3, rewards beta * mean = -4 and -6, reward margin 2, minus gamma: 1; -log sigmoid(1) = log(1 + e^-1);
per-example loss = 0.313262 (with sft_weight = 0.1 and B = 1 it would add 0.1 * 10 / 5 = 0.2).

    Check: beta=2 gamma_beta_ratio=0.5 sft_weight=0
        batch: policy_chosen_logps=-10 policy_rejected_logps=-18 chosen_tokens=5 rejected_tokens=6
        expect: loss=0.313262 chosen_rewards=-4 rejected_rewards=-6
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats, batch_token_mean_nll


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference = False

    beta: float = 2.0
    gamma_beta_ratio: float = 0.5
    sft_weight: float = 0.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the length-normalised reward)")
        self._require(
            self.gamma_beta_ratio >= 0,
            "gamma_beta_ratio",
            "gamma_beta_ratio must be >= 0 (gamma = ratio * beta is a target margin, never negative)",
        )
        self._require(
            self.sft_weight >= 0, "sft_weight", "sft_weight must be >= 0 (0 turns the SFT term off)"
        )

    @property
    def gamma(self) -> float:
        """The paper's absolute target reward margin (TRL's `simpo_gamma`)."""
        return self.gamma_beta_ratio * self.beta

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_mean = stats.policy_chosen_logps / stats.chosen_tokens.to(stats.policy_chosen_logps.dtype)
        rejected_mean = stats.policy_rejected_logps / stats.rejected_tokens.to(
            stats.policy_rejected_logps.dtype
        )
        chosen, rejected = self.beta * chosen_mean, self.beta * rejected_mean
        losses = -F.logsigmoid(chosen - rejected - self.gamma)
        if self.sft_weight:
            losses = losses + self.sft_weight * batch_token_mean_nll(stats)
        return LossOutput(losses, chosen, rejected)
