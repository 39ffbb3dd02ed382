"""Training pairs sampled from a model and judged: where they live and how a run reads them.

bench.stages.sample writes a dataset folder <paths.cache>/sampled/<key>/ (bench.core.keys.SAMPLED: the
sampler, its decoding, the judge, the pair rule, the seed and the prompt slice):

  parts/part-NNNNN.jsonl   K scored completions per prompt, one file per `onpolicy.part_size` prompts
  lists.jsonl              every prompt's completions and scores {prompt, completions, scores}
  pairs.jsonl              the pair rule's pairs {prompt, chosen, rejected[, score_chosen, score_rejected]}
  provenance.json          model, judge, rule, seed, prompt slice, counts (pairs, ties, malformed verdicts)

Any run can train on pairs.jsonl (dataset.train_path=<folder>/pairs.jsonl, or dataset=local
dataset.path=<it>); a run with onpolicy.enabled reads it here, through the same shapes and scores as any data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.chat import Prompt
from bench.core.errors import ConfigError
from bench.core.identity import model_identity
from bench.core.keys import SAMPLED, key_hash
from bench.core.records import read_jsonl
from bench.sources.rows import validate_rows

if TYPE_CHECKING:
    from bench.specs import RoundSpec, RunSpec

PAIRS, LISTS, PROVENANCE, PARTS = "pairs.jsonl", "lists.jsonl", "provenance.json", "parts"
SAMPLERS = ("start", "reference")  # or a saved model folder


def sampler_identity(spec: RunSpec) -> str:
    """What names the sampling model beyond the config: nothing for start/reference (the model and round keys
    say it), a saved folder's weights identity otherwise."""
    model = spec.onpolicy.model
    if model in SAMPLERS:
        return model
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"onpolicy.model={model!r} ({path.absolute()}) is not a saved model folder (no config.json): use "
            "start (the policy the run starts from), reference, or a folder with a saved model"
        )
    return model_identity(path)


def sampled_dir(spec: RunSpec) -> Path:
    """The dataset folder of a run's sampled pairs (it may not be written yet)."""
    return spec.paths.cache / "sampled" / key_hash(SAMPLED, spec.config, 12, model=sampler_identity(spec))


def _prompt_key(prompt: Prompt) -> str:
    return json.dumps(prompt, sort_keys=True)


def prompt_slice(spec: RunSpec, rows: list[dict[str, Any]]) -> list[Prompt]:
    """The distinct training prompts (in order of first appearance) onpolicy.prompts_start/count select;
    ConfigError when the slice runs past them."""
    seen: dict[str, Prompt] = {}
    for row in rows:
        seen.setdefault(_prompt_key(row["prompt"]), row["prompt"])
    prompts = list(seen.values())
    o = spec.onpolicy
    end = len(prompts) if o.prompts_count is None else o.prompts_start + o.prompts_count
    if o.prompts_start >= len(prompts) or end > len(prompts):
        raise ConfigError(
            f"onpolicy.prompts_start={o.prompts_start}, prompts_count={o.prompts_count} select prompts "
            f"{o.prompts_start}..{end - 1}, and dataset={spec.dataset.name} has {len(prompts)} distinct "
            "training prompts: lower them (a study's rounds take `prompts_per_round` each: rounds x "
            "prompts_per_round must fit)"
        )
    return prompts[o.prompts_start : end]


def check_disjoint(spec: RunSpec, prompts: list[Prompt], evaluation: list[Prompt]) -> None:
    """Sampled training prompts must not be evaluation prompts: a policy trained on its own judged samples
    of a prompt and then evaluated on it would be scored on its training data."""
    held = {_prompt_key(p) for p in evaluation}
    shared = [p for p in prompts if _prompt_key(p) in held]
    if shared:
        raise ConfigError(
            f"{len(shared)} of the {len(prompts)} prompts onpolicy samples (prompts_start="
            f"{spec.onpolicy.prompts_start}, prompts_count={spec.onpolicy.prompts_count}) are evaluation "
            f"prompts too, e.g. {str(shared[0])[:80]!r}: choose eval.prompts disjoint from the training "
            "prompts, or a prompt slice without them"
        )


def read_sampled(spec: RunSpec) -> list[dict[str, Any]]:
    """The sampled pairs of a run with onpolicy.enabled (the sample stage wrote them)."""
    path = sampled_dir(spec) / PAIRS
    if not path.is_file():
        raise ConfigError(
            f"run {spec.run_id} trains on sampled pairs (onpolicy.enabled=true) and {path} is not written "
            "yet: the sample stage writes it (`bench run` without --stages runs it first)"
        )
    rows = read_jsonl(path)
    # text prompts are checked as any preference file; conversations (the sample stage wrote them as its data
    # holds them: bench.stages.sample._shaped) as the data's own conversational rows are, by their reader
    return validate_rows(rows, str(path)) if all(isinstance(r.get("prompt"), str) for r in rows) else rows


def partition(rows: list[dict[str, Any]], round_: RoundSpec) -> list[dict[str, Any]]:
    """sDPO (Kim et al. 2024, arXiv:2403.19270): the rows in round.partitions contiguous parts of (nearly)
    equal size; round.partition (1-based) is this run's."""
    n, k = round_.partitions, round_.partition
    if n == 1:
        return rows
    if len(rows) < n:
        raise ConfigError(f"round.partitions={n} is more than the {len(rows)} training rows")
    bounds = [len(rows) * i // n for i in range(n + 1)]
    return rows[bounds[k - 1] : bounds[k]]
