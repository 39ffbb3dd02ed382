"""SFT on the chosen completion: the reference-free baseline. Rafailov et al. 2023, "Direct Preference
Optimization: Your Language Model is Secretly a Reward Model", arXiv:2305.18290, Sec. 6 ("Preferred-FT":
supervised fine-tuning on the chosen completions only); the loss is the usual token-level negative
log-likelihood:

    L = -sum_i log pi(yw_i|x_i) / sum_i |yw_i|     over the B pairs of a batch

Token-weighted over the batch, as TRL's `loss_type="sft"` and ordinary causal-LM fine-tuning do: every chosen
token counts equally, so long completions weigh more than short ones. The trainer averages per-example losses,
so example i carries -log pi(yw_i|x_i) * B / sum_j |yw_j|, whose mean is L (bench/losses/rpo.py instead
normalises each sequence by its own length, as its paper does). The rejected completion is ignored and no
reference model is loaded. Implicit reward logged: the mean per-token log-prob, log pi(y|x) / |y|, of each
side (reward accuracy then says whether the model prefers the chosen completion per token).

Worked example (checked in tests/losses/): two pairs, policy chosen log-probs -10 over 5
tokens and -12 over 3 tokens (rejected -12 over 6 and -7 over 2, unused). Per-example values 10 * 2/8 = 2.5
and 12 * 2/8 = 3.0; a per-sequence mean would instead give (10/5 + 12/3) / 2 = 3.0, so the batch
loss = (10 + 12) / (5 + 3) = 2.750000; rewards -2 and -4 (chosen), -2 and -3.5 (rejected).

    Check: defaults
        batch: policy_chosen_logps=-10,-12 policy_rejected_logps=-12,-7 chosen_tokens=5,3 rejected_tokens=6,2
        expect: loss=2.750000 chosen_rewards=-2,-4 rejected_rewards=-2,-3.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import LossOutput, PreferenceLoss, SequenceStats, batch_token_mean_nll


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference: ClassVar[bool] = False

    def __call__(self, stats: SequenceStats) -> LossOutput:
        losses = batch_token_mean_nll(stats)
        chosen = stats.policy_chosen_logps / stats.chosen_tokens.clamp(min=1)
        rejected = stats.policy_rejected_logps / stats.rejected_tokens.clamp(min=1)
        return LossOutput(losses, chosen, rejected)
