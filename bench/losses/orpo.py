"""ORPO: Hong, Lee, Thorne 2024, "ORPO: Monolithic Preference Optimization without Reference Model",
arXiv:2403.07691, Eq. 6-7.

    L = NLL(yw) + lam * L_OR,   L_OR = -log sigmoid(log odds(yw|x) - log odds(yl|x))          (Eq. 6, 7)
    log odds(y|x) = log P(y|x) - log(1 - P(y|x)),   log P(y|x) = log pi(y|x) / |y|  (mean per-token log-prob)

No reference model. As in TRL's `ORPOTrainer.odds_ratio_loss` (whose `beta` is this `lam`), log(1 - P) is
computed stably (log1p(-e^m) below m = -ln 2, log(-expm1(m)) above). The implicit reward we log is the log
odds log P - log(1 - P) itself, so that the logged margin is the log odds ratio inside the sigmoid; TRL logs
lam * mean log-prob instead (same ordering of chosen and rejected, so the same accuracy).

The NLL term: TRL's ORPOTrainer averages the chosen sequences' cross-entropy over the prompt *and*
completion tokens of the batch (its comment: "computed over the full prompt and response"); the paper's
L_SFT is the NLL of the response given the prompt, averaged over the response's tokens. Our per-sequence
statistics hold completion tokens only, and every variant here trains through the same statistics, so we use
the chosen completions' NLL averaged over all their tokens in the batch (<eos> included): the paper's
response-only term, normalised as TRL's CPO and the SimPO code do (bench/losses/cpo.py,
`batch_token_mean_nll`; for B = 1 it is exactly the paper's per-sequence mean). The NLL weight is fixed at 1
(Eq. 6). On the toy world TRL's version would be dominated by the prompt words, which carry the reference
model's -1e4 "never generated" output bias (tests/losses/test_losses_reference_free.py measures the gap).

Worked example (checked in tests/losses/): lam = 0.1, one pair (B = 1), policy
chosen/rejected = -10 / -18 summed over 5 / 6 tokens. Mean log-probs m = -2 and -3; log(1 - e^m) = -0.145413
and -0.051069; log odds -1.854587 and -2.948931; log odds ratio 1.094344;
L_OR = log(1 + e^-1.094344) = 0.288751; NLL = 10 / 5 = 2; per-example loss = 2 + 0.1 * 0.288751 = 2.028875.

    Check: lam=0.1
        batch: policy_chosen_logps=-10 policy_rejected_logps=-18 chosen_tokens=5 rejected_tokens=6
        expect: loss=2.028875 chosen_rewards=-1.854587 rejected_rewards=-2.948931
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats, batch_token_mean_nll

# float32 can round a mean log-prob to exactly 0 once the policy is near-deterministic on a sequence, where
# the odds are infinite; cap it just below (no effect at any value TRL's parity test sees).
_MAX_MEAN_LOGP = -1e-6


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log(P / (1 - P)) for P = exp(mean_logps) < 1, with the stable log(1 - e^m) of TRL's `log1mexp`."""
    m = mean_logps.clamp(max=_MAX_MEAN_LOGP)
    log1mexp = torch.where(m < -math.log(2), torch.log1p(-torch.exp(m)), torch.log(-torch.expm1(m)))
    return m - log1mexp


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_reference = False

    lam: float = 0.1

    def __post_init__(self) -> None:
        self._require(self.lam > 0, "lam", "lam must be > 0 (weight of the odds-ratio term; 0 is plain SFT)")

    def __call__(self, stats: SequenceStats) -> LossOutput:
        dtype = stats.policy_chosen_logps.dtype
        chosen = log_odds(stats.policy_chosen_logps / stats.chosen_tokens.to(dtype))
        rejected = log_odds(stats.policy_rejected_logps / stats.rejected_tokens.to(dtype))
        losses = batch_token_mean_nll(stats) - self.lam * F.logsigmoid(chosen - rejected)
        return LossOutput(losses, chosen, rejected)
