"""MPO (Mixed Preference Optimization): Wang et al. 2024, "Enhancing the Reasoning Ability of Multimodal Large
Language Models via Mixed Preference Optimization", arXiv:2411.10442, Sec. 3.2; TRL's `loss_type=["sigmoid",
"bco_pair", "sft"]` with `loss_weights=[0.8, 0.2, 1.0]`.

    L = pref_weight * L_DPO + quality_weight * L_BCO + generation_weight * L_SFT
    L_DPO = -log sigmoid(r_w - r_l),   L_BCO = -log sigmoid(r_w) - log sigmoid(-r_l),   r = beta * log pi/ref
    L_SFT = the chosen answers' NLL per token of the batch

Three signals at once: which answer is better (DPO), whether each answer is good on its own (BCO's binary
classifier, without its reward shift, as TRL), and how to produce the good one (SFT). One beta for both
preference terms, as TRL. Definition choices are TRL's (checked against its loss lists on real batches in
tests/losses/): the SFT term is `batch_token_mean_nll` (CPO's and TRL's per-batch-token normalisation).
Implicit rewards: r.

Worked example (checked in tests/losses/): beta = 0.1, weights 0.8 / 0.2 / 1, one pair (B = 1), policy
chosen/rejected -10 / -12 over 5 / 6 tokens, reference -11 / -11. r = 0.1 and -0.1; L_DPO = 0.598139, L_BCO =
2 * 0.644397 = 1.288793, L_SFT = 10 / 5 = 2, so loss = 0.8 * 0.598139 + 0.2 * 1.288793 + 2 = 2.736270.

    Check: beta=0.1 pref_weight=0.8 quality_weight=0.2 generation_weight=1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
            chosen_tokens=5 rejected_tokens=6
        expect: loss=2.736270 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats, batch_token_mean_nll


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    pref_weight: float = 0.8
    quality_weight: float = 0.2
    generation_weight: float = 1.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratios)")
        for key in ("pref_weight", "quality_weight", "generation_weight"):
            self._require(getattr(self, key) >= 0, key, "a term's weight must be >= 0 (0 turns it off)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        chosen, rejected = self.beta * chosen_ratio, self.beta * rejected_ratio
        preference = -F.logsigmoid(chosen - rejected)
        quality = -F.logsigmoid(chosen) - F.logsigmoid(-rejected)
        losses = self.pref_weight * preference + self.quality_weight * quality
        if self.generation_weight:
            losses = losses + self.generation_weight * batch_token_mean_nll(stats)
        return LossOutput(losses, chosen, rejected)
