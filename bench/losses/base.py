"""What a preference loss sees and returns, and how it declares what it needs.

Every variant trains through the same plumbing (bench/train/trainer.py): the same tokenised batches, the same
forward passes, the same per-sequence statistics. A variant is a small frozen dataclass whose fields are its
hyperparameters; it declares what it needs through class attributes, and the trainer reads those
declarations (it never tests a variant's name).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.core.errors import ConfigError


@dataclass(frozen=True)
class TokenStats:
    """Per-token views of one batch of B pairs, for variants that declare `needs_token_logps`: tensors of
    shape (B, T), chosen and rejected padded to one T. Position t holds the log-prob of a scored completion
    token (<eos> included) where the mask is 1, and 0 elsewhere; policy and reference are aligned position by
    position, and a row's masked positions, left to right, are its completion tokens in order. The summed
    SequenceStats log-probs are these rows' sums."""

    chosen_logps: torch.Tensor  # the policy's, with gradient
    rejected_logps: torch.Tensor
    chosen_mask: torch.Tensor  # float: 1.0 on scored completion tokens
    rejected_mask: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None  # the reference's (cached); None for reference-free variants
    ref_rejected_logps: torch.Tensor | None = None
    # log sum_v pi(v | context)^2 under the policy at each position, no gradient: only for variants whose
    # `token_outputs` name it (WPO's weights; TRL's fused LM head computes it)
    chosen_log_sum_sq_probs: torch.Tensor | None = None
    rejected_log_sum_sq_probs: torch.Tensor | None = None

    def require_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ref_chosen_logps is None or self.ref_rejected_logps is None:
            raise RuntimeError("this loss needs per-token reference log-probs but the batch has none")
        return self.ref_chosen_logps, self.ref_rejected_logps


DATA_SHAPES = ("pairs", "list", "gold", "unpaired")  # PreferenceLoss.data_shape


@dataclass(frozen=True)
class ListStats:
    """The completions of each row beyond its chosen and rejected one, for variants whose `data_shape` is
    "list" (the rest of a ranked list, in rank order) or "gold" (one: the gold response): tensors (B, M),
    summed completion log-probs and token counts as in SequenceStats; `mask` is 1.0 where a row has that
    completion (a shorter list is padded; padded entries are 0 and must not count)."""

    logps: torch.Tensor  # the policy's, with gradient
    tokens: torch.Tensor
    mask: torch.Tensor
    ref_logps: torch.Tensor | None = None  # the reference's (cached); None for reference-free variants
    # the data's score of every completion of the row, chosen and rejected first: (B, 2 + M); None when the
    # data has no scores (a list ranked by its order)
    scores: torch.Tensor | None = None


