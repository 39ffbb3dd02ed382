"""The generate stage: sample completions on held-out prompts, with the token log-probs KL needs.

Policy samples carry, per generated token, the policy's log-prob, the reference's log-prob and the exact
per-step KL(pi(.|prefix) || ref(.|prefix)) (ARCHITECTURE.md, Metrics). The policy's full next-token
distributions come from `generate`'s raw logits, so the policy is never run again for KL; the reference runs
one forward pass over the sampled sequences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.chat import Prompt, encode_prompt, instruction_text, render_prompt, uses_chat_template
from bench.prompts import heldout_prompts
from bench.records import atomic_write_jsonl

if TYPE_CHECKING:
    from bench.config import GenerationSpec, RunSpec

log = logging.getLogger(__name__)


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
    """(what the judge is shown, token ids the model continues) of each prompt (bench.chat)."""
    labels = [instruction_text(p) for p in prompts]
    return labels, [encode_prompt(tokenizer, render_prompt(tokenizer, p, chat)) for p in prompts]


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    n_per_prompt: int,
    gen: GenerationSpec,
    seed: int,
    reference: Any | None = None,
    desc: str = "sampling",
    chat: bool = False,
) -> list[dict[str, Any]]:
    """Ancestral samples, `n_per_prompt` per prompt, as rows with token ids and per-token statistics.

    Prompts are strings or conversations; with `chat` they go through the tokenizer's chat template, and every
    prompt gets exactly one BOS when the tokenizer uses one (bench.chat). A row's `prompt` is the instruction
    text (what a judge is shown). `logprobs` are the sampling model's log-probs at temperature 1 (the model's
    distribution, which KL needs), whatever the decoding settings. With `reference`, rows also get
    `ref_logprobs` and `kl_steps`.
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
    lengths = _lengths(new_tokens, eos)
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
            "completion": _completion_text(
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


def _completion_text(tokenizer: Any, prompt_ids: list[int], completion_ids: list[int]) -> str:
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


def _lengths(new_tokens: torch.Tensor, eos: int) -> torch.Tensor:
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


def reference_generations(spec: RunSpec) -> Path:
    """Reference samples on the held-out prompts, computed once and shared by every run of the study that
    has the same reference model, prompts, decoding and seed."""
    from bench.config import config_hash
    from bench.models import load_model, reference_model_path
    from bench.records import atomic_write_json, file_lock

    # Keyed by what determines the samples (model and data config, decoding, seed), not by where files live,
    # so a study whose cache or results folder moves keeps its reference samples.
    key = config_hash(
        {
            # LoRA settings shape the policy, not the reference: runs with and without adapters share samples
            "model": {k: v for k, v in spec.config["model"].items() if k != "lora"},
            "dataset": spec.config["dataset"],
            "generation": spec.config["eval"]["generation"] | {"batch_size": None},
            "n": spec.eval.samples_per_prompt,
            "prompts": spec.eval.max_prompts,
            "seed": spec.seed,
            **({"prompts_file": spec.eval.prompts} if spec.eval.prompts else {}),
        }
    )
    folder = Path(spec.paths["results"]) / spec.study / "_reference" / f"{spec.model.name}-s{spec.seed}-{key}"
    out = folder / "generations.jsonl"
    with file_lock(folder / ".lock"):
        if not out.exists():
            model, tok = load_model(spec, reference_model_path(spec))
            prompts, chat = heldout_prompts(spec), uses_chat_template(tok, spec.model.chat_template)
            t0 = time.perf_counter()
            rows = sample(
                model,
                tok,
                prompts,
                spec.eval.samples_per_prompt,
                spec.eval.generation,
                seed=_eval_seed(spec),
                desc="reference samples",
                chat=chat,
            )
            seconds = time.perf_counter() - t0
            for r in rows:
                r["ref_logprobs"], r["kl_steps"] = r["logprobs"], [0.0] * len(r["logprobs"])
            example = render_prompt(tok, prompts[0], chat)
            record = generation_record(spec, rows, seconds, "hf", example, chat)
            atomic_write_json(folder / "generation.json", record)
            atomic_write_jsonl(out, rows)
    return out


def _eval_seed(spec: RunSpec) -> int:
    # Distinct from the training seed's stream, but a function of it: a seed changes the evaluation samples.
    return 10_000 + spec.seed


def resolve_backend(name: str) -> str:
    """'auto' -> vllm when it is installed and a GPU is present, else hf."""
    if name != "auto":
        return name
    import importlib.util

    return "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"


def generation_record(
    spec: RunSpec, rows: list[dict[str, Any]], seconds: float, backend: str, example: str, chat: bool
) -> dict[str, Any]:
    """What generation.json records beside the samples: the decoding settings, the prompt format (whether the
    chat template was applied, and the first prompt exactly as the model saw it), and the throughput."""
    tokens = sum(len(r["token_ids"]) for r in rows)
    decoding = {k: v for k, v in spec.config["eval"]["generation"].items() if k != "backend"}
    return {
        "backend": backend,
        "chat_template": chat,
        "prompt_example": example,
        "decoding": decoding,
        "seed": _eval_seed(spec),
        "samples_per_prompt": spec.eval.samples_per_prompt,
        "prompts": len({r["prompt_id"] for r in rows}),
        "sequences": len(rows),
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def run_generate(spec: RunSpec, run_dir: Path, policy_path: Path | None = None) -> Path:
    """generations.jsonl: policy samples with policy/reference log-probs and per-step exact KL, and
    generation.json (decoding settings, throughput). `policy_path` defaults to the run's checkpoint."""
    from bench.models import load_model, reference_model_path
    from bench.records import atomic_write_json

    out = run_dir / "generations.jsonl"
    if out.exists():
        return out
    backend = resolve_backend(spec.eval.generation.backend)
    policy_path = policy_path or spec.checkpoint_dir()
    reference, tok = load_model(spec, reference_model_path(spec))
    prompts, chat = heldout_prompts(spec), uses_chat_template(tok, spec.model.chat_template)
    t0 = time.perf_counter()
    if backend == "vllm":
        from bench.generate_vllm import sample_vllm

        rows = sample_vllm(policy_path, reference, tok, prompts, spec, _eval_seed(spec), chat)
    else:
        policy, tok = load_model(spec, policy_path)
        t0 = time.perf_counter()
        rows = sample(
            policy,
            tok,
            prompts,
            spec.eval.samples_per_prompt,
            spec.eval.generation,
            seed=_eval_seed(spec),
            reference=reference,
            desc="policy samples",
            chat=chat,
        )
    seconds, example = time.perf_counter() - t0, render_prompt(tok, prompts[0], chat)
    atomic_write_json(
        run_dir / "generation.json", generation_record(spec, rows, seconds, backend, example, chat)
    )
    atomic_write_jsonl(out, rows)
    return out
