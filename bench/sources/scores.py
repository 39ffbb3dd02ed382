"""Per-pair scores (score_chosen, score_rejected): the numbers some preference data carries beside its label
(UltraFeedback's GPT-4 ratings, a reward model's or a classifier's scores; the toy world's judge scores), read
for variants that declare `needs_scores` (ODPO's offset). Other variants never see them: their rows, datasets
and batches are what they were without scores.

Rows keep them under these two keys whatever their columns are called (dataset.fields.score_chosen=<column>
maps another name); a score must be a finite number.
"""

from __future__ import annotations

import math
from typing import Any

from bench.core.errors import ConfigError

SCORE_KEYS = ("score_chosen", "score_rejected")
MAX_REPORTED = 10


class ScoreError(ValueError):
    """One row's score problem, in words that say what to fix."""


def read_scores(row: dict[str, Any], fields: dict[str, str]) -> dict[str, float]:
    """The row's scores under SCORE_KEYS ({} when it has none); ScoreError when one is there but unusable."""
    names = {key: fields.get(key, key) for key in SCORE_KEYS}
    present = [key for key, name in names.items() if name in row and row[name] is not None]
    if not present:
        return {}
    if len(present) == 1:
        other = names[SCORE_KEYS[1 - SCORE_KEYS.index(present[0])]]
        raise ScoreError(f"has '{names[present[0]]}' but no '{other}': give both scores or neither")
    out = {}
    for key, name in names.items():
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ScoreError(f"'{name}' must be a finite number, got {value!r}")
        out[key] = float(value)
    return out


def require_scores(rows: list[dict[str, Any]], source: str, loss: str) -> None:
    """ConfigError naming the rows (1-based) without both scores, for a loss that needs them."""
    missing = [i + 1 for i, row in enumerate(rows) if not set(SCORE_KEYS) <= set(row)]
    if missing:
        shown = ", ".join(map(str, missing[:MAX_REPORTED])) + (" ..." if len(missing) > MAX_REPORTED else "")
        raise ConfigError(
            f"loss={loss} needs per-pair scores, and {len(missing)} of {len(rows)} training pairs of "
            f"{source} have none (rows {shown}): give each row numeric score_chosen and score_rejected "
            "(another column name: dataset.fields.score_chosen=<column>, dataset.fields.score_rejected="
            "<column>), or choose a loss that needs no scores"
        )


def without_scores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as a variant without `needs_scores` trains on them."""
    return [{k: v for k, v in row.items() if k not in SCORE_KEYS} for row in rows]
