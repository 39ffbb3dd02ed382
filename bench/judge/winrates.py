"""Win rates of the policy (output_2) over the reference (output_1) from annotations, with uncertainty.

Every prompt's n_policy x n_reference sample pairs are judged (docs/toyworld.md, Preference data): pairs of
one prompt share samples, so they are not independent. Standard errors therefore average the pairs of a prompt
first and then go across prompts, and the bootstrap resamples prompt ids with replacement, keeping all pairs
of a drawn prompt. Intervals are percentile intervals of the resampled statistic; the LC GLM is refitted per
resample at a fixed C (bench.judge.lc).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.stats import jackknife_pseudo_values, mean_se, percentile_interval
from bench.judge.lc import lc_data, lc_fit, lc_refit
from bench.judge.references import load_gamed_csv

if TYPE_CHECKING:
    import pandas as pd

LENGTH_SLOPE_RIDGE = 1e-3  # keeps the slope finite when a judge separates perfectly by length


def preferences(annotations: pd.DataFrame) -> np.ndarray:
    """P(policy wins) per pair: AlpacaEval's preference minus 1 (1 = reference wins, 2 = policy wins, 1.5 =
    tie, soft in between; 0 is AlpacaEval's legacy tie)."""
    pref = annotations["preference"].astype(float).replace({0.0: 1.5})
    if pref.isna().any() or not pref.between(1, 2).all():
        raise ValueError("win_rates: every preference must be a number in [1, 2] (or 0 for a tie)")
    return pref.to_numpy() - 1


def _prompt_codes(annotations: pd.DataFrame) -> np.ndarray:
    """0..n_prompts-1 per pair; rows without prompt_id count as one prompt each."""
    import pandas as pd

    if "prompt_id" not in annotations:
        return np.arange(len(annotations))
    codes, _ = pd.factorize(annotations["prompt_id"], sort=True)
    return np.asarray(codes)


def _per_prompt_mean(values: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n) / np.bincount(codes, minlength=n)


def win_rates(
    annotations: pd.DataFrame,
    bootstrap: int = 0,
    ci_level: float = 0.95,
    seed: int = 0,
    gamed_csv: str | Path | None = None,
) -> dict[str, Any]:
    """Soft and hard (tau -> 0) win rates with standard errors over prompts, the LC win rate, bootstrap CIs.

    Keys: win_rate, win_rate_stderr, win_rate_hard, win_rate_hard_stderr, lc_win_rate, lc_win_rate_stderr
    (bootstrap standard deviation; NaN without bootstrap: AlpacaEval's own is 0 by construction), lc_glm
    (length_controlled_v1 or length_controlled_minimal), and <rate>_ci_low / <rate>_ci_high for win_rate,
    win_rate_hard and lc_win_rate at `ci_level` from `bootstrap` resamples of prompts (NaN when bootstrap=0).
    Fractions in [0, 1]. gamed_csv: a local df_gamed.csv; v1 is used when it is given and the annotations
    carry alpaca_eval_index for exactly its instructions (run_judge adds it when the prompts are
    AlpacaEval's).
    """
    pref = preferences(annotations)
    hard = np.where(pref > 0.5, 1.0, np.where(pref == 0.5, 0.5, 0.0))
    codes = _prompt_codes(annotations)
    n = int(codes.max()) + 1 if len(codes) else 0
    soft_pp, hard_pp = _per_prompt_mean(pref, codes, n), _per_prompt_mean(hard, codes, n)

    gamed = None
    if gamed_csv is not None:
        gamed = load_gamed_csv(gamed_csv)
    data = lc_data(annotations, gamed)
    lc, C = lc_fit(data)
    out: dict[str, Any] = {
        "win_rate": float(soft_pp.mean()),
        "win_rate_stderr": mean_se(soft_pp)[1],
        "win_rate_hard": float(hard_pp.mean()),
        "win_rate_hard_stderr": mean_se(hard_pp)[1],
        "lc_win_rate": lc,
        "lc_win_rate_stderr": math.nan,
        "lc_glm": data.glm,
    }
    names = ("win_rate", "win_rate_hard", "lc_win_rate")
    out |= {f"{m}_ci_{side}": math.nan for m in names for side in ("low", "high")}
    if bootstrap <= 0 or n == 0:
        return out

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=bootstrap).astype(float)  # (B, n) draws per prompt
    samples = {"win_rate": counts @ soft_pp / n, "win_rate_hard": counts @ hard_pp / n}
    if math.isfinite(lc):
        samples["lc_win_rate"] = np.array([lc_refit(data, C, row[codes]) for row in counts])
        out["lc_win_rate_stderr"] = float(np.nanstd(samples["lc_win_rate"], ddof=1))
    for name, values in samples.items():
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = percentile_interval(values, ci_level)
    return out


