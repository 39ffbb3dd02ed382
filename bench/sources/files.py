"""Preference data from files: a local .jsonl / .json / .parquet file, a local dataset folder, or a Hub
dataset id (dataset.source file or hf), read one split at a time (bench.sources.readers) and normalised to one
schema (bench.sources.formats), every bad row reported before any model loads."""

from __future__ import annotations

import json
from typing import Any

from bench.core.chat import Prompt
from bench.core.errors import ConfigError
from bench.sources.base import DataSource
from bench.sources.formats import normalise
from bench.sources.readers import read_split
from bench.specs import RunSpec


class FileData(DataSource):
    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec)
        if not spec.dataset.path:
            raise ConfigError(
                f"dataset={spec.dataset.name} reads its rows from dataset.path: set dataset.path=..."
            )

    def _split(self, split: str) -> list[dict[str, Any]]:
        d = self.spec.dataset
        rows = read_split(str(d.path), split, d.revision)
        return normalise(rows, f"{d.path} [{split}]", d.format, d.fields, d.max_chars)

    def own_rows(self) -> list[dict[str, Any]]:
        return self._split(self.spec.dataset.train_split)

    def heldout_prompts(self) -> list[Prompt]:
        """The distinct prompts of the test split (dataset.test_split), in file order."""
        d = self.spec.dataset
        if not d.test_split:
            raise ConfigError(
                f"dataset={d.name} has no test split to evaluate on: set dataset.test_split=<split> or "
                "eval.prompts=<file of instructions>; training prompts are never used for evaluation"
            )
        return distinct([r["prompt"] for r in self._split(d.test_split)])

    def check(self) -> None:
        self.dataset_rows()
        if not self.spec.eval.prompts:
            self.heldout_prompts()


def distinct(prompts: list[Any]) -> list[Prompt]:
    seen: set[str] = set()
    out = []
    for p in prompts:
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
