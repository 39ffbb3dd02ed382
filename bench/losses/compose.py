"""A composed preference loss: the components many variants are built from, each a config key, so that a
combination (RainbowPO's point: Zhao et al. 2024, "RainbowPO: A Unified Framework for Combining Improvements
in Preference Optimization", arXiv:2410.04203) is a YAML, not new code. At its defaults it is DPO.

    log p~(y)   = LD-DPO's weighting of the longer answer's excess tokens by ld_alpha (1: every token),
                  divided by |y| when length_norm (SimPO, IPO's averaged form)
    h(y)        = log pi~(y|x) - ref_weight * log ref~(y|x)         (ref_weight 1: DPO; 0: reference-free)
    chosen      = beta * (h(yw) - dpop_lambda * max(0, -h(yw)))     (DPOP's hinge on a falling chosen answer)
    rejected    = beta * h(yl)
    z           = chosen - rejected - gamma                         (gamma: a target margin, as SimPO's)
    link        sigmoid: -(1 - eps) log sigmoid(z) - eps log sigmoid(-z)   (eps = label_smoothing: cDPO)
                hinge:   max(0, 1 - z)                              (SLiC / RSO)
                squared: ((z - 1/2) / beta)^2                       (IPO: (h(yw) - h(yl) - 1/(2 beta))^2)
    loss        = link(z) * [WPO weights of both answers, when weighting=wpo] + nll_weight * NLL(yw) / |yw|

Each component is the named variant's own definition (bench/losses/<variant>.py), and a test checks that
the composition equals dpo, cdpo, hinge, ipo (summed and averaged), simpo, rpo, ld_dpo, wpo and dpop at the
matching keys. Definition choices: ref_weight scales the reference's log-probs, which is RainbowPO's mixing of
the reference with a uniform policy up to a constant per token (exactly that when length_norm is on or the
answers have equal lengths); the NLL term is RPO's (each chosen answer by its own length). The variant
always declares the reference, the per-token view and WPO's log sum p^2, whatever its keys: a combination
that uses none of them pays for them (a cached per-token reference entry, one more field of the fused head).

Worked example (checked in tests/losses/): beta = 0.1 and every other key at its default is DPO: policy
chosen/rejected -10 / -12 (per token -4, -6 and -5, -7), reference -11 / -11 (-5, -6 and -6, -5): loss
0.598139, rewards 0.1 and -0.1.

    Check: beta=0.1
        batch: token_chosen_logps=-4:-6 token_rejected_logps=-5:-7 token_ref_chosen_logps=-5:-6
            token_ref_rejected_logps=-6:-5 token_chosen_log_sum_sq_probs=-1:-1
            token_rejected_log_sum_sq_probs=-1:-1
        expect: loss=0.598139 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats
from .ld_dpo import shared_and_tail
from .wpo import sampled_alignment_weight

LINKS = ("sigmoid", "hinge", "squared")
WEIGHTINGS = ("none", "wpo")


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    needs_token_logps = True
    token_outputs = ("log_sum_sq_probs",)
    beta: float = 0.1
    length_norm: bool = False
    ref_weight: float = 1.0
    ld_alpha: float = 1.0
    gamma: float = 0.0
    link: str = "sigmoid"
    label_smoothing: float = 0.0
    dpop_lambda: float = 0.0
    weighting: str = "none"
    nll_weight: float = 0.0

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0")
        self._require(isinstance(self.length_norm, bool), "length_norm", "must be true or false")
        self._require(
            0 <= self.ref_weight <= 1, "ref_weight", "must be in [0, 1] (1: DPO, 0: reference-free)"
        )
        self._require(0 <= self.ld_alpha <= 1, "ld_alpha", "must be in [0, 1] (1: every token counts)")
        self._require(self.gamma >= 0, "gamma", "the target margin must be >= 0")
        self._require(self.link in LINKS, "link", f"one of {', '.join(LINKS)}")
        self._require(0 <= self.label_smoothing < 0.5, "label_smoothing", "must be in [0, 0.5)")
        self._require(
            self.label_smoothing == 0 or self.link == "sigmoid", "label_smoothing", "only with link=sigmoid"
        )
        self._require(self.dpop_lambda >= 0, "dpop_lambda", "must be >= 0 (0: no DPOP hinge)")
        self._require(self.weighting in WEIGHTINGS, "weighting", f"one of {', '.join(WEIGHTINGS)}")
        self._require(self.nll_weight >= 0, "nll_weight", "must be >= 0 (0: no NLL term)")

    def _logp(self, logps: torch.Tensor, mask: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        head, tail = shared_and_tail(logps, mask, shared)
        total = head + self.ld_alpha * tail
        return total / mask.sum(1).clamp_min(1) if self.length_norm else total

    def __call__(self, stats: SequenceStats) -> LossOutput:
        t = stats.require_tokens()
        ref_chosen, ref_rejected = t.require_reference()
        shared = torch.minimum(t.chosen_mask.sum(1), t.rejected_mask.sum(1))
        h_chosen = self._logp(t.chosen_logps, t.chosen_mask, shared)
        h_chosen = h_chosen - self.ref_weight * self._logp(ref_chosen, t.chosen_mask, shared)
        h_rejected = self._logp(t.rejected_logps, t.rejected_mask, shared)
        h_rejected = h_rejected - self.ref_weight * self._logp(ref_rejected, t.rejected_mask, shared)
        chosen = self.beta * (h_chosen - self.dpop_lambda * torch.clamp(-h_chosen, min=0.0))
        rejected = self.beta * h_rejected
        z = chosen - rejected - self.gamma
        if self.link == "hinge":
            losses = torch.relu(1 - z)
        elif self.link == "squared":
            losses = ((z - 0.5) / self.beta) ** 2
        else:
            eps = self.label_smoothing
            losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
        if self.weighting == "wpo":
            if t.chosen_log_sum_sq_probs is None or t.rejected_log_sum_sq_probs is None:
                raise RuntimeError("weighting=wpo needs log sum p^2 per token but the batch has none")
            losses = losses * sampled_alignment_weight(
                t.chosen_logps, t.chosen_log_sum_sq_probs, t.chosen_mask
            )
            losses = losses * sampled_alignment_weight(
                t.rejected_logps, t.rejected_log_sum_sq_probs, t.rejected_mask
            )
        if self.nll_weight:
            losses = losses - self.nll_weight * stats.policy_chosen_logps / stats.chosen_tokens.clamp(min=1)
        return LossOutput(losses, chosen, rejected)
