"""vLLM sampling for the generate stage on GPU machines (`eval.generation.backend=vllm`, or `auto` when vLLM
is installed and a GPU is present). Not exercised by the CPU test suite: neither vLLM nor a GPU is there.

vLLM returns sampled token ids fast but not the full next-token distributions the exact per-step KL needs,
so the policy scores its own samples in one teacher-forced forward (the HF path gets them from `generate`
for free) and the reference in another, through the same `score_rows` as the HF path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.core.chat import Prompt
from bench.core.sampling import left_pad, prompt_inputs, score_rows
from bench.specs import RunSpec


@torch.no_grad()
def sample_vllm(
    policy_path: Path,
    load: Callable[[Path], tuple[Any, Any]],
    reference: Any,
    tokenizer: Any,
    prompts: list[Prompt],
    spec: RunSpec,
    seed: int,
    chat: bool,
) -> list[dict[str, Any]]:
    from vllm import LLM, SamplingParams

    g = spec.eval.generation
    llm = LLM(model=str(policy_path), dtype=spec.model.dtype, seed=seed)
    params = SamplingParams(
        n=spec.eval.samples_per_prompt,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k if g.top_k > 0 else -1,  # vLLM's "off" is -1
        max_tokens=g.max_new_tokens,
        seed=seed,
    )
    # Token ids, not text: vLLM tokenising a templated prompt would add a second BOS (Llama 3).
    labels, encoded = prompt_inputs(tokenizer, prompts, chat)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in encoded], params)
    del llm  # free the GPU for the scoring models
    torch.cuda.empty_cache()
    policy, _ = load(policy_path)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows: list[dict[str, Any]] = []
    jobs = [(i, j, list(c.token_ids)) for i, o in enumerate(outputs) for j, c in enumerate(o.outputs)]
    for start in range(0, len(jobs), g.batch_size):
        batch = jobs[start : start + g.batch_size]
        prompt_ids, prompt_mask = left_pad([encoded[i] for i, _, _ in batch], pad)
        width = max(len(ids) for *_, ids in batch)
        completions = torch.full((len(batch), width), pad, dtype=torch.long)
        for k, (*_, ids) in enumerate(batch):
            completions[k, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        sequences = torch.cat([prompt_ids, completions], dim=1).to(policy.device)
        prompt_len = prompt_ids.shape[1]
        # Left padding is masked; positions after a row's <eos> are never read before it (causal).
        mask = torch.cat([prompt_mask, torch.ones_like(completions)], dim=1).to(policy.device)
        logits = policy(input_ids=sequences, attention_mask=mask).logits
        logp = logits[:, prompt_len - 1 : -1].float().log_softmax(-1)
        named = [(i, j, labels[i]) for i, j, _ in batch]
        rows += score_rows(named, sequences, prompt_mask, prompt_len, logp, tokenizer, reference)
    return rows
