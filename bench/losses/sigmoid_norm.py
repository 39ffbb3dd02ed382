"""Length-normalised DPO: as used in Tulu 3 (Lambert et al. 2024, "Tulu 3: Pushing Frontiers in Open Language
Model Post-Training", arXiv:2411.15124, length-normalised DPO objective of its preference-tuning stage) and
TRL's `loss_type="sigmoid_norm"`; the normalisation is SimPO's "DPO w/ LN" ablation (Meng et al. 2024,
arXiv:2405.14734):

    L = -log sigmoid(beta * [ (log pi(yw|x) - log ref(yw|x)) / |yw| - (log pi(yl|x) - log ref(yl|x)) / |yl| ])

|y| counts the scored completion tokens, <eos> included (the same count TRL divides by). Dividing by length
removes the incentive DPO has to lengthen the chosen side, and makes beta a per-token scale: it must be ~|y|
times larger than DPO's for the same pull (Tulu 3 uses 5). Implicit reward logged: beta * log-ratio / |y|.

Worked example (checked in tests/losses/): beta = 5, policy chosen/rejected = -10 / -12,
reference chosen/rejected = -11 / -11, tokens 5 / 6. Per-token log-ratios +1/5 = 0.2 and -1/6 = -0.166667,
their difference 0.366667, times beta 1.833333, so
loss = -log sigmoid(1.833333) = log(1 + e^-1.833333) = 0.148316; rewards 1.0 and -0.833333.

    Check: beta=5
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 chosen_tokens=5 rejected_tokens=6
            ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.148316 chosen_rewards=1.0 rejected_rewards=-0.833333
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 5.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (it scales the per-token log-ratio margin)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        ref_chosen, ref_rejected = stats.require_reference()
        chosen = self.beta * (stats.policy_chosen_logps - ref_chosen) / stats.chosen_tokens.clamp(min=1)
        rejected = (
            self.beta * (stats.policy_rejected_logps - ref_rejected) / stats.rejected_tokens.clamp(min=1)
        )
        return LossOutput(-F.logsigmoid(chosen - rejected), chosen, rejected)