def lc_pseudo_values(annotations: pd.DataFrame, gamed_csv: str | Path | None = None) -> dict[Any, float]:
    """{prompt_id: jackknife pseudo-value of the LC win rate}: n LC - (n - 1) LC without that prompt, each
    refitted at the C the full fit chose (bench.judge.lc.lc_refit). The LC win rate is a fitted GLM, not a
    mean over prompts; its pseudo-values let the report's one interval method
    (bench.core.stats.crossed_interval) treat it like every other metric. NaN for every prompt when the GLM
    cannot be fitted."""
    codes = _prompt_codes(annotations)
    ids = sorted(annotations["prompt_id"].unique()) if "prompt_id" in annotations else list(range(len(codes)))
    data = lc_data(annotations, None if gamed_csv is None else load_gamed_csv(gamed_csv))
    lc, C = lc_fit(data)
    if not math.isfinite(lc) or len(ids) < 2:
        return {pid: math.nan for pid in ids}
    values = jackknife_pseudo_values(lambda keep: lc_refit(data, C, keep[codes].astype(float)), len(ids))
    return {pid: float(v) for pid, v in zip(ids, values, strict=True)}


def _soft_logistic_slope(x: np.ndarray, p: np.ndarray, ridge: float = LENGTH_SLOPE_RIDGE) -> float:
    """Slope of a logistic regression of soft labels p on x (with intercept), by damped Newton.

    A tiny ridge on the slope only keeps it finite for a judge that separates perfectly by length.
    """
    design = np.column_stack([np.ones_like(x), x])
    penalty = np.diag([0.0, ridge])

    def objective(beta: np.ndarray) -> float:
        eta = design @ beta
        nll = np.sum(np.logaddexp(0, eta) - p * eta)
        return float(nll + 0.5 * beta @ penalty @ beta)

    beta = np.zeros(2)
    for _ in range(100):
        mu = 1 / (1 + np.exp(-(design @ beta)))
        grad = design.T @ (mu - p) + penalty @ beta
        hess = design.T @ (design * (mu * (1 - mu))[:, None]) + penalty
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        t, current = 1.0, objective(beta)
        while objective(beta - t * step) > current + 1e-12 and t > 1e-8:
            t /= 2
        beta = beta - t * step
        if np.max(np.abs(t * step)) < 1e-10:
            break
    return float(beta[1])


def judge_length_stats(
    annotations: pd.DataFrame, rates: dict[str, Any] | None = None, gamed_csv: str | Path | None = None
) -> dict[str, float]:
    """How much the judge's preference follows length (characters, AlpacaEval's unit; policy minus reference).

    judge_length_slope: logistic-regression slope of P(policy wins) on len(output_2) - len(output_1), in
    log-odds per 100 characters; length_win_correlation: Pearson correlation of that length difference with
    P(policy wins); lc_minus_raw: lc_win_rate - win_rate (from `rates`, i.e. win_rates' result, when given,
    else recomputed without bootstrap; pass the same gamed_csv as to win_rates).
    """
    p = preferences(annotations)
    diff = (annotations["output_2"].str.len() - annotations["output_1"].str.len()).to_numpy(float)
    if rates is None:
        rates = win_rates(annotations, bootstrap=0, gamed_csv=gamed_csv)
    varies = len(diff) > 1 and np.std(diff) > 0
    return {
        "judge_length_slope": _soft_logistic_slope(diff / 100, p) if varies else math.nan,
        "length_win_correlation": float(np.corrcoef(diff, p)[0, 1]) if varies and np.std(p) > 0 else math.nan,
        "lc_minus_raw": float(rates["lc_win_rate"] - rates["win_rate"]),
    }
