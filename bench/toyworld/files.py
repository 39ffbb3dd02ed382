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


def labelled_lists(world: Path, seed: int, tau: float) -> list[dict[str, object]]:
    """The world's lists ranked by the judge with noise: each completion's score is the judge's score plus
    tau x a Gumbel draw (one per completion and seed), and the list is sorted by it. This is the judge's
    Plackett-Luce model at temperature tau, whose two-completion case is exactly the pairs' labels
    (P(a over b) = sigmoid((s_a - s_b) / tau)); the noisy scores are the list's `scores`."""
    rng = np.random.default_rng([seed, 8])
    rows = []
    for row in read_jsonl(world / "lists.jsonl"):
        noisy = [
            s + tau * g
            for s, g in zip(row["judge_scores"], rng.gumbel(size=len(row["judge_scores"])), strict=True)
        ]
        order = sorted(range(len(noisy)), key=lambda i: -noisy[i])
        rows.append(
            {
                "prompt": row["prompt"],
                "completions": [row["completions"][i] for i in order],
                "scores": [float(noisy[i]) for i in order],
            }
        )
    return rows


def heldout_prompts(world: Path) -> list[str]:
    """Evaluation prompts, disjoint from every training and fitting prompt of the world."""
    return [r["prompt"] for r in read_jsonl(world / "heldout_prompts.jsonl")]


def task_files(world: Path) -> dict[str, Path]:
    return {name: world / "tasks" / f"{name}.jsonl" for name in TASKS}
