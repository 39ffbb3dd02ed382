"""The prompts a run is evaluated on:

  eval.prompts     a JSON list or JSONL file of {instruction} rows (AlpacaEval's format: its eval set or
                   baseline outputs file) or of {prompt} rows (a string or a conversation)
  otherwise        the data source's held-out prompts (the toy world's; a dataset's test split)

then the first eval.max_prompts of them. Training data never feeds evaluation.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.chat import Prompt
from bench.core.errors import ConfigError, UnavailableError
from bench.sources.base import DataSource
from bench.sources.files import distinct
from bench.sources.readers import read_file
from bench.specs import RunSpec


def _prompt_file(path: Path) -> list[Prompt]:
    path = path.absolute()
    if not path.is_file():
        raise UnavailableError(
            f"eval.prompts={str(path)!r} does not exist: a JSON list or JSONL file of {{instruction}} rows, "
            "e.g. AlpacaEval's alpaca_eval_gpt4_baseline.json from the Hub dataset tatsu-lab/alpaca_eval"
        )
    prompts: list[Prompt] = []
    for i, row in enumerate(read_file(path)):  # .json (a list) or .jsonl; a bad line names its number
        value = row.get("instruction", row.get("prompt")) if isinstance(row, dict) else None
        if not (isinstance(value, str) and value.strip()) and not isinstance(value, list):
            raise ConfigError(
                f"eval.prompts={str(path)!r}, row {i + 1}: need a non-empty 'instruction' (or 'prompt') field"
            )
        prompts.append(value)
    return prompts


def evaluation_prompts(spec: RunSpec, data: DataSource) -> list[Prompt]:
    """The evaluation prompts of a run, the first eval.max_prompts of them when that is set."""
    prompts = distinct(_prompt_file(Path(spec.eval.prompts))) if spec.eval.prompts else data.heldout_prompts()
    if not prompts:
        raise ConfigError(f"no evaluation prompts for dataset={spec.dataset.name}")
    return prompts[: spec.eval.max_prompts] if spec.eval.max_prompts else prompts


def check_prompts(spec: RunSpec) -> None:
    """Preflight: an eval.prompts file can be read (a data source checks its own prompts)."""
    if spec.eval.prompts:
        _prompt_file(Path(spec.eval.prompts))
