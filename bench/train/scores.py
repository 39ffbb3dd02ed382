"""The data's per-pair scores in training batches, for variants that declare `needs_scores` (ODPO)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from bench.sources.scores import SCORE_KEYS, require_scores, without_scores

log = logging.getLogger(__name__)


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


def scored_rows(spec: Any, variant: Any, data: Any) -> list[dict[str, Any]]:
    """The training rows of `data` (a DataSource) as `variant` trains on them: with both scores on every row
    (ConfigError otherwise) when it declares `needs_scores`, without any score otherwise (its dataset and
    batches are then exactly those of data without scores). A variant's notes on the scores (ODPO: pairs
    its offset ignores) are logged."""
    if not variant.needs_scores:
        return without_scores(data.training_pairs())
    rows: list[dict[str, Any]] = data.add_scores(data.training_pairs())
    require_scores(rows, f"dataset={spec.dataset.name}", spec.loss.name)
    note = variant.score_notes([r["score_chosen"] for r in rows], [r["score_rejected"] for r in rows])
    if note:
        log.warning("loss=%s on dataset=%s: %s", spec.loss.name, spec.dataset.name, note)
    return rows
