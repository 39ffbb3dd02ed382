"""The held-out prompts a run is evaluated on.

  toy world        its held-out prompts (disjoint from every training prompt)
  eval.prompts     a JSON list or JSONL file of {instruction} rows (AlpacaEval's format: its eval set or
                   baseline outputs file) or of {prompt} rows (a string or a conversation)
  otherwise        the distinct prompts of the dataset's test split (dataset.test_split), in file order

Training data never feeds evaluation: a dataset without a test split and no eval.prompts is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.chat import Prompt
from bench.errors import ConfigError, UnavailableError

if TYPE_CHECKING:
    from bench.config import RunSpec


def _prompt_file(path: Path) -> list[Prompt]:
    if not path.is_file():
        raise UnavailableError(
            f"eval.prompts={str(path)!r} does not exist: a JSON list or JSONL file of {{instruction}} rows, "
            "e.g. AlpacaEval's alpaca_eval_gpt4_baseline.json from the Hub dataset tatsu-lab/alpaca_eval"
        )
    from bench.data.sources import read_file

    prompts: list[Prompt] = []
    for i, row in enumerate(read_file(path)):  # .json (a list) or .jsonl; a bad line names its number
        value = row.get("instruction", row.get("prompt")) if isinstance(row, dict) else None
        if not (isinstance(value, str) and value.strip()) and not isinstance(value, list):
            raise ConfigError(
                f"eval.prompts={str(path)!r}, row {i + 1}: need a non-empty 'instruction' (or 'prompt') field"
            )
        prompts.append(value)
    return prompts


def _distinct(prompts: list[Any]) -> list[Prompt]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _dataset_prompts(spec: RunSpec) -> list[Prompt]:
    from bench.data.formats import normalise
    from bench.data.sources import read_split

    d = spec.dataset
    if not d.test_split:
        raise ConfigError(
            f"dataset={d.name} has no test split to evaluate on: set dataset.test_split=<split> or "
            "eval.prompts=<file of instructions>; training prompts are never used for evaluation"
        )
    rows = read_split(str(d.path), d.test_split, d.revision)
    rows = normalise(rows, f"{d.path} [{d.test_split}]", d.format, d.fields, d.max_chars)
    return _distinct([r["prompt"] for r in rows])


def heldout_prompts(spec: RunSpec) -> list[Prompt]:
    """The evaluation prompts of a run, the first eval.max_prompts of them when that is set."""
    if spec.eval.prompts:
        prompts = _distinct(_prompt_file(Path(spec.eval.prompts)))
    elif spec.dataset.source == "toyworld":
        from bench.data.toyworld.build import ensure_world
        from bench.records import read_jsonl

        prompts = [r["prompt"] for r in read_jsonl(ensure_world(spec) / "heldout_prompts.jsonl")]
    else:
        prompts = _dataset_prompts(spec)
    if not prompts:
        raise ConfigError(f"no evaluation prompts for dataset={spec.dataset.name}")
    return prompts[: spec.eval.max_prompts] if spec.eval.max_prompts else prompts


def check_prompts(spec: RunSpec) -> None:
    """Preflight: the evaluation prompts can be read (the toy world's are checked when it is built)."""
    if spec.eval.prompts or spec.dataset.source != "toyworld":
        heldout_prompts(spec)
