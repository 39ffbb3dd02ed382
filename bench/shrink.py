"""Shrunk studies: a study file run end to end in minutes on a CPU (`bench sweep FILE --shrink`), so its exact
configuration is known to run before GPU hours are spent on it.

What a shrunk study keeps and what it swaps:
  * each variant once: the first value of every grid key (one seed, the first grid point);
  * every key the study sets is kept (loss, learning rate, schedule, optimiser, accumulation, activation
    checkpointing, decoding temperature, evaluation over training, the published comparison), except
  * the model and the data, swapped for a tiny stand-in: the tiny toy world for a toy study; SmolLM2-135M
    cut to its first 2 decoder blocks (model=smollm2_135m_2layers: the real tokenizer, chat template and
    architecture) on the shipped chat pairs (dataset=tiny_chat) for every other study. The study's
    model.* and dataset.* keys belong to the swapped options and are dropped;
  * sizes, capped: a handful of optimiser steps, a small batch, short sequences, a few prompts and tokens;
  * what this machine cannot have, swapped for what it can: an API judge (AlpacaEval's GPT-4 annotators)
    for the local LM judge, a judge model from the Hub for the reference model (a reward model judge reads it
    under a seeded, untrained classification head), evaluation prompts and reference answers from a file for
    the stand-in data's own, lm-eval tasks whose data needs the Hub for the stand-in's shipped task; bf16 for
    fp32 (the stand-ins run on CPU, where bf16 is refused).
The results go to results/<study>_shrunk/, never into the real study's folder. Every swap is listed by
`bench sweep FILE --shrink --dry-run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.judge.registry import our_judges
from bench.specs import RunSpec
from bench.toyworld.process import WORLD_KINDS

SUFFIX = "_shrunk"  # results/<study>_shrunk/

# The stand-ins: (group choices, the stand-in data's lm-eval tasks).
STAND_INS: dict[str, tuple[list[str], str]] = {
    "toy": (["model=toy_tiny", "dataset=toy_tiny"], "[toy_nll,toy_mc]"),
    "chat": (["model=smollm2_135m_2layers", "dataset=tiny_chat"], "[tiny_facts]"),
}
# Size caps per stand-in: a study's smaller value is kept. Chat: 2 optimiser steps of 2 pairs (two
# accumulation steps of 1 when the study accumulates), 128 tokens, 4 prompts x 16 new tokens: even the cut
# SmolLM2 in fp32 on a 2-core CPU takes about a second per optimiser step. Two steps: the first has a learning
# rate of 0 under any warm-up, so one step would not change the model.
CAPS: dict[str, dict[str, int]] = {
    "toy": {
        "train.max_steps": 4,
        "train.batch_size": 8,
        "train.max_length": 64,
        "eval.max_prompts": 8,
        "eval.samples_per_prompt": 2,
        "eval.generation.max_new_tokens": 48,
        "eval.lm_eval.limit": 8,
        "eval.bootstrap": 50,
    },
    "chat": {
        "train.max_steps": 2,
        "train.batch_size": 2,
        "train.max_length": 128,
        "eval.max_prompts": 4,
        "eval.samples_per_prompt": 2,
        "eval.generation.max_new_tokens": 16,
        "eval.lm_eval.limit": 4,
        "eval.bootstrap": 50,
    },
}


@dataclass(frozen=True)
class Shrunk:
    """A run's shrunk overrides, and what was replaced (for the dry run's listing)."""

    overrides: list[str]
    replaced: list[str]


def stand_in(spec: RunSpec) -> str:
    """'toy' for a study of the toy world's model (it has a `toy` section), else 'chat'."""
    return "toy" if spec.model.toy else "chat"


def _group(item: str) -> str:
    return item.split("=", 1)[0].lstrip("+~").split(".", 1)[0]


