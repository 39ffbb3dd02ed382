"""The generate stage: policy samples on the evaluation prompts, with the token statistics KL needs
(bench.core.sampling): per generated token the policy's log-prob, the reference's, and the exact per-step
KL(pi(.|prefix) || ref(.|prefix)). `sample_reference` writes the reference model's own samples, once per
study (the reference stage calls it)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import torch

from bench.core.chat import render_prompt, uses_chat_template
from bench.core.records import atomic_write_json, atomic_write_jsonl
from bench.core.sampling import sample
from bench.sources.prompts import evaluation_prompts
from bench.stages.base import Context, Stage
from bench.stages.vllm import sample_vllm

GENERATIONS = "generations.jsonl"


def eval_seed(seed: int) -> int:
    # Distinct from the training seed's stream, but a function of it: a seed changes the evaluation samples.
    return 10_000 + seed


def resolve_backend(name: str) -> str:
    """'auto' -> vllm when it is installed and a GPU is present, else hf."""
    if name != "auto":
        return name
    return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"


def generation_record(
    ctx: Context, rows: list[dict[str, Any]], seconds: float, backend: str, example: str, chat: bool
) -> dict[str, Any]:
    """What generation.json records beside the samples: the decoding settings, the prompt format (whether the
    chat template was applied, and the first prompt exactly as the model saw it), and the throughput."""
    spec = ctx.spec
    tokens = sum(len(r["token_ids"]) for r in rows)
    decoding = {k: v for k, v in spec.config["eval"]["generation"].items() if k != "backend"}
    return {
        "backend": backend,
        "chat_template": chat,
        "prompt_example": example,
        "decoding": decoding,
        "seed": eval_seed(spec.seed),
        "samples_per_prompt": spec.eval.samples_per_prompt,
        "prompts": len({r["prompt_id"] for r in rows}),
        "sequences": len(rows),
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def sample_reference(ctx: Context, folder: Path) -> None:
    """The reference model's samples on the evaluation prompts into `folder` (always the hf backend: they
    are computed once per study and are their own reference, KL 0)."""
    spec = ctx.spec
    model, tok = ctx.sources.model.load(ctx.sources.model.reference())
    prompts = evaluation_prompts(spec, ctx.sources.data)
    chat = uses_chat_template(tok, spec.model.chat_template)
    t0 = time.perf_counter()
    rows = sample(
        model,
        tok,
        prompts,
        spec.eval.samples_per_prompt,
        spec.eval.generation,
        seed=eval_seed(spec.seed),
        desc="reference samples",
        chat=chat,
    )
    seconds = time.perf_counter() - t0
    for r in rows:
        r["ref_logprobs"], r["kl_steps"] = r["logprobs"], [0.0] * len(r["logprobs"])
    record = generation_record(ctx, rows, seconds, "hf", render_prompt(tok, prompts[0], chat), chat)
    atomic_write_json(folder / "generation.json", record)
    atomic_write_jsonl(folder / GENERATIONS, rows)


class Generate(Stage):
    """generations.jsonl (policy samples with policy and reference log-probs and per-step exact KL) and
    generation.json (decoding settings, backend, throughput)."""

    name = "generate"

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / GENERATIONS]

    def run(self, ctx: Context) -> None:
        spec, load = ctx.spec, ctx.sources.model.load
        backend = resolve_backend(spec.eval.generation.backend)
        reference, tok = load(ctx.sources.model.reference())
        prompts = evaluation_prompts(spec, ctx.sources.data)
        chat = uses_chat_template(tok, spec.model.chat_template)
        t0 = time.perf_counter()
        if backend == "vllm":
            rows = sample_vllm(ctx.policy, load, reference, tok, prompts, spec, eval_seed(spec.seed), chat)
        else:
            policy, tok = load(ctx.policy)
            t0 = time.perf_counter()
            rows = sample(
                policy,
                tok,
                prompts,
                spec.eval.samples_per_prompt,
                spec.eval.generation,
                seed=eval_seed(spec.seed),
                reference=reference,
                desc="policy samples",
                chat=chat,
            )
        seconds, example = time.perf_counter() - t0, render_prompt(tok, prompts[0], chat)
        atomic_write_json(
            ctx.run_dir / "generation.json", generation_record(ctx, rows, seconds, backend, example, chat)
        )
        atomic_write_jsonl(ctx.run_dir / GENERATIONS, rows)
