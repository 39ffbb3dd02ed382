"""Checks on tokenised training rows that would otherwise fail silently (bench.core.chat does the same for
generation): a prompt must start with at most one BOS.

TRL tokenises conversational rows through the chat template without special tokens, which is right for
templates that carry the BOS (Llama 3) and for tokenizers without one. A template that writes the BOS as text
while the tokenizer also adds one, or a dataset whose prompts already start with the BOS string, gives two;
the model never saw that in pre-training and quietly does worse (the failure the SimPO README warns about).
Doubled BOS tokens are removed here, with a warning saying how many rows had them.
"""

from __future__ import annotations

import logging
from typing import Any

from bench.core.chat import leading_bos

log = logging.getLogger(__name__)


def single_bos(dataset: Any, tokenizer: Any) -> Any:
    """The dataset with every prompt_ids starting with at most one BOS."""
    bos = tokenizer.bos_token_id
    if bos is None or "prompt_ids" not in dataset.column_names:
        return dataset
    doubled = sum(1 for ids in dataset["prompt_ids"] if leading_bos(ids, bos) > 1)
    if not doubled:
        return dataset
    log.warning(
        "%d of %d prompts started with more than one BOS (chat template and tokenizer both add it): "
        "keeping one",
        doubled,
        len(dataset),
    )

    def strip(row: dict[str, Any]) -> dict[str, Any]:
        n = leading_bos(row["prompt_ids"], bos)
        return {"prompt_ids": row["prompt_ids"][n - 1 :] if n > 1 else row["prompt_ids"]}

    return dataset.map(strip)
