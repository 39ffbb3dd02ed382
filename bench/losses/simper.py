"""SimPER: Xiao et al. 2025, "SimPER: A Minimalist Approach to Preference Alignment without
Hyperparameters", arXiv:2502.00883, Eq. 8.

    L = -exp( (1/|yw|) log pi(yw|x) ) + exp( (1/|yl|) log pi(yl|x) )

The inverse perplexity of the chosen answer is raised and that of the rejected one lowered: no reference
model, no beta, no margin. Each term is a probability-like number in (0, 1], so the loss is bounded in
[-1, 1] and its gradient on an answer fades as that answer's per-token likelihood does. Definition choices:
per-token means over completion tokens (<eos> included), as SimPO's; the implicit rewards logged are the two
inverse perplexities. TRL has no SimPER.

Worked example (checked in tests/losses/): policy chosen -5 over 5 tokens (inverse perplexity e^-1 =
0.367879) and rejected -12 over 6 tokens (e^-2 = 0.135335): loss = -0.367879 + 0.135335 = -0.232544.

    Check: defaults
        batch: policy_chosen_logps=-5 policy_rejected_logps=-12 chosen_tokens=5 rejected_tokens=6
        expect: loss=-0.232544 chosen_rewards=0.367879 rejected_rewards=0.135335
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference = False

    def __call__(self, stats: SequenceStats) -> LossOutput:
        dtype = stats.policy_chosen_logps.dtype
        chosen = torch.exp(stats.policy_chosen_logps / stats.chosen_tokens.clamp(min=1).to(dtype))
        rejected = torch.exp(stats.policy_rejected_logps / stats.rejected_tokens.clamp(min=1).to(dtype))
        return LossOutput(rejected - chosen, chosen, rejected)
