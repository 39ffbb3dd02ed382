"""TR-DPO: Gorbatovski et al. 2024, "Learn Your Reference Model for Real Good Alignment", arXiv:2404.09656,
Sec. 3 (soft and hard updates of the reference); TRL's DPOConfig `sync_ref_model` with
`ref_model_mixup_alpha` and `ref_model_sync_steps`.

    L = -log sigmoid(beta * [log pi(yw|x)/ref_t(yw|x) - log pi(yl|x)/ref_t(yl|x)])
    every sync_steps optimiser steps:   ref_t <- alpha * pi + (1 - alpha) * ref_t     (weight by weight)

DPO against a reference that follows the policy: the KL anchor is refreshed during training, so the policy
can move further from the SFT model while each step stays close to a recent reference. alpha = 1 is the hard
update (the reference becomes the policy), 0 < alpha < 1 the soft one; a sync_steps longer than training is
DPO. The
variant declares `moving_reference`: the reference is a second model in memory, scored on every batch (its
log-probs cannot be cached), mixed after the optimiser step as TRL's SyncRefModelCallback does, and saved
with every resumable checkpoint (bench.train.moving_ref); checked against TRL over training steps in
tests/losses/. Evaluation still measures KL to the SFT reference. Implicit rewards: beta * log-ratio against
the current reference.

Worked example (checked in tests/losses/): the loss on a batch is DPO's against the reference of that step:
beta = 0.1, policy chosen/rejected -10 / -12, current reference -11 / -11: loss 0.598139, rewards 0.1 and
-0.1.
With sync_steps = 2 and alpha = 0.6 the reference is mixed after steps 2, 4, 6, ...

    Check: beta=0.1 alpha=0.6 sync_steps=2
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.598139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LossOutput, PreferenceLoss, SequenceStats
from .dpo import sigmoid_loss


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    moving_reference = True
    beta: float = 0.1
    alpha: float = 0.6
    sync_steps: int = 512

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(0 < self.alpha <= 1, "alpha", "alpha must be in (0, 1] (1: the hard update)")
        self._require(self.sync_steps >= 1, "sync_steps", "sync_steps must be >= 1 optimiser steps")

    def reference_update(self, step: int) -> float | None:
        return self.alpha if step % self.sync_steps == 0 else None

    def __call__(self, stats: SequenceStats) -> LossOutput:
        return sigmoid_loss(stats, self.beta)  # DPO's, against the reference as it is at this step
