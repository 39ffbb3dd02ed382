"""IPO: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
arXiv:2310.12036, Eq. 17 (the empirical IPO loss with hard preference labels):

    L = (h - 1/(2 tau))^2,   h = [log pi(yw|x) - log ref(yw|x)] - [log pi(yl|x) - log ref(yl|x)]

`beta` is the paper's tau (KL strength): the square pulls the margin h to the finite target 1/(2 beta) instead
of pushing it to infinity as the logistic DPO loss does. With `average_log_probs = False` (default) h is built
from log-probs summed over completion tokens, as Eq. 17 (whole-sequence probabilities) and the DPO reference
code; with `True` each log-ratio is first divided by its token count, as TRL's `loss_type="ipo"` does, so the
target is in nats per token. Implicit reward logged: beta * log-ratio (per token when averaging).

Worked example (checked in tests/losses/): beta = 0.1, average_log_probs = False, policy
chosen/rejected = -10 / -12, reference chosen/rejected = -11 / -11. Log-ratios +1 and -1, h = 2,
target 1/(2 * 0.1) = 5, so
loss = (2 - 5)^2 = 9.000000; rewards 0.1 and -0.1.

    Check: beta=0.1 average_log_probs=False
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=9.000000 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    average_log_probs: bool = False

    def __post_init__(self) -> None:
        self._require(
            self.beta > 0, "beta", "beta (the paper's tau) must be > 0: the target margin is 1/(2 beta)"
        )
        self._require(isinstance(self.average_log_probs, bool), "average_log_probs", "must be true or false")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen, rejected = stats.log_ratios()
        if (
            self.average_log_probs
        ):  # TRL's per-token form; clamp as TRL does (our counts include <eos>, so >= 1)
            chosen = chosen / stats.chosen_tokens.clamp(min=1)
            rejected = rejected / stats.rejected_tokens.clamp(min=1)
        losses = (chosen - rejected - 1 / (2 * self.beta)) ** 2
        return LossOutput(losses, self.beta * chosen, self.beta * rejected)
