"""Validation and test halves of the evaluation prompts, so a report can choose each variant's best
configuration on one half and report it on the other: selecting and reporting on the same prompts would
overstate the winner (the selection's own noise becomes its advantage).

The split is a fixed function of the prompt id (a salted hash), the same for every run, variant, seed and
study, and not a config key: changing it would change every run's metrics but not its run id.
"""

from __future__ import annotations

import hashlib
from typing import Any

VALIDATION_FRACTION = 0.5
SPLITS = ("val", "test")


def prompt_split(prompt_id: Any) -> str:
    """'val' or 'test' for an evaluation prompt; stable across processes and Python versions."""
    digest = hashlib.sha256(f"dpo-bench-split:{prompt_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:4], "big") / 2**32 < VALIDATION_FRACTION else "test"
