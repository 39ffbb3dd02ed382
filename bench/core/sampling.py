"""Ancestral sampling with the token statistics KL needs: the one sampler of generation, reference samples and
the toy world's preference pairs.

Rows carry, per generated token, the sampling model's log-prob at temperature 1 and, with a reference model,
the reference's log-prob and the exact per-step KL(pi(.|prefix) || ref(.|prefix)). The sampling model's full
next-token distributions come from `generate`'s raw logits, so the policy never runs again for KL; the
reference runs one forward pass over the sampled sequences.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from bench.core.chat import Prompt, encode_prompt, instruction_text, render_prompt

log = logging.getLogger(__name__)


class Decoding(Protocol):
    """The decoding settings `sample` reads (eval.generation's spec has them)."""

    @property
    def max_new_tokens(self) -> int: ...
    @property
    def temperature(self) -> float: ...
    @property
    def top_k(self) -> int: ...
    @property
    def top_p(self) -> float: ...
    @property
    def batch_size(self) -> int: ...


@dataclass(frozen=True)
class Ancestral:
    """Ancestral sampling at temperature 1, no truncation: samples from the model's own distribution."""

    max_new_tokens: int
    batch_size: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def left_pad(encoded: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token-id lists, left-padded: generation continues from the right."""
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for k, ids in enumerate(encoded):
        if ids:
            input_ids[k, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[k, width - len(ids) :] = 1
    return input_ids, mask


def prompt_inputs(tokenizer: Any, prompts: Sequence[Prompt], chat: bool) -> tuple[list[str], list[list[int]]]:
    """(what the judge is shown, token ids the model continues) of each prompt (bench.core.chat)."""
    labels = [instruction_text(p) for p in prompts]
    return labels, [encode_prompt(tokenizer, render_prompt(tokenizer, p, chat)) for p in prompts]


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    n_per_prompt: int,
    gen: Decoding,
    seed: int,
    reference: Any | None = None,
    desc: str = "sampling",
    chat: bool = False,
) -> list[dict[str, Any]]:
    """Ancestral samples, `n_per_prompt` per prompt, as rows with token ids and per-token statistics.

    Prompts are strings or conversations; with `chat` they go through the tokenizer's chat template, and every
    prompt gets exactly one BOS when the tokenizer uses one (bench.core.chat). A row's `prompt` is the
    instruction text (what a judge is shown). `logprobs` are the sampling model's log-probs at temperature 1
    (the model's distribution, which KL needs), whatever the decoding settings. With `reference`, rows also
    get `ref_logprobs` and `kl_steps`.
    """
    torch.manual_seed(seed)
    labels, encoded = prompt_inputs(tokenizer, prompts, chat)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    jobs = [(i, j, labels[i]) for i in range(len(prompts)) for j in range(n_per_prompt)]
    rows: list[dict[str, Any]] = []
    batches = _batches(jobs, gen.batch_size)
    for b, batch in enumerate(batches):
        input_ids, attention = left_pad([encoded[i] for i, _, _ in batch], pad_id)
        out = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=attention.to(model.device),
            do_sample=True,
            temperature=gen.temperature,
            top_k=gen.top_k,
            top_p=gen.top_p,
            max_new_tokens=gen.max_new_tokens,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        prompt_len = input_ids.shape[1]
        logp = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (B, T, V), the model at T=1
        rows += score_rows(
            batch, out.sequences, attention.to(model.device), prompt_len, logp, tokenizer, reference
        )
        log.info("%s: batch %d/%d (%d sequences)", desc, b + 1, len(batches), len(rows))
    return rows


def score_rows(
    jobs: list[tuple[int, int, str]],
    sequences: torch.Tensor,
    prompt_mask: torch.Tensor,
    prompt_len: int,
    logp: torch.Tensor,
    tokenizer: Any,
    reference: Any | None,
) -> list[dict[str, Any]]:
    """Rows for sampled `sequences` (B, prompt_len + T; prompts left-padded) given the sampling model's full
    log-probs `logp` (B, T, V) at each generated position; with `reference`, one reference forward adds its
    token log-probs and the exact per-step KL(pi || ref)."""
    eos = tokenizer.eos_token_id
    new_tokens = sequences[:, prompt_len:]
    token_logp = logp.gather(-1, new_tokens.unsqueeze(-1).to(logp.device)).squeeze(-1)
    lengths = generated_lengths(new_tokens, eos)
    ref_logp = ref_token_logp = None
    if reference is not None:
        mask = _attention(sequences, prompt_mask, lengths)
        ref_logits = reference(
            input_ids=sequences.to(reference.device), attention_mask=mask.to(reference.device)
        ).logits
        ref_logp = ref_logits[:, prompt_len - 1 : -1].float().log_softmax(-1).to(logp.device)
        ref_token_logp = ref_logp.gather(-1, new_tokens.unsqueeze(-1).to(logp.device)).squeeze(-1)
    rows = []
    for k, (i, j, prompt) in enumerate(jobs):
        n = int(lengths[k])  # tokens including <eos> when it came
        ids = new_tokens[k, :n].tolist()
        finished = bool(n and ids[-1] == eos)
        row: dict[str, Any] = {
            "prompt_id": i,
            "sample": j,
            "prompt": prompt,
            "completion": decoded_completion(
                tokenizer,
                sequences[k, :prompt_len][prompt_mask[k].bool()].tolist(),
                ids[:-1] if finished else ids,
            ),
            "token_ids": ids,
            "n_tokens": n - int(finished),
            "finished": finished,
            "logprobs": [round(x, 6) for x in token_logp[k, :n].tolist()],
        }
        if ref_logp is not None and ref_token_logp is not None:
            p = logp[k, :n]
            kl = (p.exp() * (p - ref_logp[k, :n])).sum(-1)
            row["ref_logprobs"] = [round(x, 6) for x in ref_token_logp[k, :n].tolist()]
            row["kl_steps"] = [round(x, 6) for x in kl.tolist()]
        rows.append(row)
    return rows


def decoded_completion(tokenizer: Any, prompt_ids: list[int], completion_ids: list[int]) -> str:
    """The completion as text, with the separator the tokenizer put between prompt and completion (decoding
    prompt + completion and cutting the decoded prompt keeps a leading space, for word-level and BPE
    tokenizers alike)."""
    if not completion_ids:
        return ""
    full = tokenizer.decode(prompt_ids + completion_ids, skip_special_tokens=True)
    prefix = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    return (
        full[len(prefix) :]
        if full.startswith(prefix)
        else tokenizer.decode(completion_ids, skip_special_tokens=True)
    )


def generated_lengths(new_tokens: torch.Tensor, eos: int) -> torch.Tensor:
    """Generated length per row up to and including the first <eos> (all tokens when none came)."""
    is_eos = new_tokens == eos
    first = torch.where(
        is_eos.any(1),
        is_eos.float().argmax(1) + 1,
        torch.full_like(is_eos[:, 0], new_tokens.shape[1], dtype=torch.long),
    )
    return first


def _attention(sequences: torch.Tensor, prompt_mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mask of the prompt's real tokens and of each row's generated tokens up to its <eos>."""
    steps = sequences.shape[1] - prompt_mask.shape[1]
    gen_mask = torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.cat([prompt_mask.to(lengths.device), gen_mask.long()], dim=1)
