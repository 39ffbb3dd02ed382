"""Cache keys: which config leaves change which cached or shared artefact, decided once, in one table.

Every artefact that is computed once and found again by a hash (a run folder, the study's reference
evaluation, a toy world, the shared reference log-probs, a study's preflight) is named by a `Key`. Each leaf
of the composed config is classified in `CONFIG_INPUTS`: the keys it changes (an empty set: decided to change
none). A test composes every option of every config group and fails on a leaf this table does not classify,
so a new config key cannot silently join (a stale artefact reused) or stay out of (needless recomputation)
any key before someone has decided.

A table row is a dotted leaf, or an *open subtree* whose every leaf is decided as a whole (a loss's
hyperparameters, the toy world's parameters). The longest matching row wins. A leaf no row matches (an
override adding a key with +) is taken as an input of every key: recomputing is safe, reusing is not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    """A cache key: its name, what it names, and inputs that do not come from the config."""

    name: str
    names: str
    other_inputs: str = ""
    config_of: str = ""  # another key whose config inputs this one shares


RUN = Key("run", "a run folder (results/<study>/<run_id>/): the experiment, so a rerun finds it")
REFERENCE = Key(
    "reference",
    "the study's evaluation of the reference model (results/<study>/_reference/<...>/): its samples on "
    "the evaluation prompts, their judgments, lm-eval and metrics, shared by every run with that reference",
)
TOY_WORLD = Key("toy_world", "a toy world (<paths.cache>/toyworld/<hash>/)", "the build's FORMAT_VERSION")
REFSTATS = Key(
    "refstats",
    "reference log-probs of the training pairs (<paths.refstats>/<hash>.pt)",
    "the reference weights' identity and the tokenised pairs (bench.train.refcache)",
)
PREFLIGHT = Key("preflight", "what a run's preflight reads: runs that share it share the check")
EVAL_TARGET = Key(
    "eval_target",
    "a `bench evaluate` folder (results/<study>/eval-<label>-<hash>/)",
    "the evaluated model's folder",
    config_of="run",
)
GGUF = Key(
    "gguf", "a checkpoint rebuilt from a GGUF file (<paths.cache>/models/)", "the GGUF file's identity"
)
SAMPLED = Key(
    "sampled",
    "training pairs sampled from a model and judged (<paths.cache>/sampled/<hash>/: bench.stages.sample)",
    "the sampling model's identity when it is a saved folder",
)
KEYS = (RUN, REFERENCE, TOY_WORLD, REFSTATS, PREFLIGHT, EVAL_TARGET, GGUF, SAMPLED)

# Keys of a loss YAML that are not hyperparameters (the run id has hashed them from the start): its paper and
# equation, and for a recipe (a YAML over another variant's code, e.g. defaults: [compose]) the variant whose
# bench/losses/<implementation>.py it runs.
LOSS_META_KEYS = ("paper", "equation", "implementation")

_R, _REF, _W, _S, _P, _G = RUN.name, REFERENCE.name, TOY_WORLD.name, REFSTATS.name, PREFLIGHT.name, GGUF.name
_D = SAMPLED.name
# What a run's reference model and evaluation prompts are: the reference evaluation and preflight read them.
_REFERENCE_SIDE = frozenset({_R, _REF, _P})
# The model and the data: sampled training pairs come from them too.
_MODEL_DATA = _REFERENCE_SIDE | {_D}
_TRAINING = frozenset({_R})
NONE: frozenset[str] = frozenset()

CONFIG_INPUTS: dict[str, frozenset[str]] = {
    # where and how a run is carried out, never what it computes
    "study": NONE,
    "choices": NONE,  # the option names; their content is in the groups (the run id shows loss and dataset)
    "launcher": NONE,
    "logging": NONE,
    "paths": frozenset({_P}),  # preflight finds files there; a moved cache holds the same artefacts
    "seed": frozenset({_R, _REF, _P, _D}),  # labels, data order, evaluation and training samples
    "loss": _TRAINING,  # open: every hyperparameter of every variant changes the experiment
    "model.source": _MODEL_DATA,
    "model.path": _MODEL_DATA,
    "model.revision": _MODEL_DATA,
    "model.dtype": _MODEL_DATA | {_S},  # fp32 and bf16 log-probs differ
    "model.attn_implementation": _MODEL_DATA,
    "model.chat_template": _MODEL_DATA,
    "model.gguf": _MODEL_DATA | {_G},
    "model.lora": frozenset({_R, _P}),  # adapters shape the policy; the reference is the frozen base
    "model.toy": _MODEL_DATA | {_W},
    "dataset.source": _MODEL_DATA,
    "dataset.path": _MODEL_DATA,
    "dataset.revision": _MODEL_DATA,
    "dataset.format": _MODEL_DATA,  # normalisation shapes the test prompts too
    "dataset.fields": _MODEL_DATA,
    "dataset.max_chars": _MODEL_DATA,
    "dataset.test_split": _MODEL_DATA,
    "dataset.train_split": frozenset({_R, _P, _D}),
    "dataset.train_path": frozenset({_R, _P, _D}),
    "dataset.world": _MODEL_DATA | {_W},  # open: the toy world's parameters
    "train.learning_rate": _TRAINING,
    "train.batch_size": _TRAINING,
    "train.grad_accum": _TRAINING,
    "train.epochs": _TRAINING,
    "train.max_steps": _TRAINING,
    "train.lr_scheduler": _TRAINING,
    "train.warmup_ratio": _TRAINING,
    "train.weight_decay": _TRAINING,
    "train.optimizer": _TRAINING,
    "train.max_length": frozenset({_R, _S}),  # truncation of the pairs
    "train.bf16": _TRAINING,
    "train.gradient_checkpointing": _TRAINING,
    "train.logging_steps": _TRAINING,  # what train_log.jsonl holds
    "train.threads": _TRAINING,
    # resources and resumability: the global batch is fixed, so only how the work is spread changes
    "train.save_steps": NONE,
    "train.processes": NONE,
    "train.accelerate_config": frozenset({_P}),
    "eval.samples_per_prompt": _REFERENCE_SIDE,
    "eval.max_prompts": _REFERENCE_SIDE,
    "eval.prompts": _REFERENCE_SIDE,
    "eval.every_steps": _TRAINING,
    "eval.generation.backend": _TRAINING,  # the reference is always sampled with the hf backend
    "eval.generation.max_new_tokens": _MODEL_DATA,  # onpolicy.max_new_tokens=null reads it
    "eval.generation.temperature": _REFERENCE_SIDE,
    "eval.generation.top_k": _REFERENCE_SIDE,
    "eval.generation.top_p": _REFERENCE_SIDE,
    "eval.generation.batch_size": NONE,  # inference batch sizes only chunk the work
    "eval.judge": _REFERENCE_SIDE,
    "eval.judge_model": _MODEL_DATA,  # onpolicy.judge_model=null reads it
    "eval.judge_batch_size": NONE,
    "eval.judge_api": NONE,  # how API faults are retried: the answers are the same
    "eval.judge_max_malformed": NONE,  # whether a judge stage fails, never what it computes
    "eval.reference_outputs": _REFERENCE_SIDE,
    "eval.alpaca_eval_gamed_csv": _REFERENCE_SIDE,
    "eval.bootstrap": frozenset({_R, _REF}),
    "eval.ci_level": frozenset({_R, _REF}),
    "eval.lm_eval.tasks": _REFERENCE_SIDE,
    "eval.lm_eval.limit": frozenset({_R, _REF}),
    "eval.lm_eval.num_fewshot": frozenset({_R, _REF}),
    "eval.lm_eval.apply_chat_template": frozenset({_R, _REF}),
    "eval.lm_eval.batch_size": NONE,
    # sampled training pairs (bench.stages.sample): who samples, how, who judges, which prompts
    "onpolicy": frozenset({_R, _P, _D}),
    "onpolicy.part_size": NONE,  # how the work is split into resumable parts, never what it computes
    "round.index": _TRAINING,
    "round.after": frozenset({_R, _P, _D}),  # the chain so far: where the policy starts, who samples
    "round.reference": _TRAINING,
    "round.partitions": frozenset({_R, _P}),
    "round.partition": frozenset({_R, _P}),
}

# Sections that are inputs only when switched on (section: the leaf that switches it, and its off value): a
# run that uses none of them hashes as it did before they existed, so adding them kept every run id.
OPTIONAL_SECTIONS: dict[str, tuple[str, Any]] = {"onpolicy": ("enabled", False), "round": ("index", 0)}


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of a config tree's leaves; an empty mapping is a leaf of its own."""
    for name, value in tree.items():
        path = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, Mapping) and value:
            yield from leaves(value, path)
        else:
            yield path


