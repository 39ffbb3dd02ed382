"""beta-DPO: Wu et al. 2024, "beta-DPO: Direct Preference Optimization with Dynamic beta", arXiv:2407.08639,
Eq. 7-9, as the authors' code computes it (github.com/junkangwu/beta-DPO, trainers.py, `preference_loss`,
mode_loss "beta_DPO", and `update_and_sync_tensor_mean`).

    h_i  = [log pi(yw_i|x_i) - log ref(yw_i|x_i)] - [log pi(yl_i|x_i) - log ref(yl_i|x_i)]   (the pair's gap)
    M, S <- momentum * (M, S) + (1 - momentum) * (mean, std of this batch's h)   (running, from 0)
    keep a share `keep` of the batch, drawn without replacement with weights exp(-((h_i - M) / S)^2 / 2)
    beta_b = max(1e-3, beta * (1 + alpha * (mean of the kept h - M)))            (no gradient)
    L = mean over the kept pairs of -log sigmoid(beta_b * h_i)

DPO's best beta depends on how informative the data is: a batch of pairs whose gap is far above the running
mean (easy, already-separated pairs) gets a larger beta (stay closer to the reference), a batch below it a
smaller one; pairs far from the running mean (outliers, likely noisy labels) are less likely to be kept.
alpha = 0 and keep = 1 is DPO.

Definition choices: the running statistics start at 0 and are updated before the batch's loss, as the
authors' code does; they live in the loss object and are not checkpointed, so a resumed run restarts them
(at momentum 0.9 they settle within about 20 steps) and its later steps differ from an uninterrupted run's.
They are updated once per micro-batch, so train.grad_accum changes them. A batch with one pair (no standard
deviation) draws uniformly. The draw uses torch's generator, which the trainer seeds. The trainer's mean over
the batch is the mean over the kept pairs (the rest get loss 0 and the kept ones a B / kept share).
Implicit rewards: beta * log-ratio (the static beta, as the code logs). TRL has no beta-DPO.

Worked example (checked in tests/losses/): beta = 0.1, alpha = 0.5, keep = 1, momentum 0.9, one pair with
log-ratios +1 and -1 (gap 2), fresh statistics: M = 0.1 * 2 = 0.2, beta_b = 0.1 * (1 + 0.5 * (2 - 0.2))
= 0.19, loss = -log sigmoid(0.38) = 0.521090; rewards 0.1 and -0.1.

    Check: beta=0.1 alpha=0.5 keep=1 momentum=0.9
        batch: policy_chosen_logps=-10 policy_rejected_logps=-12 ref_chosen_logps=-11 ref_rejected_logps=-11
        expect: loss=0.521090 chosen_rewards=0.1 rejected_rewards=-0.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import LossOutput, PreferenceLoss, SequenceStats

MIN_BETA = 1e-3  # the authors' clamp


@dataclass(frozen=True)
class Loss(PreferenceLoss):
    beta: float = 0.1
    alpha: float = 0.6
    keep: float = 0.8
    momentum: float = 0.9

    def __post_init__(self) -> None:
        self._require(self.beta > 0, "beta", "beta must be > 0 (the static beta the batch's one scales)")
        self._require(self.alpha >= 0, "alpha", "alpha must be >= 0 (0: a constant beta)")
        self._require(0 < self.keep <= 1, "keep", "keep is the share of each batch trained on, in (0, 1]")
        self._require(0 <= self.momentum < 1, "momentum", "momentum must be in [0, 1)")
        # The running gap statistics: no dataclass fields, so neither in the config nor in the run id
        object.__setattr__(self, "running", {"mean": 0.0, "std": 0.0})

    def __call__(self, stats: SequenceStats) -> LossOutput:
        chosen_ratio, rejected_ratio = stats.log_ratios()
        gap = chosen_ratio - rejected_ratio
        h = gap.detach().double()
        running: dict[str, float] = self.running  # type: ignore[attr-defined]
        batch_std = float(h.std()) if h.numel() > 1 else 0.0
        for key, value in (("mean", float(h.mean())), ("std", batch_std)):
            running[key] = self.momentum * running[key] + (1 - self.momentum) * value
        mean, std = running["mean"], running["std"]
        weights = torch.exp(-0.5 * ((h - mean) / std) ** 2) if std > 0 else torch.ones_like(h)
        if not bool(torch.isfinite(weights).all()) or float(weights.sum()) <= 0:
            weights = torch.ones_like(h)
        count = max(1, int(h.numel() * self.keep))
        kept = torch.zeros_like(gap)
        kept[torch.multinomial(weights, count, replacement=False)] = 1.0
        beta_b = max(MIN_BETA, self.beta * (1 + self.alpha * (float((h * kept).sum()) / count - mean)))
        if not math.isfinite(beta_b):
            raise RuntimeError(f"beta-DPO: the batch's beta is {beta_b} (gap statistics {running})")
        losses = -F.logsigmoid(beta_b * gap) * kept * (h.numel() / count)
        return LossOutput(losses, self.beta * chosen_ratio, self.beta * rejected_ratio)
