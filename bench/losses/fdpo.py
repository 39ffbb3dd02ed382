"""f-DPO: Wang et al. 2023, "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse
Divergence Constraints", arXiv:2309.16240, the f-DPO loss (DPO's Eq. 7 with the log-ratio replaced by f'):

    L = -log sigmoid(beta * [f'(u_w) - f'(u_l)]),   u = pi(y|x) / ref(y|x)  (summed log-probs)

where f defines the divergence that regularises the policy towards the reference. f' below is shifted so
f'(1) = 0 (the constant cancels in the difference and the logged reward is 0 at the reference):
  reverse_kl        f'(u) = log u                       (DPO itself)
  forward_kl        f'(u) = 1 - 1/u                     (mass-covering)
  js_divergence     f'(u) = log(2u / (1 + u))           (Jensen-Shannon)
  alpha_divergence  f'(u) = (1 - u^-alpha) / alpha      (alpha in (0, 1); -> reverse KL as alpha -> 0,
                                                         -> forward KL as alpha -> 1)

TRL's `f_alpha_divergence_coef = c` computes (u^(c-1) - 1)/(c - 1): the paper's alpha = 1 - c (equal at 0.5).
Exponents are clamped at 80, as TRL does for alpha, so extreme log-ratios cannot overflow float32. Implicit
reward logged: beta * f'(u).

Worked example (checked in tests/losses/): beta = 0.1, divergence = js_divergence, policy
chosen/rejected = -10 / -12, reference chosen/rejected = -11 / -11.5. Log-ratios +1 and -0.5,
f'(e^1) = log(2e / (1 + e)) = 0.379885, f'(e^-0.5) = log(2e^-0.5 / (1 + e^-0.5)) = -0.280930, difference
0.660815, times beta 0.0660815, so
loss = -log sigmoid(0.0660815) = 0.660652; rewards 0.0379885 and -0.0280930.

    Check: beta=0.1 divergence=js_divergence
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11.5
        expect: loss=0.660652 chosen_rewards=0.0379885 rejected_rewards=-0.0280930
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats

DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
MAX_EXPONENT = 80.0  # exp(80) is finite in float32 (max ~3.4e38 = e^88.7)


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    divergence: str = "js_divergence"
    alpha: float = 0.5

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the f' margin)")
        self._require(
            self.divergence in DIVERGENCES, "divergence", f"must be one of {', '.join(DIVERGENCES)}"
        )
        self._require(
            0 < self.alpha < 1,
            "alpha",
            "alpha must lie in (0, 1); its limits are reverse_kl (0) and forward_kl (1)",
        )

    def f_prime(self, log_ratio: torch.Tensor) -> torch.Tensor:
        """f'(u) at u = exp(log_ratio), shifted so that f'(1) = 0."""
        if self.divergence == "reverse_kl":
            return log_ratio
        if self.divergence == "forward_kl":
            return 1 - torch.exp(torch.clamp(-log_ratio, max=MAX_EXPONENT))
        if self.divergence == "js_divergence":
            return math.log(2) + F.logsigmoid(log_ratio)
        return (1 - torch.exp(torch.clamp(-self.alpha * log_ratio, max=MAX_EXPONENT))) / self.alpha

    def __call__(self, stats: SequenceStats) -> LossOutput:
        ref_chosen, ref_rejected = stats.require_reference()
        chosen = self.beta * self.f_prime(stats.policy_chosen_logps - ref_chosen)
        rejected = self.beta * self.f_prime(stats.policy_rejected_logps - ref_rejected)
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
