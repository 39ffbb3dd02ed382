"""Per-token reference log-probs for variants that declare `needs_token_logps` (LD-DPO, SamPO, ...).

The reference's per-token log-probs of every training pair are computed once, before training, with the
policy's own collator and log-prob code, and cached like the summed ones (bench.train.refcache; a separate
entry, so variants without per-token needs keep their cache and their cost). Each row keeps its completion
tokens' log-probs as a flat list (`ref_chosen_token_logps`, `ref_rejected_token_logps`); the collator wrapper
below concatenates a batch's lists in the batch's row order, and `scatter` puts them back at the completion
positions of the batch's mask. A row is truncated the same way in every batch (TRL's collator truncates each
row before padding), so its list always fills its masked positions exactly: `scatter` checks that.
"""

from __future__ import annotations

from typing import Any

import torch

TOKEN_COLUMNS = ["ref_chosen_token_logps", "ref_rejected_token_logps"]


def split_rows(per_token: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Each row's masked values, left to right, as a list (per_token and mask of shape (N, T))."""
    keep = mask.bool()
    return [row[m].tolist() for row, m in zip(per_token, keep, strict=True)]


def scatter(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, T) tensor with `flat` (the rows' masked values in row-major order) at the mask's 1 positions."""
    keep = mask.bool()
    if int(keep.sum()) != flat.numel():
        raise RuntimeError(
            f"per-token reference log-probs: {flat.numel()} cached values for {int(keep.sum())} completion "
            "tokens in this batch (the tokenised pairs changed since they were cached?)"
        )
    out = torch.zeros(mask.shape, dtype=flat.dtype, device=mask.device)
    out[keep] = flat.to(mask.device)
    return out


class TokenRefCollator:
    """Wraps the preference collator: adds `ref_token_logps_flat`, the rows' cached per-token reference
    log-probs concatenated in the batch's row order [chosen rows; rejected rows]."""

    def __init__(self, base: Any):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        lists = {c: [e.pop(c) for e in examples] for c in TOKEN_COLUMNS if c in examples[0]}
        batch = dict(self.base(examples))
        if lists:
            rows = lists["ref_chosen_token_logps"] + lists["ref_rejected_token_logps"]
            batch["ref_token_logps_flat"] = torch.tensor([v for row in rows for v in row])
        return batch
