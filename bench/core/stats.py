"""The statistics every part of the harness shares: means with standard errors over prompts, ratio
estimators, percentile bootstrap intervals over prompts, and the report's two-level (seeds, prompts) bootstrap
and paired comparisons. Metrics, the judge's win rates and the report all call these, so an interval means the
same thing everywhere.

Units: a sample of per-prompt values (the samples of one prompt are averaged first: samples that share a
prompt are not independent). Bootstraps resample prompts with replacement (and seeds, in the two-level one);
intervals are percentile intervals of the resampled statistic over its finite resamples. Written by hand:
scipy's bootstrap resamples one level and does not pair across two frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def percentile_interval(samples: ArrayLike, level: float) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles of the finite resampled statistics; (nan, nan) when
    none is finite."""
    values = np.asarray(samples, dtype=float)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and its standard error (sample sd / sqrt(n)); (nan, nan) when empty, se nan for one value."""
    x = np.asarray(list(values), dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def ratio_se(num: Iterable[float], den: Iterable[float]) -> tuple[float, float]:
    """sum(num) / sum(den) over prompts and its delta-method (ratio-estimator) standard error.

    R = mean(a) / mean(b); se(R) = sd(a_i - R b_i) / (sqrt(n) mean(b)). Used where each prompt gives a
    numerator and a denominator (KL and tokens, policy and reference lengths), neither of them fixed.
    """
    a, b = np.asarray(list(num), dtype=float), np.asarray(list(den), dtype=float)
    n = len(a)
    if n == 0 or b.sum() == 0:
        return math.nan, math.nan
    r = float(a.sum() / b.sum())
    if n == 1:
        return r, math.nan
    return r, float((a - r * b).std(ddof=1) / (math.sqrt(n) * b.mean()))


def bootstrap_ci(
    per_prompt_values: ArrayLike,
    statistic: Callable[[np.ndarray], float],
    n: int,
    level: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over prompts.

    per_prompt_values: one entry per prompt, a number or a row of numbers (shape (P,) or (P, k), so a ratio
    of two per-prompt quantities resamples both together). Draws `n` resamples of P prompts with replacement
    (numpy's default_rng(seed): the same prompt sets for a given (seed, P)) and returns the (1 - level) / 2
    and (1 + level) / 2 quantiles of the statistic. (nan, nan) when n is 0 or there are fewer than 2 prompts.
    """
    values = np.asarray(per_prompt_values, dtype=float)
    prompts = len(values)
    if n <= 0 or prompts < 2:
        return math.nan, math.nan
    index = np.random.default_rng(seed).integers(0, prompts, size=(n, prompts))
    return percentile_interval([statistic(values[i]) for i in index], level)


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
    """(mean, ci_low, ci_high) of a metric over seeds and prompts: a two-level percentile bootstrap over a
    frame of per-prompt values (columns seed, prompt_id, metric) that resamples the seeds, then the prompts
    (one prompt draw for every seed: the prompts are shared)."""
    matrix, _, _ = _prompt_matrix(per_prompt, metric)
    if matrix.size == 0 or np.isnan(matrix).all():
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = _resampled_means(matrix, *_draws(matrix.shape[0], matrix.shape[1], n, rng))
    low, high = percentile_interval(samples, level)
    return float(np.nanmean(matrix)), low, high


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
    low, high = percentile_interval(samples, level)
    tail = min((samples <= 0).mean(), (samples >= 0).mean())
    return {
        "diff": float(np.nanmean(diff)),
        "ci_low": low,
        "ci_high": high,
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
