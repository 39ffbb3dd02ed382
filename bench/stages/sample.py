"""The sample stage: a run's training pairs sampled from a model and judged (onpolicy.enabled), before it
trains.

K completions per prompt of a slice of the dataset's training prompts, from the model the run starts from
(the reference, or the previous round's policy), the reference or any saved model, through the generate
stage's backends (bench.core.sampling, vLLM); scored by the sampling judge (bench.judge.sampled) and paired by
the rule (bench.sources.pair_rules). The dataset folder (bench.sources.sampled) is shared by every run with
the same key, written part by part (a killed sampler resumes at its first unfinished part, and a part-by-part
build equals one build: each part has its own seed), under a lock so two runs never compute it twice. The run
folder gets sampled.json: the folder and its provenance.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.chat import instruction_text, uses_chat_template
from bench.core.errors import ConfigError
from bench.core.records import atomic_write_json, atomic_write_jsonl, file_lock, read_json, read_jsonl
from bench.core.sampling import sample
from bench.judge.sampled import SamplingJudge, is_pointwise
from bench.sources.pair_rules import list_pairs, pair_rule, pairs_from_lists
from bench.sources.prompts import evaluation_prompts
from bench.sources.sampled import LISTS, PAIRS, PARTS, PROVENANCE, check_disjoint, prompt_slice, sampled_dir
from bench.specs import GenerationSpec, RunSpec
from bench.stages.base import Context, Stage
from bench.stages.generate import resolve_backend
from bench.stages.vllm import sample_vllm
from bench.train.online import Labeller
from bench.train.rounds import start_model

log = logging.getLogger(__name__)
SAMPLED = "sampled.json"
ONLINE_DRAWS = 1 << 30  # online batches' list indices start here: draws distinct from a sampled folder's


def part_seed(seed: int, part: int) -> int:
    """Each part's own sampling seed: a function of the run seed and the part, never of earlier parts."""
    return int(np.random.SeedSequence([20_000 + seed, part]).generate_state(1)[0])


def decoding(spec: RunSpec) -> GenerationSpec:
    o, g = spec.onpolicy, spec.eval.generation
    return dataclasses.replace(
        g,
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=0,
        max_new_tokens=o.max_new_tokens or g.max_new_tokens,
    )


def sampler_path(ctx: Context) -> Path:
    model = ctx.spec.onpolicy.model
    if model == "reference":
        return ctx.sources.model.reference()
    if model == "start":
        return start_model(ctx.spec, ctx.sources.model.reference())
    return Path(model)


def sample_rows(ctx: Context, path: Path, loaded: Any, prompts: list[Any], seed: int) -> list[dict[str, Any]]:
    """K samples per prompt as the generate stage's rows (hf or vllm backend); `loaded`: (model,
    tokenizer)."""
    spec, (model, tok) = ctx.spec, loaded
    gen = decoding(spec)
    chat = uses_chat_template(tok, spec.model.chat_template)
    if resolve_backend(gen.backend) == "vllm":
        scoped = dataclasses.replace(
            spec,
            eval=dataclasses.replace(spec.eval, generation=gen, samples_per_prompt=spec.onpolicy.samples),
        )
        return sample_vllm(path, ctx.sources.model.load, None, tok, prompts, scoped, seed, chat)
    return sample(
        model, tok, prompts, spec.onpolicy.samples, gen, seed=seed, desc="training samples", chat=chat
    )


def _judged_part(
    ctx: Context, path: Path, loaded: Any, judge: SamplingJudge, prompts: list[Any], first: int, seed: int
) -> list[dict[str, Any]]:
    """One part's lists: {prompt, completions, n_tokens, scores} (pointwise judge) or {..., judged: [i, j,
    P(j preferred) or None]} (pairwise judge, on the pair random_pair draws)."""
    rows = sample_rows(ctx, path, loaded, prompts, seed)
    lists = []
    for i, prompt in enumerate(prompts):
        mine = sorted((r for r in rows if r["prompt_id"] == i), key=lambda r: r["sample"])
        lists.append(
            {
                "prompt": prompt,
                "completions": [r["completion"] for r in mine],
                "n_tokens": [r["n_tokens"] for r in mine],
            }
        )
    return judge_lists(ctx.spec, judge, lists, first)


