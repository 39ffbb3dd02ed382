"""Checks on tokenised training rows that would otherwise fail silently (bench.core.chat does the same for
generation): a prompt must start with at most one BOS, and pairs longer than train.max_length are counted.

TRL tokenises conversational rows through the chat template without special tokens, which is right for
templates that carry the BOS (Llama 3) and for tokenizers without one. A template that writes the BOS as text
while the tokenizer also adds one, or a dataset whose prompts already start with the BOS string, gives two;
the model never saw that in pre-training and quietly does worse (the failure the SimPO README warns about).
Doubled BOS tokens are removed here, with a warning saying how many rows had them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from bench.core.chat import leading_bos
from bench.core.errors import ConfigError

log = logging.getLogger(__name__)


def column(dataset: Any, name: str) -> list[Any]:
    """One column as a list, read in one go: iterating a `datasets` column formats it row by row, about ten
    times slower (0.1 s per column of 2000 pairs on this CPU, paid by every run)."""
    return list(dataset[name][:])


def id_rows(dataset: Any) -> Iterator[dict[str, Any]]:
    """The rows' prompt_ids, chosen_ids and rejected_ids, from three column reads (`column`)."""
    names = ("prompt_ids", "chosen_ids", "rejected_ids")
    for ids in zip(*(column(dataset, name) for name in names), strict=True):
        yield dict(zip(names, ids, strict=True))


def single_bos(dataset: Any, tokenizer: Any) -> Any:
    """The dataset with every prompt_ids starting with at most one BOS."""
    bos = tokenizer.bos_token_id
    if bos is None or "prompt_ids" not in dataset.column_names:
        return dataset
    doubled = sum(1 for ids in column(dataset, "prompt_ids") if leading_bos(ids, bos) > 1)
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


# Above this share of over-long pairs training is refused: the comparison would be of truncated completions
MAX_OVERLONG_FRACTION = 0.1


def check_lengths(dataset: Any, total: int, max_length: int | None) -> None:
    """Count the pairs longer than train.max_length tokens (prompt and the longer completion): TRL drops those
    whose prompt alone fills it and cuts the completions of the rest, silently. A warning with the count;
    a ConfigError above MAX_OVERLONG_FRACTION of the `total` pairs the dataset had before TRL's drop."""
    if max_length is None or total == 0 or "prompt_ids" not in dataset.column_names:
        return
    dropped = total - len(dataset)
    cut = sum(
        1
        for row in id_rows(dataset)
        if len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) > max_length
    )
    over = dropped + cut
    if not over:
        return
    what = (
        f"{over} of {total} training pairs ({100 * over / total:.1f}%) are longer than train.max_length="
        f"{max_length} tokens ({dropped} dropped: the prompt alone fills it; {cut} with completions cut)"
    )
    if over / total > MAX_OVERLONG_FRACTION:
        raise ConfigError(
            f"{what}: more than {100 * MAX_OVERLONG_FRACTION:.0f}% would compare truncated completions; "
            "raise train.max_length, or drop long rows with dataset.max_chars"
        )
    log.warning("%s", what)
