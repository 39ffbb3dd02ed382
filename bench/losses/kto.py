"""KTO: Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela 2024, "KTO: Model Alignment as Prospect Theoretic
Optimization", arXiv:2402.01306, Eq. 7 (the number TRL's kto_trainer cites), on paired data.

    r(x, y) = log pi(y|x) - log ref(y|x)                       (summed over completion tokens)
    z0 = max(0, mean over mismatched pairs (x, y') of [log pi(y'|x) - log ref(y'|x)]),  no gradient
    desirable (chosen):     lambda_d * (1 - sigmoid(beta * (r(x, yw) - z0)))
    undesirable (rejected): lambda_u * (1 - sigmoid(beta * (z0 - r(x, yl))))

KTO is defined on unpaired (x, y, desirable?) examples; here each preference pair gives one desirable and
one undesirable example, and the per-pair loss is the mean of the two, so the batch mean equals TRL's
KTOTrainer mean over its 2B unpaired examples (TRL unpairs a paired dataset the same way). z0 is the batch
estimate of KL(pi || ref) that the paper and TRL use: mismatched (prompt, completion) pairs, detached,
clamped at 0. The trainer provides them because this class declares `needs_kl_pairs`: each row's prompt with
another row's chosen and rejected completions (a fixed derangement of the dataset, so that their reference
log-probs are precomputed and cached like the others), i.e. 2B KL pairs per batch of B pairs, as many as
TRL's 2B examples. TRL instead rotates completions by one within each batch (fixed batches, sequential
sampler); the estimator is the same, the pairs differ. TRL also averages z0 over devices; ours is per device
(the same on one device). Implicit rewards (logged, as TRL does): beta * r(x, y).

The paper advises lambda_d * n_d / (lambda_u * n_u) in [1, 4/3]; with paired data n_d = n_u, so lambda_d /
lambda_u in [1, 4/3].

Worked example (checked in tests/losses/): beta = 0.1, lambda_d = 1, lambda_u = 1.5;
policy chosen/rejected = -10 / -12, reference -11 / -11, so r(yw) = 1 and r(yl) = -1; KL pairs policy -20 /
-25, reference -22 / -24, log-ratios 2 and -1, mean 0.5, z0 = 0.5. Desirable: 1 - sigmoid(0.1 * (1 -
0.5)) = 1 - 0.512497 = 0.487503; undesirable: 1 - sigmoid(0.1 * (0.5 + 1)) = 1 - 0.537430 = 0.462570;
rewards 0.1 and -0.1; per-example loss = (1 * 0.487503 + 1.5 * 0.462570) / 2 = 0.590679.

    Check: beta=0.1 lambda_d=1 lambda_u=1.5
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
            policy_kl_logps=-20,-25 ref_kl_logps=-22,-24
        expect: loss=0.590679 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_kl_pairs = True

    beta: float = 0.1
    lambda_d: float = 1.0
    lambda_u: float = 1.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio against z0)")
        self._require(self.lambda_d > 0, "lambda_d", "lambda_d must be > 0 (weight of desirable examples)")
        self._require(self.lambda_u > 0, "lambda_u", "lambda_u must be > 0 (weight of undesirable examples)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        ref_chosen, ref_rejected = stats.require_reference()
        policy_kl, ref_kl = stats.require_kl_pairs()
        z0 = (policy_kl - ref_kl).mean().detach().clamp(min=0)
        chosen_ratio = stats.policy_chosen_logps - ref_chosen
        rejected_ratio = stats.policy_rejected_logps - ref_rejected
        desirable = self.lambda_d * (1 - torch.sigmoid(self.beta * (chosen_ratio - z0)))
        undesirable = self.lambda_u * (1 - torch.sigmoid(self.beta * (z0 - rejected_ratio)))
        return LossOutput((desirable + undesirable) / 2, self.beta * chosen_ratio, self.beta * rejected_ratio)
