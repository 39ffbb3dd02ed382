"""The data's per-pair scores in training batches, for variants that declare `needs_scores` (ODPO)."""

from __future__ import annotations

from typing import Any

import torch

from bench.sources.scores import SCORE_KEYS


class ScoreCollator:
    """Wraps the preference collator: adds `score_chosen` and `score_rejected`, tensors (B,) in the batch's
    row order (TRL's collator knows no such columns, so they are taken out before it runs)."""

    def __init__(self, base: Any):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        scores = {key: [float(e.pop(key)) for e in examples] for key in SCORE_KEYS}
        batch = dict(self.base(examples))
        batch.update({key: torch.tensor(values) for key, values in scores.items()})
        return batch
