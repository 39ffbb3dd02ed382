"""Build once and cache a toy world: prompt splits, reference model, preference pairs, lm-eval data.

A world is a folder <paths.cache>/toyworld/<hash>/ named by the hash of the world's parameters and the
reference model's architecture and fitting schedule. It is built under a file lock into a temporary folder and
renamed into place, so concurrent runs build it once and a killed build leaves nothing half-made.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.errors import ConfigError
from bench.core.records import atomic_dir, atomic_write_json, atomic_write_jsonl, file_lock
from bench.core.sampling import Ancestral, sample

from . import process
from .model import ARCH_FIELDS, ReferenceArch, ToyLlamaForCausalLM, build_reference_config, load_reference
from .process import Features, WorldParams
from .vocab import NEGATIVE, NEUTRAL, POSITIVE, WORD_TO_ID, save_tokenizer, word_class

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # bump whenever the build changes what a world holds (data, model fit)


def world_params(raw: Mapping[str, Any]) -> WorldParams:
    """dataset.world as WorldParams, every key and range checked."""
    raw = dict(raw)
    valid = {f.name for f in dataclasses.fields(WorldParams)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"unknown key dataset.world.{unknown[0]}; valid keys: {', '.join(sorted(valid))}")
    if "gold_alphas" in raw:
        raw["gold_alphas"] = tuple(raw["gold_alphas"])
    params = WorldParams(**raw)
    if not (params.p_base > 0 and 2 * (params.p_base + params.p_spread) <= 1 and params.p_spread >= 0):
        raise ConfigError("dataset.world: need p_base > 0, p_spread >= 0 and 2 (p_base + p_spread) <= 1")
    if not (1 <= params.min_len <= params.max_len and 1 <= params.min_topics <= params.max_topics <= 40):
        raise ConfigError(
            "dataset.world: need 1 <= min_len <= max_len and 1 <= min_topics <= max_topics <= 40"
        )
    if params.judge_hack_bonus < 0 or (params.judge_hack_bonus and params.judge_hack_word not in WORD_TO_ID):
        raise ConfigError(
            "dataset.world: judge_hack_bonus must be >= 0 and, when it is not 0, judge_hack_word a word of "
            f"the toy vocabulary (bench/toyworld/vocab.py), got {params.judge_hack_word!r}"
        )
    if not 2 <= params.list_size <= 16:
        raise ConfigError(f"dataset.world.list_size must be in [2, 16], got {params.list_size}")
    if params.judge_tau <= 0:
        raise ConfigError(f"dataset.world.judge_tau must be > 0, got {params.judge_tau}")
    return params


def ensure_world(folder: Path, params: WorldParams, arch: ReferenceArch) -> Path:
    """The world's folder, built first if it is not complete (safe under concurrent callers). The caller names
    the folder by the world's cache key (bench.core.keys.TOY_WORLD)."""
    if (folder / "world.json").exists():
        return folder
    with file_lock(folder.parent / f".{folder.name}.lock"):
        if not (folder / "world.json").exists():
            log.info("building the toy world into %s (once; cached by its config hash)", folder)
            with atomic_dir(folder) as tmp:
                build_world(params, arch, tmp)
    return folder


def _ids(text: str) -> list[int]:
    return [WORD_TO_ID[w] for w in text.split()]


def _sample_sft(
    rng: np.random.Generator, feats: Features, prompts: list[str], params: WorldParams
) -> list[str]:
    out = []
    for prompt in prompts:
        p, q = feats.class_probs(process.topics_of(prompt))
        out.append(process.sample_completion(rng, p, q, params))
    return out


