"""Reading a built world's files: its preference pairs labelled by a run's seed, its held-out prompts, and the
documents of its lm-eval tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.core.records import read_jsonl

TASKS = ("toy_nll", "toy_mc")  # lm-eval tasks whose documents each world writes (YAMLs in bench/tasks/)


def labelled_pairs(world: Path, seed: int) -> list[dict[str, str]]:
    """The world's pairs labelled by its judge: chosen ~ Bernoulli(judge_p_a), one draw per pair and seed."""
    rng = np.random.default_rng([seed, 7])
    rows = []
    for pair in read_jsonl(world / "pairs.jsonl"):
        a_wins = rng.random() < pair["judge_p_a"]
        chosen, rejected = (
            (pair["completion_a"], pair["completion_b"])
            if a_wins
            else (pair["completion_b"], pair["completion_a"])
        )
        rows.append({"prompt": pair["prompt"], "chosen": chosen, "rejected": rejected})
    return rows


def heldout_prompts(world: Path) -> list[str]:
    """Evaluation prompts, disjoint from every training and fitting prompt of the world."""
    return [r["prompt"] for r in read_jsonl(world / "heldout_prompts.jsonl")]


def task_files(world: Path) -> dict[str, Path]:
    return {name: world / "tasks" / f"{name}.jsonl" for name in TASKS}
