"""Rows of other shapes (bench.sources.shapes) laid out as TRL's preference rows, so that every shape goes
through the same tokenisation, collation and log-prob code as the pairs.

  list, gold  chosen = the first completion, rejected = the second, and `more`: the rest of the list in rank
              order, or [the gold response]. TRL tokenises `more` too (bench.train.trainer: the same
              `_prepare_dataset`, on views whose chosen and rejected are more completions two at a time), and
              `MoreCollator` collates them as extra pairs of the same prompts. Lists may be ragged: each row's
              more completions are padded to one even count with copies of its chosen one, masked out
              (`more_mask`), so a batch is rectangular.
  unpaired    chosen = the row's completion, rejected = the completion of another row (a fixed derangement,
              as for KTO's paired KL pairs: bench.train.klpairs), `label` = desirable. The trainer scores the
              rejected half without gradient: it is KTO's mismatched (prompt, completion) pair, a reference
              point, not an example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from bench.losses import ListStats
from bench.train.klpairs import derangement
from bench.train.tokens import column

MORE_COLUMNS = ["more_ids", "more_mask", "list_scores", "ref_more_logps", "label"]


def trainer_rows(rows: list[dict[str, Any]], shape: str) -> list[dict[str, Any]]:
    """`rows` of `shape` as TRL preference rows (plus `more` / `list_scores` / `label`)."""
    if shape == "pairs":
        return rows
    if shape == "unpaired":
        partner = derangement(len(rows))
        return [
            {
                "prompt": row["prompt"],
                "chosen": row["completion"],
                "rejected": rows[partner[i]]["completion"],
                "label": float(row["label"]),
            }
            for i, row in enumerate(rows)
        ]
    if shape == "gold":
        return [{**{k: v for k, v in row.items() if k != "gold"}, "more": [row["gold"]]} for row in rows]
    out = []
    for row in rows:
        completions = row["completions"]
        laid = {"prompt": row["prompt"], "chosen": completions[0], "rejected": completions[1]}
        laid["more"] = list(completions[2:])
        if "scores" in row:
            laid["list_scores"] = list(row["scores"])
        out.append(laid)
    return out


def more_slots(more_lengths: list[int]) -> int:
    """How many extra pairs of completions a batch of rows with these numbers of more completions needs."""
    return (max(more_lengths, default=0) + 1) // 2


def padded_more(more: list[Any], chosen: Any, slots: int) -> tuple[list[Any], list[float]]:
    """`more` padded with copies of `chosen` to 2 x slots entries, and its mask."""
    pad = 2 * slots - len(more)
    return list(more) + [chosen] * pad, [1.0] * len(more) + [0.0] * pad


class MoreCollator:
    """Wraps the preference collator: takes the rows' `more_ids` out and collates them as pairs of the same
    prompts, slot j = (more_ids[2j], more_ids[2j + 1]) as `more{j}_input_ids` / `_attention_mask` /
    `_completion_mask`; adds `more_mask` (B, 2S), `ref_more_logps` (B, 2S), `list_scores` (B, K) and `label`
    (B,) when the rows have them."""

    def __init__(self, base: Any):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        extra = {c: [e.pop(c) for e in examples] for c in MORE_COLUMNS if c in examples[0]}
        batch = dict(self.base(examples))
        more_ids = extra.pop("more_ids", None)
        if more_ids is not None:
            for j in range(len(more_ids[0]) // 2):
                slot = self.base(
                    [
                        {
                            "prompt_ids": e["prompt_ids"],
                            "chosen_ids": ids[2 * j],
                            "rejected_ids": ids[2 * j + 1],
                        }
                        for e, ids in zip(examples, more_ids, strict=True)
                    ]
                )
                batch.update({f"more{j}_{k}": v for k, v in slot.items()})
        batch.update({name: torch.tensor(values) for name, values in extra.items()})
        return batch


def tokenise_more(dataset: Any, prepare: Callable[[Any, str], Any], name: str) -> Any:
    """The tokenised `dataset` with `more_ids` and `more_mask` from its rows' `more` completions, tokenised
    by `prepare` (TRL's own `_prepare_dataset`) on views whose chosen and rejected are two of them: exactly
    as the pairs are. TRL's filter drops a row for its prompt alone, so every view keeps the rows `dataset`
    kept."""
    slots = more_slots([len(m) for m in column(dataset, "more")])
    padded = [
        padded_more(m, c, slots)
        for m, c in zip(column(dataset, "more"), column(dataset, "chosen"), strict=True)
    ]
    ids: list[list[Any]] = [[] for _ in padded]
    for j in range(slots):
        view = dataset.select_columns(["prompt"]).add_column("chosen", [m[2 * j] for m, _ in padded])
        view = prepare(view.add_column("rejected", [m[2 * j + 1] for m, _ in padded]), f"{name} more {j}")
        if len(view) != len(dataset):
            raise RuntimeError(f"tokenising the more completions kept {len(view)} of {len(dataset)} rows")
        pairs = zip(ids, column(view, "chosen_ids"), column(view, "rejected_ids"), strict=True)
        for row, chosen, rejected in pairs:
            row += [chosen, rejected]
    dataset = dataset.remove_columns("more").add_column("more_ids", ids)
    if "list_scores" in dataset.column_names:  # padded like the completions (masked out)
        scores = [s + [0.0] * (2 + 2 * slots - len(s)) for s in column(dataset, "list_scores")]
        dataset = dataset.remove_columns("list_scores").add_column("list_scores", scores)
    return dataset.add_column("more_mask", [mask for _, mask in padded])


def more_reference_views(dataset: Any) -> list[Any]:
    """One pair dataset (prompt_ids, chosen_ids, rejected_ids) per slot of more completions, for the cached
    reference pass."""
    more = column(dataset, "more_ids")
    views = []
    for j in range(len(more[0]) // 2 if more else 0):
        view = dataset.select_columns(["prompt_ids"]).add_column("chosen_ids", [m[2 * j] for m in more])
        views.append(view.add_column("rejected_ids", [m[2 * j + 1] for m in more]))
    return views


TokenLogps = Callable[[Any, dict[str, Any]], tuple[torch.Tensor, torch.Tensor, Any]]
SequenceLogps = Callable[[Any, dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]
MODEL_INPUTS = ("input_ids", "attention_mask", "completion_mask")


def unpaired_token_logps(
    token_logps: TokenLogps, model: Any, inputs: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The trainer's `_token_logps` with the chosen half (the examples) scored with gradient and the rejected
    half (their KL pairs) without, as TRL's KTOTrainer does; rows [chosen; rejected] as before."""
    half = inputs["input_ids"].size(0) // 2
    per_token, mask, out = token_logps(model, {k: inputs[k][:half] for k in MODEL_INPUTS})
    with torch.no_grad():
        kl_per_token, kl_mask, _ = token_logps(model, {k: inputs[k][half:] for k in MODEL_INPUTS})
    return torch.cat([per_token, kl_per_token]), torch.cat([mask, kl_mask]), out


def more_stats(sequence_logps: SequenceLogps, model: Any, inputs: dict[str, Any]) -> ListStats | None:
    """The batch's more completions (ListStats), or None without them: one more forward pass with gradient
    per slot (two more completions of every row); columns in the rows' order of more completions."""
    if "more_mask" not in inputs:
        return None
    logps, tokens = [], []
    for j in range(inputs["more_mask"].size(1) // 2):
        slot_logps, slot_tokens = sequence_logps(model, {k: inputs[f"more{j}_{k}"] for k in MODEL_INPUTS})
        logps += list(slot_logps.chunk(2))
        tokens += list(slot_tokens.chunk(2))
    mask = inputs["more_mask"].float()
    empty = mask.new_zeros((mask.size(0), 0))
    return ListStats(
        logps=torch.stack(logps, 1) * mask.to(logps[0].dtype) if logps else empty,
        tokens=torch.stack(tokens, 1) * mask.to(tokens[0].dtype) if tokens else empty,
        mask=mask,
        ref_logps=inputs["ref_more_logps"] * mask if "ref_more_logps" in inputs else None,
        scores=inputs.get("list_scores"),
    )