@dataclass(frozen=True)
class SequenceStats:
    """Per-sequence statistics of one batch of B preference pairs (all tensors of shape (B,)).

    Log-probs are summed over completion tokens (the prompt is context, not scored). `*_tokens` count the
    scored completion tokens, <eos> included, so a variant that averages divides by them.
    """

    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None  # None when the variant is reference-free
    ref_rejected_logps: torch.Tensor | None = None
    # Mismatched (prompt, completion) pairs, only for variants that declare `needs_kl_pairs`: shape (2B,),
    # each prompt of the batch with the chosen, then the rejected, completion of another row (a fixed
    # derangement, bench/train/klpairs.py). Summed completion log-probs as above; the policy's carry no
    # gradient.
    policy_kl_logps: torch.Tensor | None = None
    ref_kl_logps: torch.Tensor | None = None
    # Per-token views, only for variants that declare `needs_token_logps` (TokenStats)
    tokens: TokenStats | None = None
    # The data's per-pair scores (B,), only for variants that declare `needs_scores` (bench.sources.scores)
    chosen_scores: torch.Tensor | None = None
    rejected_scores: torch.Tensor | None = None
    # sum over each completion's positions of KL(ref(.|x, y<t) || pi(.|x, y<t)), only for variants that
    # declare `needs_position_kl` (TDPO's sequential KL), (B,), with gradient through the policy
    chosen_position_kl: torch.Tensor | None = None
    rejected_position_kl: torch.Tensor | None = None
    # The more completions of each row, only for `data_shape` "list" and "gold" (ListStats)
    more: ListStats | None = None
    # Each row's label, only for `data_shape` "unpaired": 1.0 desirable, 0.0 undesirable (B,). There the
    # chosen fields hold each row's one completion, and the rejected fields, also given as `policy_kl_logps`
    # / `ref_kl_logps`, the completion of another row scored on this row's prompt (no gradient): KTO's
    # mismatched pair
    labels: torch.Tensor | None = None

    def require_position_kl(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chosen_position_kl is None or self.rejected_position_kl is None:
            raise RuntimeError("this loss needs per-position KL but the batch has none (needs_position_kl?)")
        return self.chosen_position_kl, self.rejected_position_kl

    def require_more(self) -> ListStats:
        if self.more is None:
            raise RuntimeError(
                "this loss needs more completions per row but the batch has none (data_shape?)"
            )
        return self.more

    def require_labels(self) -> torch.Tensor:
        if self.labels is None:
            raise RuntimeError("this loss needs unpaired labels but the batch has none (data_shape?)")
        return self.labels

    def completions(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """(policy log-probs, reference log-probs or None, token counts, mask), each (B, K): the chosen, the
        rejected and the more completions of each row side by side, in that order (for "list" data: rank
        order, best first). The mask is 1.0 where a row has that completion (lists may be ragged)."""
        more = self.require_more()
        ones = torch.ones_like(self.policy_chosen_logps)
        pol = torch.cat(
            [self.policy_chosen_logps[:, None], self.policy_rejected_logps[:, None], more.logps], 1
        )
        tok = torch.cat([self.chosen_tokens[:, None], self.rejected_tokens[:, None], more.tokens], 1)
        mask = torch.cat([ones[:, None], ones[:, None], more.mask], 1)
        ref = None
        if self.ref_chosen_logps is not None and self.ref_rejected_logps is not None:
            if more.ref_logps is None:
                raise RuntimeError(
                    "the batch has reference log-probs for its pairs but not its more completions"
                )
            ref = torch.cat(
                [self.ref_chosen_logps[:, None], self.ref_rejected_logps[:, None], more.ref_logps], 1
            )
        return pol, ref, tok.to(pol.dtype), mask

    def require_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.chosen_scores is None or self.rejected_scores is None:
            raise RuntimeError("this loss needs per-pair scores but the batch has none (needs_scores?)")
        return self.chosen_scores, self.rejected_scores

    def require_tokens(self) -> TokenStats:
        if self.tokens is None:
            raise RuntimeError(
                "this loss needs per-token log-probs but the batch has none (needs_token_logps?)"
            )
        return self.tokens

    def require_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ref_chosen_logps is None or self.ref_rejected_logps is None:
            raise RuntimeError(
                "this loss needs reference log-probs but the batch has none (needs_reference?)"
            )
        return self.ref_chosen_logps, self.ref_rejected_logps

    def log_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(yw|x) - log ref(yw|x), log pi(yl|x) - log ref(yl|x)): the DPO family's building block."""
        ref_chosen, ref_rejected = self.require_reference()
        return self.policy_chosen_logps - ref_chosen, self.policy_rejected_logps - ref_rejected

    def require_kl_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.policy_kl_logps is None or self.ref_kl_logps is None:
            raise RuntimeError(
                "this loss needs log-probs of mismatched KL pairs but the batch has none (needs_kl_pairs?)"
            )
        return self.policy_kl_logps, self.ref_kl_logps


@dataclass(frozen=True)
class LossOutput:
    """Per-example losses (B,) to average, and the implicit rewards (B,) to log (the caller detaches)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


@dataclass(frozen=True)
class PreferenceLoss:
    """Base class: subclasses are frozen dataclasses whose fields are the paper's hyperparameters."""

    needs_reference: ClassVar[bool] = True  # False: no reference model is loaded for training
    # True: each training pair also gets mismatched (prompt, completion) pairs whose policy and reference
    # log-probs fill `policy_kl_logps` / `ref_kl_logps` (KTO's reference point z0). Their reference log-probs
    # are precomputed and cached like those of the pairs (which only `needs_reference` asks for).
    needs_kl_pairs: ClassVar[bool] = False
    # True: `stats.tokens` carries per-token log-probs and masks of the pairs (TokenStats), the reference's
    # too when `needs_reference` (cached per token like the sums). Variants without it pay nothing.
    needs_token_logps: ClassVar[bool] = False
    # Extra per-token outputs of the policy's forward, among TRL's fused LM head fields ("log_sum_sq_probs");
    # they fill the TokenStats fields of the same name (implies needs_token_logps).
    token_outputs: ClassVar[tuple[str, ...]] = ()
    # True: every training pair must carry the data's scores (score_chosen, score_rejected), checked before
    # any compute; they fill `chosen_scores` / `rejected_scores`.
    needs_scores: ClassVar[bool] = False
    # True: the reference moves during training (bench.train.moving_ref): it is a second model in memory,
    # scored on every batch instead of cached, and after each optimiser step `reference_update(step)` says
    # how much of the policy to mix into it.
    moving_reference: ClassVar[bool] = False
    # True: `chosen_position_kl` / `rejected_position_kl` carry TDPO's sequential KL
    # (bench.train.position_kl): the reference is a live second model scored on every batch, and the policy's
    # forward returns full logits
    needs_position_kl: ClassVar[bool] = False
    # The shape of one training row (bench.sources.shapes converts the data to it, before any compute):
    #   "pairs"     prompt, chosen, rejected
    #   "list"      a ranked list of K >= 2 completions: chosen = first, rejected = second, the rest in
    #               `stats.more` (ListStats) in rank order, with the data's scores when it has them
    #   "gold"      a pair plus a gold response (TPO), the one entry of `stats.more`
    #   "unpaired"  prompt, one completion, a desirable/undesirable label (`stats.labels`); see SequenceStats
    data_shape: ClassVar[str] = "pairs"

    def __call__(self, stats: SequenceStats) -> LossOutput:
        raise NotImplementedError

    @classmethod
    def live_reference(cls) -> bool:
        """Whether the reference is a second model in memory, scored on every batch, instead of cached."""
        return cls.moving_reference or cls.needs_position_kl

    def reference_update(self, step: int) -> float | None:
        """For a `moving_reference` variant: after optimiser step `step` (1-based), the weight alpha of
        ref <- alpha * source + (1 - alpha) * ref, or None to leave the reference as it is. The source is the
        policy, or the policy's bias-corrected EMA when `reference_averaging` says how to keep one."""
        return None

    def reference_averaging(self) -> dict[str, Any] | None:
        """For a `moving_reference` variant whose reference follows an average of the policy rather than the
        policy itself: the settings of TRL's BEMACallback (bench.train.moving_ref keeps it), or None."""
        return None

    def score_notes(self, chosen: list[float], rejected: list[float]) -> str | None:
        """For a `needs_scores` variant: what its preflight should tell the user about the data's scores
        (a warning), or None. Unusable scores raise ConfigError here."""
        return None

    @classmethod
    def hyperparameters(cls) -> dict[str, object]:
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def _require(self, ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise ConfigError(
                f"loss.{key}={getattr(self, key)!r} is out of range for {type(self).__name__}: {rule}"
            )


def batch_token_mean_nll(stats: SequenceStats) -> torch.Tensor:
    """Per-example shares (B,) of the chosen completions' NLL averaged over all their tokens in the batch.

    Their mean is sum_i -log pi(yw_i|x_i) / sum_i |yw_i|: TRL's CPO/ORPO `nn.CrossEntropyLoss` over the chosen
    labels and the SimPO code's `sft_loss` (completion tokens only, <eos> included)."""
    logps = stats.policy_chosen_logps
    return -logps * (logps.numel() / stats.chosen_tokens.sum().to(logps.dtype))
