"""The statistics every part of the harness shares.

Within one run (metrics.jsonl): means with standard errors over prompts, ratio estimators, and percentile
bootstrap intervals over prompts (the samples of one prompt are averaged first: samples that share a prompt
are not independent).

Across seeds (the report): `crossed_interval`, the one interval every metric of a configuration gets. Its
input is a seeds x prompts matrix of per-prompt values: the metric's own per-prompt values when it is a mean
over prompts (win rate, gold win rate, KL, length), or jackknife pseudo-values when it is not (the LC win
rate, a fitted GLM: `jackknife_pseudo_values`), so a fitted statistic goes through the same formula. Seeds and
prompts are crossed (every seed evaluates the same prompts), so a value is

    y[s, p] = mu + a[s] + b[p] + e[s, p]      (seed effect, prompt effect, interaction)

and the variance of the grand mean is var(a)/S + var(b)/P + var(e)/(SP). The two-way random-effects ANOVA
estimates it without bias as (MS_seed + MS_prompt - MS_residual) / (SP), with Satterthwaite's degrees of
freedom for a t interval. A percentile bootstrap over 2 or 3 seeds cannot do this: resampling 3 values sees
2/3 of their variance and has no t correction, so its 95% intervals cover far less often (the coverage test,
tests/core/test_stats.py, measures both). With fewer than MIN_SEEDS seeds, seed variation cannot be
estimated: the interval is over prompts only, for these seeds, and says so (`Interval.seed_variation`).
Written by hand: statsmodels' mixed models fit by (RE)ML and give no Satterthwaite interval for the grand
mean of a crossed design, and scipy has neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
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


MIN_SEEDS = 3  # below this, seed-to-seed variation is not estimated (2 seeds give one degree of freedom)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and prompts with its t interval. `seed_variation`: whether seed-to-seed variation is
    in it (MIN_SEEDS seeds or more); otherwise it is an interval over prompts for the seeds run."""

    mean: float
    low: float
    high: float
    se: float
    df: float
    seeds: int
    prompts: int
    seed_variation: bool

    def clipped(self, lower: float, upper: float) -> Interval:
        """The interval within a metric's range (a rate's [0, 1]); mean and se unchanged."""
        return replace(self, low=max(self.low, lower), high=min(self.high, upper))

    def p_value(self) -> float:
        """Two-sided p-value of mean = 0 (for a paired difference) from the same t distribution."""
        from scipy import stats

        if not (math.isfinite(self.se) and self.se > 0 and math.isfinite(self.df)):
            return math.nan if not math.isfinite(self.mean) or self.mean == 0 else 0.0
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df))


NO_INTERVAL = Interval(math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0, False)


def crossed_interval(
    values: ArrayLike, level: float = 0.95, center: float | None = None, min_seeds: int = MIN_SEEDS
) -> Interval:
    """The t interval of the grand mean of a seeds x prompts matrix (module docstring); `center` replaces the
    matrix's mean as the estimate (a fitted statistic's own value, its pseudo-values giving only the spread).

    Prompts some seed lacks (NaN) are dropped: the design must be crossed. One prompt: an interval over seeds
    (when there are min_seeds of them). The variance estimate is floored at the residual's share, since no
    variance component is negative."""
    from scipy import stats

    y = np.atleast_2d(np.asarray(values, dtype=float))
    y = y[:, np.isfinite(y).all(axis=0)] if y.size else y
    n_seeds, n_prompts = y.shape
    if y.size == 0:
        return NO_INTERVAL
    mean = float(y.mean()) if center is None else float(center)
    seed_means, prompt_means = y.mean(axis=1), y.mean(axis=0)
    with_seeds = n_seeds >= min_seeds
    if n_prompts < 2:  # no prompt spread to see: seeds alone, when there are enough
        if not with_seeds:
            return Interval(mean, math.nan, math.nan, math.nan, math.nan, n_seeds, n_prompts, False)
        var, df = float(seed_means.var(ddof=1)) / n_seeds, float(n_seeds - 1)
    elif not with_seeds:  # these seeds' prompts: E[MS_prompt] / (S P) = var(b)/P + var(e)/(S P)
        var, df = float(prompt_means.var(ddof=1)) / n_prompts, float(n_prompts - 1)
    else:
        ms_seed = n_prompts * float(seed_means.var(ddof=1))
        ms_prompt = n_seeds * float(prompt_means.var(ddof=1))
        resid = y - seed_means[:, None] - prompt_means[None, :] + y.mean()
        df_resid = (n_seeds - 1) * (n_prompts - 1)
        ms_resid = float((resid**2).sum()) / df_resid
        total = ms_seed + ms_prompt - ms_resid
        if total <= ms_resid:  # every component estimated at zero but the residual
            total, df = ms_resid, float(df_resid)
        else:  # Satterthwaite: the df of a linear combination of mean squares
            parts = ms_seed**2 / (n_seeds - 1) + ms_prompt**2 / (n_prompts - 1) + ms_resid**2 / df_resid
            df = total**2 / parts if parts > 0 else math.inf
        var = total / (n_seeds * n_prompts)
    se = math.sqrt(max(var, 0.0))
    half = float(stats.t.ppf((1 + level) / 2, df)) * se if se > 0 else 0.0
    return Interval(mean, mean - half, mean + half, se, df, n_seeds, n_prompts, with_seeds)


def jackknife_pseudo_values(estimate: Callable[[np.ndarray], float], n: int) -> np.ndarray:
    """Delete-one jackknife pseudo-values of a statistic over n units (prompts): n T - (n - 1) T_(-i), where
    `estimate(keep)` computes it on the units `keep` (a boolean mask) marks. Their mean is the jackknife
    estimate and their spread its standard error, so a fitted statistic's pseudo-values go through the same
    crossed_interval as a mean's per-prompt values (for a mean they are the values themselves)."""
    every = np.ones(n, dtype=bool)
    full = estimate(every)
    out = np.empty(n)
    for i in range(n):
        keep = every.copy()
        keep[i] = False
        out[i] = n * full - (n - 1) * estimate(keep)
    return out
