"""The toy world (bench.toyworld) as a data source and a model source: its world is built once per distinct
dataset.world + model.toy and cached under <paths.cache>/toyworld/<key> (bench.core.keys.TOY_WORLD)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench.toyworld.model  # noqa: F401  (registers model_type toy_llama with transformers)
from bench.core.chat import Prompt
from bench.core.errors import ConfigError
from bench.core.keys import TOY_WORLD, key_hash
from bench.sources.base import DataSource, GoldReward, ModelSource
from bench.sources.rows import validate_rows
from bench.specs import RunSpec
from bench.toyworld import files, process
from bench.toyworld.build import FORMAT_VERSION, ensure_world, world_params
from bench.toyworld.process import WorldParams


def world_dir(spec: RunSpec) -> Path:
    """The world's cache folder (it may not be built yet)."""
    key = key_hash(TOY_WORLD, spec.config, 12, version=FORMAT_VERSION)
    return Path(spec.paths.cache) / "toyworld" / key


def world(spec: RunSpec) -> Path:
    """The built world's folder (built first when it is not cached)."""
    if spec.model.toy is None:
        raise ConfigError("the toy world needs model=toy (or another model with a `toy` section)")
    return ensure_world(world_dir(spec), world_params(spec.dataset.world), spec.model.toy)


class ToyData(DataSource):
    always_scored = True  # by the world's judge (add_scores)

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec)
        self.params: WorldParams = world_params(spec.dataset.world)  # unknown keys and ranges fail here

    def own_rows(self) -> list[dict[str, Any]]:
        """The world's pairs labelled by the run's seed, or its ranked lists when it has them (list_size)."""
        folder = world(self.spec)
        if self.params.list_size > 2:
            return files.labelled_lists(folder, self.spec.seed, self.params.judge_tau)
        return validate_rows(files.labelled_pairs(folder, self.spec.seed), str(folder / "pairs.jsonl"))

    def add_scores(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The world's own pairs with the judge's scores of their two answers (the scores the labels were
        drawn from: P(chosen) = sigmoid((score_chosen - score_rejected) / tau)); a train_path file's rows
        as they are."""
        if self.spec.dataset.train_path or self.params.list_size > 2 or self.spec.onpolicy.enabled:
            return rows  # a file's own; lists and sampled pairs carry theirs
        lam, hack = self.params.judge_lambda, process.judge_hack(self.params)
        return [
            {
                **row,
                "score_chosen": process.judge_score(row["chosen"], lam, hack),
                "score_rejected": process.judge_score(row["rejected"], lam, hack),
            }
            for row in rows
        ]

    def heldout_prompts(self) -> list[Prompt]:
        return list(files.heldout_prompts(world(self.spec)))

    def prepared(self) -> bool:
        return (world_dir(self.spec) / "world.json").exists()  # written last by the build

    def check(self) -> None:
        if self.spec.dataset.train_path:  # the world's own pairs are checked when it is built
            self.dataset_rows()

    def gold(self) -> GoldReward:
        return GoldReward(self.params.gold_alphas, process.gold_reward, process.sentiment)

    def judge_preference(self) -> Callable[[str, str], float]:
        lam, tau, hack = self.params.judge_lambda, self.params.judge_tau, process.judge_hack(self.params)
        return lambda first, second: process.judge_prob(first, second, lam, tau, hack)

    def judge_score(self) -> Callable[[str], float]:
        lam, hack = self.params.judge_lambda, process.judge_hack(self.params)
        return lambda text: process.judge_score(text, lam, hack)

    def lm_eval_tasks(self) -> dict[str, Path]:
        return files.task_files(world_dir(self.spec))  # written when the world is built


class ToyModel(ModelSource):
    """The toy world's reference model; it speaks only the toy world's vocabulary."""

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec)
        if spec.model.toy is None:
            raise ConfigError("model.source=toyworld needs a model.toy section (see conf/model/toy.yaml)")

    def reference(self) -> Path:
        return world(self.spec) / "reference"