def judge_lists(
    spec: RunSpec, judge: SamplingJudge, lists: list[dict[str, Any]], first: int
) -> list[dict[str, Any]]:
    """Lists {prompt, completions} with the judge's `scores` (pointwise) or `judged`: [i, j, P(j preferred)
    or None] on the pair random_pair draws (pairwise); `first`: the first list's index (its draws' seed)."""
    if judge.pointwise:
        for item in lists:
            item["scores"] = judge.scores(instruction_text(item["prompt"]), item["completions"])
        return lists
    # A pairwise judge labels the pair random_pair draws, from the same per-list generator pairs_from_lists
    # gives a pointwise judge's scores (seed, list index); identical completions are a tie, not asked.
    asked: list[tuple[int, int, int]] = []
    for k, item in enumerate(lists):
        rng = np.random.default_rng([spec.seed, first + k])
        i, j = (int(x) for x in rng.choice(len(item["completions"]), size=2, replace=False))
        item["judged"] = [i, j, 0.5]
        if item["completions"][i] != item["completions"][j]:
            asked.append((k, i, j))
    verdicts = judge.second_preferred(
        [
            (instruction_text(lists[k]["prompt"]), lists[k]["completions"][i], lists[k]["completions"][j])
            for k, i, j in asked
        ]
    )
    for (k, _, _), p in zip(asked, verdicts, strict=True):
        lists[k]["judged"][2] = p
    return lists