def _fit_reference(
    prompts: list[str], completions: list[str], toy: ReferenceArch, seed: int, out: Path
) -> dict[str, float]:
    """Maximum likelihood on (prompt, completion + <eos>) with the loss on completion tokens only.

    A plain loop rather than a Trainer: this fits the world's fixed SFT model (not an experiment) and must
    stay within the world's 2-minute build budget, where Trainer overhead per 20 ms step would count.
    """
    torch.manual_seed(seed)
    seqs = [(_ids(p), [*_ids(c), WORD_TO_ID["<eos>"]]) for p, c in zip(prompts, completions, strict=True)]
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), width), WORD_TO_ID["<pad>"], dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, (a, b) in enumerate(seqs):
        ids[i, : len(a) + len(b)] = torch.tensor(a + b)
        labels[i, len(a) : len(a) + len(b)] = torch.tensor(b)
        mask[i, : len(a) + len(b)] = 1
    model = ToyLlamaForCausalLM(
        build_reference_config(toy.hidden, toy.layers, toy.heads, toy.mlp, max(64, width + 48))
    )
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=toy.sft_lr, weight_decay=0.0
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=toy.sft_lr, total_steps=toy.sft_steps, pct_start=0.05, anneal_strategy="cos"
    )
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses: list[float] = []
    for step in range(toy.sft_steps):
        idx = torch.randint(0, len(seqs), (toy.sft_batch,), generator=gen)
        loss = model(input_ids=ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % max(1, toy.sft_steps // 10) == 0:
            log.info("reference model: step %d/%d, loss %.3f", step + 1, toy.sft_steps, np.mean(losses[-50:]))
    model.eval()
    model.save_pretrained(str(out))
    save_tokenizer(out)
    return {"final_token_nll": float(np.mean(losses[-50:]))}


def _true_logprob(completion: str, p: float, q: float, params: WorldParams) -> float:
    """log P(completion + <eos>) under the base process (the floor any model's NLL can reach)."""
    words = completion.split()
    per_class = {
        "pos": math.log(p / len(POSITIVE)),
        "neg": math.log(q / len(NEGATIVE)),
        "neutral": math.log((1 - p - q) / len(NEUTRAL)),
    }
    return -math.log(params.max_len - params.min_len + 1) + sum(per_class[word_class(w)] for w in words)


def _lists(groups: list[list[dict[str, Any]]], params: WorldParams) -> list[dict[str, Any]]:
    """Each prompt's distinct non-empty samples with the judge's scores (each run seed ranks them by its own
    noisy draw: bench.toyworld.files.labelled_lists); a prompt with fewer than 2 is left out."""
    out = []
    for group in groups:
        if len({g["prompt"] for g in group}) != 1:
            raise RuntimeError("reference samples came back out of prompt order")
        completions = list(dict.fromkeys(g["completion"] for g in group if g["completion"]))
        if len(completions) >= 2:
            scores = [
                process.judge_score(c, params.judge_lambda, process.judge_hack(params)) for c in completions
            ]
            out.append({"prompt": group[0]["prompt"], "completions": completions, "judge_scores": scores})
    return out


def build_world(params: WorldParams, toy: ReferenceArch, out: Path) -> dict[str, Any]:
    """Write a complete world into `out` (a fresh folder) and return its timings."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    rng = np.random.default_rng([params.seed, 2])
    feats = Features(params)
    used: set[frozenset[str]] = set()
    heldout = process.sample_prompts(rng, params.n_heldout_prompts, params, used)
    train_prompts = process.sample_prompts(rng, params.n_train_prompts, params, used)
    # SFT prompts: fresh draws that avoid the held-out ones, so the model sees many topic combinations and
    # learns the additive features rather than 2000 memorised prompts.
    sft_prompts = process.sample_prompts(rng, params.n_sft, params, used)
    sft_completions = _sample_sft(rng, feats, sft_prompts, params)
    timings["base_samples_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    fit = _fit_reference(sft_prompts, sft_completions, toy, params.seed, out / "reference")
    timings["reference_fit_s"] = time.perf_counter() - t

    t = time.perf_counter()
    model, tok = load_reference(out / "reference")
    gen = Ancestral(max_new_tokens=48, batch_size=512)
    with torch.no_grad():
        k = params.list_size
        samples = sample(model, tok, train_prompts, k, gen, seed=params.seed, desc="preference pairs")
    groups = [samples[i : i + k] for i in range(0, len(samples), k)]
    pairs, dropped = [], 0
    for a, b, *_ in groups:
        if not a["completion"] or not b["completion"] or a["completion"] == b["completion"]:
            dropped += 1  # an empty or tied pair carries no preference; a well-fitted model rarely makes one
            continue
        pairs.append(
            {
                "prompt": a["prompt"],
                "completion_a": a["completion"],
                "completion_b": b["completion"],
                # P(the judge prefers a over b); each run seed samples its own labels from it
                "judge_p_a": process.judge_prob(
                    b["completion"],
                    a["completion"],
                    params.judge_lambda,
                    params.judge_tau,
                    process.judge_hack(params),
                ),
            }
        )
    lists = _lists(groups, params) if k > 2 else []
    timings["pairs_s"] = time.perf_counter() - t

    t = time.perf_counter()
    nll_docs: list[dict[str, Any]] = []
    excess: list[float] = []
    for prompt in heldout[: params.n_task_docs]:
        p, q = feats.class_probs(process.topics_of(prompt))
        completion = process.sample_completion(rng, p, q, params)
        nll_docs.append(
            {
                "prompt": prompt,
                "completion": completion,
                "n_tokens": len(completion.split()) + 1,
                "true_nll": -_true_logprob(completion, p, q, params),
            }
        )
    mc_docs = []
    mc_prompts = process.sample_prompts(rng, 20 * params.n_task_docs, params, used)
    for prompt in mc_prompts:
        p, q = feats.class_probs(process.topics_of(prompt))
        if abs(p - q) < 0.1:  # only prompts whose sentiment the model can tell apart
            continue
        length = int(rng.integers(params.min_len, params.max_len + 1))
        true = process.sample_completion(rng, p, q, params, length)
        swapped = process.sample_completion(rng, q, p, params, length)
        label = int(rng.integers(2))
        mc_docs.append(
            {"prompt": prompt, "choices": [true, swapped] if label == 0 else [swapped, true], "label": label}
        )
        if len(mc_docs) == params.n_task_docs:
            break
    with torch.no_grad():
        for doc in nll_docs:
            ids = torch.tensor([_ids(doc["prompt"]) + _ids(doc["completion"]) + [WORD_TO_ID["<eos>"]]])
            n_prompt = len(doc["prompt"].split())
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
            excess.append(-float(logp[n_prompt - 1 :].sum()) - doc["true_nll"])
    timings["tasks_s"] = time.perf_counter() - t

    atomic_write_jsonl(out / "heldout_prompts.jsonl", ({"prompt": p} for p in heldout))
    atomic_write_jsonl(out / "pairs.jsonl", pairs)
    if lists:
        atomic_write_jsonl(out / "lists.jsonl", lists)
    atomic_write_jsonl(out / "tasks" / "toy_nll.jsonl", nll_docs)
    atomic_write_jsonl(out / "tasks" / "toy_mc.jsonl", mc_docs)
    timings["total_s"] = time.perf_counter() - t0
    chosen_longer = float(
        np.mean(
            [
                (p["judge_p_a"] > 0.5) == (len(p["completion_a"].split()) > len(p["completion_b"].split()))
                for p in pairs
            ]
        )
    )
    summary = {
        "params": dataclasses.asdict(params),
        "model": {k: getattr(toy, k) for k in ARCH_FIELDS},
        "features": {"a": feats.a, "b": feats.b},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "reference_fit": fit,
        "diagnostics": {
            "excess_nll_per_sequence": float(np.mean(excess)),
            "judge_favours_longer": chosen_longer,
            "pairs": len(pairs),
            "pairs_dropped_empty_or_tied": dropped,
            "lists": len(lists),
            "heldout_prompts": len(heldout),
        },
    }
    atomic_write_json(out / "world.json", summary)  # written last: its presence marks a complete world
    log.info("toy world built in %.1f s: %s", timings["total_s"], summary["diagnostics"])
    return summary