def _select(config: dict[str, Any], key: str) -> Any:
    """config["a"]["b"] for "a.b"; None where absent."""
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _caps(kind: str, config: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, cap in CAPS[kind].items():
        value = _select(config, key)
        if key == "train.max_steps":
            out[key] = str(cap if value is None or value <= 0 else min(value, cap))
        else:
            out[key] = str(cap if value is None else min(value, cap))
    accum = int(_select(config, "train.grad_accum") or 1)
    batch = int(out["train.batch_size"])
    out["train.grad_accum"] = str(2 if accum > 1 and batch % 2 == 0 else 1)  # keep accumulation exercised
    if int(_select(config, "eval.every_steps") or 0) > 0:  # keep evaluation over training: once, half-way
        out["eval.every_steps"] = str(max(1, int(out["train.max_steps"]) // 2))
    return out


def _unavailable(kind: str, spec: RunSpec) -> dict[str, str]:
    """Evaluation keys whose value needs what a laptop offline cannot have, with the stand-in's value."""
    out: dict[str, str] = {}
    ours = set(our_judges())
    if spec.eval.judge not in ours:  # an AlpacaEval annotator: an API judge
        out["eval.judge"] = "local_lm" if kind == "chat" else "toy"
    judge = out.get("eval.judge", spec.eval.judge)
    if judge in ("local_lm", "reward_model"):
        out["eval.judge_model"] = "reference"
    elif spec.eval.judge_model is not None:
        out["eval.judge_model"] = "null"
    if spec.eval.prompts is not None:
        out["eval.prompts"] = "null"
    if spec.eval.reference_outputs is not None:
        out["eval.reference_outputs"] = "null"
    if spec.eval.alpaca_eval_gamed_csv is not None:
        out["eval.alpaca_eval_gamed_csv"] = "null"
    if spec.eval.lm_eval.tasks:
        out["eval.lm_eval.tasks"] = STAND_INS[kind][1]
    if spec.train.bf16:
        out["train.bf16"] = "false"
    return out | _onpolicy(kind, spec, ours)


def _onpolicy(kind: str, spec: RunSpec, ours: set[str]) -> dict[str, str]:
    """Sampled training pairs shrunk like the evaluation: short samples, a local judge for an API one (the
    local LM only compares two: random_pair), the reference (under a fresh head for a reward model) for a
    judge model from the Hub; the model the run starts from stays its own judge (self-rewarding)."""
    o = spec.onpolicy
    out: dict[str, str] = {}
    if not o.enabled:
        return out
    cap = CAPS[kind]["eval.generation.max_new_tokens"]
    out["onpolicy.max_new_tokens"] = str(min(o.max_new_tokens or cap, cap))
    if o.judge not in ours and o.judge != "gold":
        out["onpolicy.judge"] = "local_lm" if kind == "chat" else "toy"
        if kind == "chat":
            out["onpolicy.rule"] = "random_pair"
    judge = out.get("onpolicy.judge", o.judge)
    if judge in ("local_lm", "reward_model") and o.judge_model not in (None, "start"):
        out["onpolicy.judge_model"] = "reference"
    return out


def _world_kind(kind: str, spec: RunSpec) -> dict[str, str]:
    """The toy world's kind (its judge hack, its ranked lists: WORLD_KINDS), kept on the tiny world."""
    if kind != "toy":
        return {}
    world = spec.dataset.world
    return {f"dataset.world.{k}": str(world[k]) for k in WORLD_KINDS if k in world}


def shrink(overrides: list[str], spec: RunSpec) -> Shrunk:
    """The shrunk form of one run's study overrides (`spec`: the run as the study composes it)."""
    kind = stand_in(spec)
    config = spec.config
    groups, _ = STAND_INS[kind]
    settings = {**_caps(kind, config), **_unavailable(kind, spec), **_world_kind(kind, spec)}
    kept = [
        item
        for item in overrides
        if _group(item) not in ("model", "dataset") and item.split("=", 1)[0].lstrip("+~") not in settings
    ]
    replaced = [
        f"{item} (the stand-in's own)"
        for item in overrides
        if "." in item.split("=", 1)[0] and _group(item) in ("model", "dataset")
    ]
    for item in groups:
        key, value = item.split("=", 1)
        replaced.append(f"{key}: {_select(config, f'choices.{key}')} -> {value}")
    for key, value in settings.items():
        before = _select(config, key)
        if str(before).lower().replace(" ", "").replace("'", "") != value.replace(" ", ""):
            replaced.append(f"{key}: {before} -> {value}")
    return Shrunk([*groups, *kept, *(f"{k}={v}" for k, v in settings.items())], replaced)