def _pairs(spec: RunSpec, lists: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rule's pairs of every list, and the counts provenance reports: prompts without a pair (ties,
    malformed verdicts), malformed verdicts, and pairs left out for an empty completion (a sample that ended
    at once: a training row needs text on both sides, as the toy world's own pairs do)."""
    o = spec.onpolicy
    if is_pointwise(spec):
        pairs, empty = pairs_from_lists(lists, pair_rule(o.rule, o.rso_beta, o.rso_samples), spec.seed)
        malformed = 0
    else:
        indices, counts = pairwise_pairs(lists)
        empty, malformed = counts["prompts_without_pair"], counts["malformed_verdicts"]
        pairs = [
            {
                "prompt": lists[k]["prompt"],
                "chosen": lists[k]["completions"][c],
                "rejected": lists[k]["completions"][r],
            }
            for k, c, r in indices
        ]
    kept = [_shaped(p) for p in pairs if str(p["chosen"]).strip() and str(p["rejected"]).strip()]
    counts = {
        "prompts_without_pair": empty,
        "malformed_verdicts": malformed,
        "pairs_dropped_empty": len(pairs) - len(kept),
    }
    return kept, counts


def _shaped(pair: dict[str, Any]) -> dict[str, Any]:
    """A pair in its data's shape: with a conversation for a prompt, each completion is an assistant message,
    as conversational preference data holds them (TRL then applies the chat template alike)."""
    if isinstance(pair["prompt"], str):
        return pair
    return pair | {side: [{"role": "assistant", "content": pair[side]}] for side in ("chosen", "rejected")}


def pairwise_pairs(lists: list[dict[str, Any]]) -> tuple[list[tuple[int, int, int]], dict[str, int]]:
    """(list index, chosen, rejected) of each pairwise verdict that prefers one side; a tie (P = 0.5) or a
    verdict that did not parse (None, counted apart: never taken for a tie) gives none."""
    pairs, empty, malformed = [], 0, 0
    for k, item in enumerate(lists):
        i, j, p = item["judged"]
        malformed += p is None
        if p is None or p == 0.5:
            empty += 1
            continue
        pairs.append((k, j, i) if p > 0.5 else (k, i, j))
    return pairs, {"prompts_without_pair": empty, "malformed_verdicts": malformed}


def online_labeller(ctx: Context) -> Labeller:
    """The sampling judge and pair rule for online training (bench.train.online): each call judges one batch's
    lists; its random draws are seeded by the run seed and a running list count (a resumed run draws anew).
    A judge_model of `start` is the model the run started from."""
    spec, o = ctx.spec, ctx.spec.onpolicy
    judge = SamplingJudge(spec, ctx.sources, start_model(spec, ctx.sources.model.reference()))
    rule = pair_rule(o.rule, o.rso_beta, o.rso_samples)
    seen = [0]

    def label(
        lists: list[dict[str, Any]],
    ) -> tuple[list[tuple[int, int, int]], list[list[float]] | None, dict[str, int]]:
        first = ONLINE_DRAWS + seen[0]
        seen[0] += len(lists)
        judged = judge_lists(spec, judge, lists, first)
        if not judge.pointwise:
            pairs, counts = pairwise_pairs(judged)
            return pairs, None, counts
        scores = [item["scores"] for item in judged]
        pairs = list_pairs(scores, rule, spec.seed, first)
        empty = len(judged) - len({k for k, _, _ in pairs})
        return pairs, scores, {"prompts_without_pair": empty, "malformed_verdicts": 0}

    return label


def build_sampled(ctx: Context) -> Path:
    """The run's sampled dataset folder, written when it is not there yet (part by part, resumable)."""
    spec, o = ctx.spec, ctx.spec.onpolicy
    folder = sampled_dir(spec)
    prompts = prompt_slice(spec, ctx.sources.data.dataset_rows())
    check_disjoint(spec, prompts, evaluation_prompts(spec, ctx.sources.data))
    path = sampler_path(ctx)  # a previous round that failed stops the run here, before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        if (folder / PAIRS).exists():
            log.info("sampled pairs: reusing %s", folder)
            return folder
        loaded: Any = None  # the sampler, loaded at the first part that needs it
        judge = SamplingJudge(spec, ctx.sources, path)  # its model, if any, loads once for every part
        t0, generated = time.perf_counter(), 0
        lists: list[dict[str, Any]] = []
        starts = range(0, len(prompts), o.part_size)
        for k, first in enumerate(starts):
            part = folder / PARTS / f"part-{k:05d}.jsonl"
            if not part.exists():
                loaded = loaded or ctx.sources.model.load(path)
                log.info(
                    "sampling part %d/%d (%d prompts x %d) from %s",
                    k + 1,
                    len(starts),
                    len(prompts[first : first + o.part_size]),
                    o.samples,
                    path,
                )
                part_prompts = prompts[first : first + o.part_size]
                items = _judged_part(ctx, path, loaded, judge, part_prompts, first, part_seed(spec.seed, k))
                generated += sum(sum(item["n_tokens"]) for item in items)
                atomic_write_jsonl(part, items)
            lists += read_jsonl(part)
        seconds = time.perf_counter() - t0
        pairs, counts = _pairs(spec, lists)
        if counts["malformed_verdicts"] > spec.eval.judge_max_malformed * max(1, len(lists)):
            raise ConfigError(
                f"onpolicy.judge={o.judge}: {counts['malformed_verdicts']} of {len(lists)} verdicts did not "
                f"parse, more than eval.judge_max_malformed={spec.eval.judge_max_malformed:g} of them: check "
                "the judge's answers (its model and prompt template), or raise eval.judge_max_malformed; the "
                f"judged parts stay in {folder / PARTS}"
            )
        if not pairs:
            raise ConfigError(
                f"onpolicy: no pair from {len(lists)} prompts (every judged pair tied): raise "
                "onpolicy.samples or onpolicy.temperature, or use another rule"
            )
        provenance = {
            "model": o.model,
            "model_path": str(path),
            "judge": o.judge,
            "judge_model": o.judge_model,
            "rule": o.rule,
            "rule_settings": {"rso_beta": o.rso_beta, "rso_samples": o.rso_samples}
            if o.rule == "rso"
            else {},
            "seed": spec.seed,
            "prompts": {"start": o.prompts_start, "count": len(prompts)},
            "samples_per_prompt": o.samples,
            "decoding": {k: v for k, v in dataclasses.asdict(decoding(spec)).items() if k != "batch_size"},
            "lists": len(lists),
            "pairs": len(pairs),
            **counts,
            "seconds": round(seconds, 3),
            "generated_tokens": sum(sum(item.get("n_tokens", [])) for item in lists),
            # throughput of this attempt alone: the parts an earlier attempt wrote cost it nothing
            "attempt_generated_tokens": generated,
            "tokens_per_s": round(generated / seconds, 1) if seconds > 0 and generated else None,
        }
        atomic_write_jsonl(folder / LISTS, lists)
        atomic_write_json(folder / PROVENANCE, provenance)
        atomic_write_jsonl(folder / PAIRS, pairs)  # last: its existence means the folder is complete
        log.info("sampled %d pairs from %d prompts -> %s", len(pairs), len(lists), folder)
    return folder


class Sample(Stage):
    """sampled.json: the run's sampled dataset folder and its provenance (nothing to do without onpolicy)."""

    name = "sample"

    def outputs(self, ctx: Context) -> list[Path]:
        if not ctx.spec.onpolicy.enabled or ctx.spec.onpolicy.online:  # online: sampled during training
            return []
        # the shared folder too: a cleaned cache is sampled again (the same seeds give the same pairs)
        return [ctx.run_dir / SAMPLED, sampled_dir(ctx.spec) / PAIRS]

    def run(self, ctx: Context) -> None:
        folder = build_sampled(ctx)
        atomic_write_json(ctx.run_dir / SAMPLED, {"folder": str(folder), **read_json(folder / PROVENANCE)})
