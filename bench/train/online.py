"""Online preference training (OAIF: Guo et al. 2024, "Direct Language Model Alignment from Online AI
Feedback", arXiv:2402.04792): every batch's pairs are sampled from the policy as it is at that step and
judged then, for any pairwise variant, through the same trainer, collator and loss as offline data.

The training rows supply the prompts (their TRL-tokenised `prompt_ids`; their own completions are not used).
For each batch, `OnlineCollator` samples onpolicy.samples completions per prompt from the current policy
(ancestral, without gradient), hands them to the labeller (the sampling judge and pair rule of the sample
stage, bench.stages.sample.online_labeller, passed in by the train stage), and gives the base collator rows
{prompt_ids, chosen_ids, rejected_ids[, score_chosen, score_rejected]}: the policy's own token ids, so the
completions are scored exactly as they were generated. The loss's reference is scored on every batch (no
cache can hold log-probs of completions that do not exist yet).

Why not TRL's experimental OnlineDPOTrainer: it computes its loss inside its own `training_step` from its own
forward pass, for two loss types (sigmoid, ipo) and reward models or judges of its own; none of the variants
here, their declarations (scores, per-token views, fused-head outputs) or the harness's judges would go
through it, and a second training path would break the one-plumbing rule the comparisons rest on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.core.sampling import decoded_completion, generated_lengths, left_pad

log = logging.getLogger(__name__)

# lists [{prompt, completions}] -> (pairs [(list index, chosen, rejected)], scores per list or None, counts)
Labeller = Callable[
    [list[dict[str, Any]]], tuple[list[tuple[int, int, int]], list[list[float]] | None, dict[str, int]]
]


@dataclass
class OnlineCounts:
    """What the online batches judged, for train_info.json: judged prompts, pairs trained on, and prompts
    that gave none (ties, malformed verdicts)."""

    prompts: int = 0
    pairs: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, prompts: int, pairs: int, counts: dict[str, int]) -> None:
        self.prompts += prompts
        self.pairs += pairs
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value

    def record(self) -> dict[str, Any]:
        return {"judged_prompts": self.prompts, "pairs": self.pairs, **self.counts}


@dataclass
class OnlineCollator:
    """Samples, judges and pairs each batch from the current policy, then collates as offline rows."""

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]
    policy: Callable[[], Any]  # the policy as it is now (unwrapped)
    tokenizer: Any
    labeller: Labeller
    samples: int
    decoding: Any  # max_new_tokens, temperature, top_p
    counts: OnlineCounts = field(default_factory=OnlineCounts)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        model = self.policy()
        prompt_ids = [list(e["prompt_ids"]) for e in examples]
        completions = self._sample(model, prompt_ids)
        lists = [
            {
                "prompt": self.tokenizer.decode(ids, skip_special_tokens=True),
                "completions": [
                    decoded_completion(self.tokenizer, ids, c[:-1] if self._eos(c) else c) for c in cs
                ],
            }
            for ids, cs in zip(prompt_ids, completions, strict=True)
        ]
        pairs, scores, counts = self.labeller(lists)
        self.counts.add(len(lists), len(pairs), counts)
        if not pairs:  # every prompt of the batch tied: train on its first pair with no preference signal
            raise RuntimeError(
                "online batch: no prompt gave a pair (every judged pair tied or was malformed); raise "
                "onpolicy.samples or onpolicy.temperature"
            )
        rows = []
        for k, c, r in pairs:
            row: dict[str, Any] = {
                "prompt_ids": prompt_ids[k],
                "chosen_ids": completions[k][c],
                "rejected_ids": completions[k][r],
            }
            if scores is not None:
                row |= {"score_chosen": scores[k][c], "score_rejected": scores[k][r]}
            rows.append(row)
        return self.base(rows)

    def _eos(self, ids: list[int]) -> bool:
        return bool(ids) and ids[-1] == self.tokenizer.eos_token_id

    @torch.no_grad()
    def _sample(self, model: Any, prompt_ids: list[list[int]]) -> list[list[list[int]]]:
        """`samples` completions per prompt (token ids, with <eos> when it came), from the policy at
        temperature onpolicy.temperature, top_p onpolicy.top_p, the vocabulary otherwise untruncated."""
        tok, d = self.tokenizer, self.decoding
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        repeated = [ids for ids in prompt_ids for _ in range(self.samples)]
        input_ids, attention = left_pad(repeated, pad)
        was_training = model.training
        model.eval()
        try:
            out = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                do_sample=True,
                temperature=d.temperature,
                top_k=0,
                top_p=d.top_p,
                max_new_tokens=d.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
        finally:
            model.train(was_training)
        new = out[:, input_ids.shape[1] :].cpu()
        lengths = generated_lengths(new, tok.eos_token_id)
        flat = [new[i, : int(lengths[i])].tolist() for i in range(new.shape[0])]
        return [flat[k * self.samples : (k + 1) * self.samples] for k in range(len(prompt_ids))]