def classification(leaf: str) -> frozenset[str] | None:
    """The keys a config leaf changes (longest matching table row), or None when no row matches."""
    parts = leaf.split(".")
    for n in range(len(parts), 0, -1):
        row = CONFIG_INPUTS.get(".".join(parts[:n]))
        if row is not None:
            return row
    return None


def changes(leaf: str, key: Key) -> bool:
    row = classification(leaf)
    return row is None or (key.config_of or key.name) in row


def canonical(tree: Any) -> Any:
    """Numbers by value, not by spelling: beta=1 and beta=1.0 are one experiment and hash alike."""
    if isinstance(tree, dict):
        return {k: canonical(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [canonical(v) for v in tree]
    if isinstance(tree, float) and tree.is_integer():
        return int(tree)
    return tree


def config_inputs(config: Mapping[str, Any], key: Key) -> dict[str, Any]:
    """The part of a resolved config that `key` depends on (the same nesting; numbers canonical)."""

    def keep(tree: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in tree.items():
            path = f"{prefix}.{name}" if prefix else str(name)
            if isinstance(value, Mapping) and value:
                sub = keep(value, path)
                if sub:
                    out[name] = sub
            elif changes(path, key):
                out[name] = value
        return out

    tree = json.loads(json.dumps(config, default=str))
    for section, (switch, off) in OPTIONAL_SECTIONS.items():
        if isinstance(tree.get(section), dict) and tree[section].get(switch, off) == off:
            del tree[section]
    return canonical(keep(tree, ""))


def config_hash(tree: Any, length: int = 8) -> str:
    blob = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def key_hash(key: Key, config: Mapping[str, Any], length: int = 8, **other: Any) -> str:
    """Hash of the key's config inputs and its other inputs (by name)."""
    tree = config_inputs(config, key)
    return config_hash({"config": tree, **other} if other else tree, length)


def signature(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the resolved config that defines the experiment (what the run id hashes)."""
    return config_inputs(config, RUN)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_id(config: Mapping[str, Any], loss_name: str, dataset_name: str) -> str:
    """Readable prefix (variant, data, beta, lr, seed) + 8 hex of the experiment's signature."""
    sig = signature(config)
    parts = [loss_name, dataset_name]
    if "beta" in sig["loss"]:
        parts.append(f"b{_short(sig['loss']['beta'])}")
    parts += [f"lr{_short(sig['train']['learning_rate'])}", f"s{sig['seed']}", config_hash(sig)]
    return "-".join(parts)
