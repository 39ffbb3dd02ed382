"""Each variant's best configuration under a stated selection rule. The report's intervals and paired
comparisons are bench.core.stats (mean_ci, paired_difference, seed_t_interval).

Intervals come from a two-level bootstrap over the per-prompt values the metrics stage writes
(per_prompt.jsonl): resample the seeds, then the prompts (the same prompt draw for every seed, since the
prompts are shared), so seed-to-seed variation (training and judge labels) and prompt sampling both count.
A paired comparison draws the same seeds and prompts for both variants, which removes the prompt difficulty
they share.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CONFIG_KEYS = ("variant", "beta", "lr", "dataset", "config_key")  # a configuration: everything but the seed


@dataclass(frozen=True)
class SelectionRule:
    """Pick, per variant, the configuration with the best mean over seeds of `metric` on `split`."""

    metric: str = "lc_win_rate"
    split: str = "val"
    maximize: bool = True

    def describe(self) -> str:
        best = "highest" if self.maximize else "lowest"
        return f"{best} {self.metric} on the {self.split} prompt split (mean over seeds)"


def select_best(runs: pd.DataFrame, rule: SelectionRule) -> pd.DataFrame:
    """One row per variant: its best configuration's keys, the selection score and the number of seeds.

    `runs` has one row per run with CONFIG_KEYS and the split metrics as columns '<split>/<metric>'. Only
    the rule's split is read, never the other one."""
    column = f"{rule.split}/{rule.metric}"
    if column not in runs.columns:
        known = sorted(c.split("/", 1)[1] for c in runs.columns if c.startswith(f"{rule.split}/"))
        known = [k for k in known if not k.endswith(("_se", "_ci_low", "_ci_high"))]
        if known:
            raise KeyError(
                f"no metric {rule.metric!r} on the {rule.split} split; --select one of: {', '.join(known)}"
            )
        raise KeyError(f"no {column} in the runs: their metrics predate the prompt splits (rerun metrics)")
    keys = [k for k in CONFIG_KEYS if k in runs.columns]
    grouped = runs.groupby(keys, dropna=False)[column].agg(["mean", "count"]).reset_index()
    grouped = grouped.rename(columns={"mean": "selection_score", "count": "seeds"})
    grouped = grouped.dropna(subset=["selection_score"])
    order = grouped.sort_values("selection_score", ascending=not rule.maximize, kind="stable")
    return order.groupby("variant", sort=True).head(1).reset_index(drop=True)
