"""What a run reads from the outside world, behind two interfaces chosen once from the config
(bench.sources.select): where the preference data, evaluation prompts, gold reward and data-specific lm-eval
documents come from (DataSource), and where the reference model comes from and how models load (ModelSource).

Stages never ask which source they have: they call these methods. A source that has no gold reward, no judge
of its own or no lm-eval documents says so by returning None or nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.core.chat import Prompt
from bench.sources.loading import load_causal_lm
from bench.sources.rows import load_jsonl_rows
from bench.sources.sampled import partition, read_sampled
from bench.sources.shapes import to_shape
from bench.specs import RunSpec


@dataclass(frozen=True)
class GoldReward:
    """A known true reward of completions (the toy world's): evaluation only, never seen in training.

    `alphas` are the repetition weights it is reported at (the first is the headline); `reward(text, alpha)`
    scores one completion; `sentiment(text)` is the data's own sentiment score, reported beside it."""

    alphas: tuple[float, ...]
    reward: Callable[[str, float], float]
    sentiment: Callable[[str], float]


class DataSource(ABC):
    """Preference pairs for training, prompts for evaluation, and what else the data knows."""

    always_scored: ClassVar[bool] = False  # every own training pair carries score_chosen / score_rejected

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def training_rows(self) -> list[dict[str, Any]]:
        """The run's training rows: pairs sampled from a model and judged when onpolicy.enabled
        (bench.sources.sampled; with onpolicy.online the dataset's rows, whose prompts each batch samples on),
        else the dataset's rows; sDPO's part of them with round.partitions > 1."""
        o = self.spec.onpolicy
        # online training samples each batch itself: the dataset's rows give its prompts
        rows = read_sampled(self.spec) if o.enabled and not o.online else self.dataset_rows()
        return partition(rows, self.spec.round)

    def dataset_rows(self) -> list[dict[str, Any]]:
        """The dataset's rows in its own shape (pairs, ranked lists or unpaired rows: bench.sources.shapes),
        every row validated (ConfigError lists bad ones): dataset.train_path when it is set (pairs), else the
        data's own. Their prompts are what onpolicy samples on."""
        if self.spec.dataset.train_path:
            return load_jsonl_rows(Path(self.spec.dataset.train_path))
        return self.own_rows()

    def training_pairs(self) -> list[dict[str, Any]]:
        """The training rows as pairs {prompt, chosen, rejected} (lists give best against worst); ShapeError
        for unpaired data."""
        return to_shape(self.training_rows(), "pairs", f"dataset={self.spec.dataset.name}")

    def add_scores(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The training rows with the data's per-pair scores, for a variant that declares `needs_scores`:
        a file's rows carry their own (bench.sources.scores); a source that can score its pairs adds them
        here, only when asked."""
        return rows

    @abstractmethod
    def own_rows(self) -> list[dict[str, Any]]:
        """The data's own training rows (of one shape), validated."""

    @abstractmethod
    def heldout_prompts(self) -> list[Prompt]:
        """The data's own evaluation prompts, disjoint from its training prompts (eval.prompts replaces
        them)."""

    def check(self) -> None:  # noqa: B027  (optional: a source with nothing to check keeps it)
        """Preflight: read and validate what a run will read, before any model is loaded."""

    def prepared(self) -> bool:
        """Whether the rows can be read without building anything first (a toy world not built yet cannot:
        preflight then leaves the checks that need them to the stage that builds it)."""
        return True

    def gold(self) -> GoldReward | None:
        """The true reward, when the data has one."""
        return None

    def judge_preference(self) -> Callable[[str, str], float] | None:
        """The data's own judge, P(second completion preferred), when it comes with one (eval.judge=toy)."""
        return None

    def judge_score(self) -> Callable[[str], float] | None:
        """The data's own judge as a pointwise score of a completion, when it has one (the toy world's judge
        is Bradley-Terry on such a score): onpolicy.judge=toy ranks sampled completions by it."""
        return None

    def lm_eval_tasks(self) -> dict[str, Path]:
        """{shipped task name: its documents file} for lm-eval tasks whose documents come from this data (the
        files exist once the data is prepared: the toy world writes them when it is built)."""
        return {}


class ModelSource(ABC):
    """The reference (SFT) model: where its folder is, how models of its family load, what the manifest
    says."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    @abstractmethod
    def reference(self) -> Path:
        """The reference model's folder (built, converted or downloaded first when needed)."""

    def check(self) -> None:  # noqa: B027  (optional: a source with nothing to check keeps it)
        """Preflight: the model can be found, without loading it (UnavailableError when only this machine
        lacks it)."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records of the reference model."""
        m = self.spec.model
        return {"source": m.source, "path": m.path, "revision": m.revision}

    def load(self, path: Path | str) -> tuple[Any, Any]:
        """(model in eval mode, tokenizer) from a saved folder of this model family, with the run's dtype and
        attention implementation: every stage loads models here, so they are alike in all of them."""
        return load_causal_lm(path, self.spec.model.dtype, self.spec.model.attn_implementation)


@dataclass(frozen=True)
class Sources:
    data: DataSource
    model: ModelSource
