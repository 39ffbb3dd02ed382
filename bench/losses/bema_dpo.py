"""DPO against a BEMA reference: Block & Zhang 2025, "EMA Without the Lag: Bias-Corrected Iterate Averaging
Schemes", arXiv:2508.00180, Eq. 2-3 (BEMA), used as DPO's reference as TRL's experimental
`trl.experimental.bema_for_ref_model` does (BEMACallback with `update_ref_model=True`).

    L = -log sigmoid(beta * [log pi(yw|x)/ref_t(yw|x) - log pi(yl|x)/ref_t(yl|x)])
    every update_freq steps:      EMA_t = (1 - b_t) EMA + b_t theta_t
                                  BEMA_t = EMA_t + a_t (theta_t - theta_0)
                                  b_t = (lag + multiplier t)^-ema_power
                                  a_t = (lag + multiplier t)^-bias_power
    every ref_update_freq steps:  ref_t <- BEMA_t        (from ref_update_after on)

DPO whose KL anchor is a smoothed, bias-corrected average of the policy's own recent iterates (a lagged
policy, where TR-DPO mixes in the policy itself). The variant declares `moving_reference` and returns the
BEMA settings from `reference_averaging()`: bench.train.moving_ref runs TRL's own BEMACallback over the
policy (theta_0 and the EMA start from the policy when training starts) and copies its running BEMA weights
into the reference on the reference schedule; its state is saved with every resumable checkpoint. Checked
against TRL's experimental BEMA DPOTrainer over training steps (tests/losses/test_bema.py). TRL's defaults
(400 steps) exceed a toy run; sweeps/toy_moving_ref.yaml sets shorter ones. Implicit rewards: beta * log-ratio
against the current reference.

Worked example (checked in tests/losses/): the loss on a batch is DPO's against the reference of that step:
beta = 0.1, policy chosen/rejected -10 / -12, current reference -11 / -11: loss 0.598139, rewards 0.1 and
-0.1.

    Check: beta=0.1 update_freq=4 ref_update_freq=8
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.598139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import LossOutput, PreferenceLoss, SequenceStats
from .dpo import sigmoid_loss


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    moving_reference = True
    beta: float = 0.1
    update_freq: int = 400
    ema_power: float = 0.5
    bias_power: float = 0.2
    lag: int = 10
    update_after: int = 0
    multiplier: float = 1.0
    min_ema_multiplier: float = 0.0
    ref_update_freq: int = 400
    ref_update_after: int = 0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the log-ratio margin)")
        self._require(self.update_freq >= 1, "update_freq", "update_freq must be >= 1 optimiser steps")
        self._require(self.ref_update_freq >= 1, "ref_update_freq", "ref_update_freq must be >= 1 steps")
        self._require(self.ema_power >= 0, "ema_power", "ema_power must be >= 0 (0 disables the EMA)")
        self._require(self.bias_power >= 0, "bias_power", "bias_power must be >= 0")
        self._require(self.lag >= 1, "lag", "lag must be >= 1 (the decay's virtual starting age)")
        self._require(self.multiplier > 0, "multiplier", "multiplier must be > 0")
        self._require(0 <= self.min_ema_multiplier <= 1, "min_ema_multiplier", "in [0, 1]")
        self._require(self.update_after >= 0, "update_after", "update_after must be >= 0 steps")
        self._require(self.ref_update_after >= 0, "ref_update_after", "ref_update_after must be >= 0 steps")

    def reference_averaging(self) -> dict[str, Any]:
        return {
            "update_freq": self.update_freq,
            "ema_power": self.ema_power,
            "bias_power": self.bias_power,
            "lag": self.lag,
            "update_after": self.update_after,
            "multiplier": self.multiplier,
            "min_ema_multiplier": self.min_ema_multiplier,
        }

    def reference_update(self, step: int) -> float | None:
        due = step >= self.ref_update_after and (step - self.ref_update_after) % self.ref_update_freq == 0
        return 1.0 if due else None  # the reference becomes the BEMA weights (TRL copies them)

    def __call__(self, stats: SequenceStats) -> LossOutput:
        return sigmoid_loss(stats, self.beta)  # DPO's, against the reference as it is at this step
