"""Mismatched (prompt, completion) pairs for variants that declare `needs_kl_pairs` (KTO's reference point).

Each tokenised training row gets the chosen and the rejected completion of one other row (`kl_chosen_ids`,
`kl_rejected_ids`), by a fixed derangement of the dataset: a single random cycle drawn with a fixed seed, so
the pairs depend on the data only. Because a row's KL pairs are fixed rather than drawn from its batch
(TRL's KTOTrainer rotates completions within fixed batches), their reference log-probs are computed once,
before training, and cached like those of the preference pairs (bench.train.refcache): no reference model in
memory while training. Over the dataset the KL completions are exactly the training completions, each paired
with another prompt, which is what the KTO paper asks of them. A row whose partner has the same prompt
(duplicated prompts) gives a matched pair; with one pair per prompt (the toy world) that never happens.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from bench.core.errors import ConfigError

KL_SEED = 0  # fixed: the KL pairs are a function of the data, shared by every run (and cache entry) on it
KL_COLUMNS = ["kl_chosen_ids", "kl_rejected_ids", "ref_kl_chosen_logps", "ref_kl_rejected_logps"]


def derangement(n: int, seed: int = KL_SEED) -> list[int]:
    """partner[i] != i for every i: one random cycle through all n rows."""
    if n < 2:
        raise ConfigError(
            f"KL pairs need at least 2 training pairs to mismatch prompts and completions; got {n}"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    partner = [0] * n
    for k, i in enumerate(order):
        partner[i] = order[(k + 1) % n]
    return partner


def add_kl_completions(dataset: Any) -> Any:
    """The tokenised dataset with `kl_chosen_ids` / `kl_rejected_ids`: another row's completions."""
    partner = derangement(len(dataset))
    chosen, rejected = dataset["chosen_ids"], dataset["rejected_ids"]
    dataset = dataset.add_column("kl_chosen_ids", [chosen[p] for p in partner])
    return dataset.add_column("kl_rejected_ids", [rejected[p] for p in partner])


def kl_view(dataset: Any) -> Any:
    """The KL pairs as a preference dataset (prompt_ids, chosen_ids, rejected_ids) for the same collator."""
    view = dataset.select_columns(["prompt_ids", "kl_chosen_ids", "kl_rejected_ids"])
    return view.rename_columns({"kl_chosen_ids": "chosen_ids", "kl_rejected_ids": "rejected_ids"})


class KLPairCollator:
    """Wraps the preference collator: adds `kl_input_ids` / `kl_attention_mask` / `kl_completion_mask` (rows
    [prompt + other chosen; prompt + other rejected], padded and truncated like the pairs) and `ref_kl_logps`
    (2B,) in the same row order."""

    def __init__(self, base: Any):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.base(examples))
        kl = self.base(
            [
                {
                    "prompt_ids": e["prompt_ids"],
                    "chosen_ids": e["kl_chosen_ids"],
                    "rejected_ids": e["kl_rejected_ids"],
                }
                for e in examples
            ]
        )
        batch.update({f"kl_{k}": v for k, v in kl.items()})
        if "ref_kl_chosen_logps" in examples[0]:
            batch["ref_kl_logps"] = torch.tensor(
                [e["ref_kl_chosen_logps"] for e in examples] + [e["ref_kl_rejected_logps"] for e in examples]
            )
        return batch
