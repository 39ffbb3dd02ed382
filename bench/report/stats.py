"""Statistics of a study's report: each variant's best configuration under a stated selection rule, means
with intervals across seeds and prompts, and paired comparisons between variants.

Intervals come from a two-level bootstrap over the per-prompt values the metrics stage writes
(per_prompt.jsonl): resample the seeds, then the prompts (the same prompt draw for every seed, since the
prompts are shared), so seed-to-seed variation (training and judge labels) and prompt sampling both count.
A paired comparison draws the same seeds and prompts for both variants, which removes the prompt difficulty
they share. Written by hand: scipy's bootstrap resamples one level and does not pair across two frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


def _prompt_matrix(per_prompt: pd.DataFrame, metric: str) -> tuple[np.ndarray, list[int], list[object]]:
    """(seeds x prompts matrix of a metric, seeds, prompt ids); prompts missing for a seed are NaN."""
    wide = per_prompt.pivot_table(index="seed", columns="prompt_id", values=metric, aggfunc="mean")
    return wide.to_numpy(dtype=float), list(wide.index), list(wide.columns)


def _draws(n_seeds: int, n_prompts: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    seeds = rng.integers(0, n_seeds, size=(n, n_seeds))
    prompts = rng.integers(0, n_prompts, size=(n, n_prompts))
    return seeds, prompts


def _resampled_means(matrix: np.ndarray, seeds: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    out = np.empty(len(seeds))
    for b in range(len(seeds)):
        out[b] = np.nanmean(matrix[np.ix_(seeds[b], prompts[b])])
    return out


def mean_ci(
    per_prompt: pd.DataFrame, metric: str, n: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of a metric over seeds and prompts (two-level percentile bootstrap)."""
    matrix, _, _ = _prompt_matrix(per_prompt, metric)
    if matrix.size == 0 or np.isnan(matrix).all():
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = _resampled_means(matrix, *_draws(matrix.shape[0], matrix.shape[1], n, rng))
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(np.nanmean(matrix)), float(low), float(high)


def paired_difference(
    a: pd.DataFrame, b: pd.DataFrame, metric: str, n: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean of a minus b over the seeds and prompts both have, its interval, and a two-sided bootstrap p-value
    (twice the smaller tail of the resampled differences around 0). Pairs are (seed, prompt)."""
    ma, seeds_a, prompts_a = _prompt_matrix(a, metric)
    mb, seeds_b, prompts_b = _prompt_matrix(b, metric)
    seeds = [s for s in seeds_a if s in seeds_b]
    prompts = [p for p in prompts_a if p in prompts_b]
    nan = {"diff": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "pairs": 0}
    if not seeds or not prompts:
        return nan
    rows_a = [seeds_a.index(s) for s in seeds]
    rows_b = [seeds_b.index(s) for s in seeds]
    cols_a = [prompts_a.index(p) for p in prompts]
    cols_b = [prompts_b.index(p) for p in prompts]
    diff = ma[np.ix_(rows_a, cols_a)] - mb[np.ix_(rows_b, cols_b)]
    rng = np.random.default_rng(seed)
    samples = _resampled_means(diff, *_draws(diff.shape[0], diff.shape[1], n, rng))
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    tail = min((samples <= 0).mean(), (samples >= 0).mean())
    return {
        "diff": float(np.nanmean(diff)),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(min(1.0, 2 * tail)),
        "pairs": int(np.isfinite(diff).sum()),
    }


def seed_t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) across seeds with a t interval, for metrics without per-prompt values (the LC win
    rate is a fitted GLM); one seed gives no interval."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan, math.nan
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)
