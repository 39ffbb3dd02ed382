"""SPPO with hard labels: Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment",
arXiv:2405.00675, Sec. 3 / Algorithm 1 (the square loss of Eq. 4.7, as TRL numbers it) with the win
probability P(y > pi_t | x) set to 1 for the chosen and 0 for the rejected completion:

    L = 1/2 [ (log pi(yw|x)/ref(yw|x) - eta/2)^2 + (log pi(yl|x)/ref(yl|x) + eta/2)^2 ],   eta = 1/beta

Each log-ratio is regressed to its own target (+eta/2 for the winner, -eta/2 for the loser) rather than only
their difference. The 1/2 averages the paper's per-response expectation over the two responses of a pair, as
the authors' code does (uclaml/SPPO, `loss_type="sppo"`); TRL's `sppo_hard` sums the two squares, so TRL's
value is exactly twice ours (the same minimiser; a learning-rate factor of 2). Log-probs are summed over
tokens. Implicit reward logged: beta * log-ratio.

Worked example (checked in tests/losses/): beta = 0.1 (eta = 10), policy chosen/rejected =
-10 / -12, reference chosen/rejected = -11 / -11.5. Log-ratios +1 and -0.5, targets +5 and -5, (1 - 5)^2 = 16,
(-0.5 + 5)^2 = 20.25, so
loss = (16 + 20.25) / 2 = 18.125000; rewards 0.1 and -0.05.

    Check: beta=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11.5
        expect: loss=18.125000 chosen_rewards=0.1 rejected_rewards=-0.05
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LossOutput, PreferenceLoss, SequenceStats


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.001

    def __post_init__(self) -> None:
        self._require(
            self.beta > 0, "beta", "beta = 1/eta must be > 0 (the log-ratio targets are +-1/(2 beta))"
        )

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen, rejected = stats.log_ratios()
        target = 0.5 / self.beta  # eta * (P - 1/2) with P = 1 (winner) or 0 (loser)
        losses = 0.5 * ((chosen - target) ** 2 + (rejected + target) ** 2)
        return LossOutput(losses, self.beta * chosen, self.beta * rejected)
