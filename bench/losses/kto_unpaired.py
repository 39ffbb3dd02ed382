"""KTO on unpaired data: Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela 2024, "KTO: Model Alignment as Prospect
Theoretic Optimization", arXiv:2402.01306, Eq. 7, in its own setting: each training row is one (prompt,
completion) with a desirable/undesirable label (TRL's unpaired format), not a pair.

    r(x, y) = log pi(y|x) - log ref(y|x)                       (summed over completion tokens)
    z0 = max(0, mean over the batch's mismatched pairs (x, y') of [log pi(y'|x) - log ref(y'|x)]), no gradient
    desirable row:   lambda_d * (1 - sigmoid(beta * (r(x, y) - z0)))
    undesirable row: lambda_u * (1 - sigmoid(beta * (z0 - r(x, y))))

The batch loss is the mean over rows, as TRL's KTOTrainer (`losses.nanmean()` of the weighted desirable and
undesirable losses, trl/trainer/kto_trainer.py `_compute_loss`). Each row's mismatched pair is its prompt with
another row's completion: `data_shape = "unpaired"` gives it as the row's rejected completion, scored
without gradient (bench.train.more). The partner is a fixed derangement of the dataset, so its reference
log-probs are cached; TRL instead takes the previous row of the same batch (completions[-1:] +
completions[:-1]) and needs sequential sampling for it. With the same partners the two losses agree to 1e-5
(tests/losses/test_unpaired.py). Rewards logged: beta * r, for desirable rows as chosen rewards and for
undesirable rows as rejected rewards (NaN elsewhere: a row is one or the other).

Paired data trains here unpaired as TRL's `unpair_preference_dataset` does (chosen desirable, rejected
undesirable, two rows per pair); `kto` instead keeps each pair in one row. The paper advises
lambda_d * n_d / (lambda_u * n_u) in [1, 4/3]: with unbalanced labels, set the weights from the counts.

Worked example (checked in tests/losses/): beta = 0.1, lambda_d = 1, lambda_u = 1.5; row 1 desirable with
policy -10 and reference -11 (r = 1); row 2 undesirable with policy -12 and reference -11 (r = -1); their
mismatched pairs: policy -20 / -25, reference -22 / -24, log-ratios 2 and -1, z0 = 0.5. Row 1: 1 -
sigmoid(0.1 * 0.5) = 0.487503; row 2: 1.5 * (1 - sigmoid(0.1 * 1.5)) = 0.693855; loss = 0.590679 (the paired
KTO example's value: the same four log-ratios); rewards 0.1 (desirable) and -0.1 (undesirable).

    Check: beta=0.1 lambda_d=1 lambda_u=1.5
        batch: policy_chosen_logps=-10,-12 ref_chosen_logps=-11,-11 policy_rejected_logps=-20,-25
            ref_rejected_logps=-22,-24 policy_kl_logps=-20,-25 ref_kl_logps=-22,-24 labels=1,0
        expect: loss=0.590679 chosen_rewards=0.1,nan rejected_rewards=nan,-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    data_shape = "unpaired"

    beta: float = 0.1
    lambda_d: float = 1.0
    lambda_u: float = 1.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio against z0)")
        self._require(self.lambda_d > 0, "lambda_d", "lambda_d must be > 0 (weight of desirable rows)")
        self._require(self.lambda_u > 0, "lambda_u", "lambda_u must be > 0 (weight of undesirable rows)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        ref, _ = stats.require_reference()
        policy_kl, ref_kl = stats.require_kl_pairs()
        desirable = stats.require_labels() > 0.5
        z0 = (policy_kl - ref_kl).mean().detach().clamp(min=0)
        ratio = stats.policy_chosen_logps - ref
        losses = torch.where(
            desirable,
            self.lambda_d * (1 - torch.sigmoid(self.beta * (ratio - z0))),
            self.lambda_u * (1 - torch.sigmoid(self.beta * (z0 - ratio))),
        )
        rewards = self.beta * ratio
        nan = torch.full_like(rewards, float("nan"))
        return LossOutput(losses, torch.where(desirable, rewards, nan), torch.where(desirable, nan, rewards))
