"""CPO: Xu et al. 2024, "Contrastive Preference Optimization", arXiv:2401.08417, Eq. 3 plus L_NLL.

    L = -log sigmoid(beta * [log pi(yw|x) - log pi(yl|x)])  +  nll_weight * NLL(yw)

Eq. 3 is DPO with a uniform reference (so no reference model): log-probs summed over completion tokens, as
in TRL's CPOTrainer (`loss_type="sigmoid"`). The paper's objective adds the behaviour-cloning term
L_NLL = -E[log pi(yw|x)] with weight 1; TRL weights it by `cpo_alpha` (our `nll_weight`). Implicit reward
(logged, as TRL does): r(x, y) = beta * log pi(y|x), summed.

The NLL term is normalised as TRL's CPOTrainer (and the SimPO code's `sft_weight` term) computes it, not as
the paper writes it: a cross-entropy averaged over every chosen completion token of the batch,
sum_i -log pi(yw_i|x_i) / sum_i |yw_i|. The paper's L_NLL is a per-sequence sum, which would weight it |yw|
times more (tens to hundreds of times at LLM lengths) and change what a given weight means. To keep the
variant's output per example, `batch_token_mean_nll` gives example i the share
-log pi(yw_i|x_i) * B / sum_j |yw_j|, so the batch mean the trainer takes is exactly TRL's value (a
per-example number therefore depends on its batch).

Worked example (checked in tests/losses/): beta = 0.1, nll_weight = 1, one pair
(B = 1), policy chosen/rejected = -10 / -12 summed over 5 / 6 tokens. Margin beta * (-10 + 12) = 0.2,
preference term -log sigmoid(0.2) = log(1 + e^-0.2) = 0.598139; NLL = 10 / 5 tokens = 2; rewards -1.0 and
-1.2; per-example loss = 0.598139 + 1 * 2 = 2.598139 (the paper's per-sequence NLL would give 0.598139 +
10).

    Check: beta=0.1 nll_weight=1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 chosen_tokens=5 rejected_tokens=6
        expect: loss=2.598139 chosen_rewards=-1.0 rejected_rewards=-1.2
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats, batch_token_mean_nll


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference = False

    beta: float = 0.1
    nll_weight: float = 1.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-prob margin)")
        self._require(
            self.nll_weight >= 0,
            "nll_weight",
            "nll_weight must be >= 0 (weight of the NLL on chosen; 0 drops it, the paper uses 1)",
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen = self.beta * stats.policy_chosen_logps
        rejected = self.beta * stats.policy_rejected_logps
        losses = -F.logsigmoid(chosen - rejected)
        if self.nll_weight:
            losses = losses + self.nll_weight * batch_token_mean_nll(stats)
        return LossOutput(losses, chosen, rejected)
