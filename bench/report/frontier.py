"""Variants compared at equal KL: each variant's upper frontier of a win rate against KL(policy || reference),
from all of its configurations and their evaluations over training, read at common KL budgets.

A point is one configuration at one evaluated step (the final model, or a step of eval.every_steps), its KL
(kl_seq, nats per sequence) and metric averaged over the configuration's seeds. The reference itself (KL 0,
its own win rates) starts every frontier. The upper frontier keeps the points no cheaper point beats; between
two of them the frontier is read by linear interpolation in KL, and past a variant's largest KL it is not
reached (never extrapolated). Intervals: a bootstrap over seeds (the same seed draw for every variant), the
whole frontier recomputed per draw; with fewer than three seeds seed variation is not estimated and the
interval says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.core.stats import percentile_interval
from bench.report.collect import Study

METRICS = ("win_rate", "lc_win_rate", "gold_win_rate")
DEFAULT_LEVELS = (0.25, 0.5, 1.0)  # default budgets: these fractions of the largest KL every variant reaches
MIN_SEEDS = 3  # below this, a bootstrap over seeds cannot estimate seed variation
GRID = 50  # KL values a dominance statement is checked at, over the shared range


def run_points(study: Study, metric: str) -> pd.DataFrame:
    """One row per (run, evaluated step): variant, config_key, seed, step, kl, value. Runs evaluated over
    training give every step (the curve's); others their final model."""
    rows = []
    curves = study.curves
    if not curves.empty and "split" in curves.columns:
        curves = curves[curves["split"].isna()]  # all prompts; the split rows sit beside them
    for _, run in study.runs.iterrows():
        traced = False
        if not curves.empty:
            wide = curves[curves["run_id"] == run["run_id"]].pivot_table(
                index="step", columns="metric", values="value"
            )
            if {"kl_seq", metric} <= set(wide.columns):
                for step, point in wide[wide.index > 0].iterrows():  # step 0 is the reference: the origin
                    rows.append((run["variant"], run["config_key"], run["seed"], int(step), point["kl_seq"],
                                 point[metric]))  # fmt: skip
                traced = True
        if not traced and metric in run and "kl_seq" in run and pd.notna(run[metric]):
            rows.append((run["variant"], run["config_key"], run["seed"], -1, run["kl_seq"], run[metric]))
    return pd.DataFrame(rows, columns=["variant", "config_key", "seed", "step", "kl", "value"])


def origin(study: Study, metric: str) -> float:
    """Where every frontier starts at KL 0: the reference's own value (1/2 against itself)."""
    return float(study.reference.get(metric, 0.5)) if study.reference else 0.5


def upper_frontier(
    kl: Sequence[float], value: Sequence[float], origin: float
) -> tuple[np.ndarray, np.ndarray]:
    """(KL, value) of the upper frontier: from (0, origin), each point whose value beats every cheaper one."""
    order = np.argsort(np.asarray(kl, dtype=float), kind="stable")
    ks, vs = [0.0], [origin]
    for k, v in zip(np.asarray(kl, dtype=float)[order], np.asarray(value, dtype=float)[order], strict=True):
        if math.isfinite(k) and math.isfinite(v) and v > vs[-1]:
            if k == ks[-1]:
                vs[-1] = v
            else:
                ks.append(k)
                vs.append(v)
    return np.array(ks), np.array(vs)


def read(frontier: tuple[np.ndarray, np.ndarray], budget: float, reach: float) -> float:
    """The frontier's value at `budget` nats (linear between its points); nan past `reach`, the variant's
    largest evaluated KL, since a frontier is never extrapolated."""
    ks, vs = frontier
    if budget > reach or budget < 0:
        return math.nan
    return float(np.interp(budget, ks, vs, right=vs[-1]))


def frontiers(points: pd.DataFrame, origin: float) -> dict[str, tuple[tuple[np.ndarray, np.ndarray], float]]:
    """{variant: (frontier, reach)} from per-run points, averaged over seeds per (configuration, step)."""
    means = points.groupby(["variant", "config_key", "step"])[["kl", "value"]].mean().reset_index()
    return {
        str(v): (upper_frontier(g["kl"], g["value"], origin), float(g["kl"].max()))
        for v, g in means.groupby("variant")
    }


def default_budgets(reaches: Sequence[float]) -> list[float]:
    """A few KL levels inside the range every variant reaches (fractions of the smallest of their largest
    KLs), rounded down to two significant digits so the largest stays inside."""
    shared = min(reaches, default=0.0)
    if shared <= 0:
        return []
    return [_round_down(shared * f) for f in DEFAULT_LEVELS]


def _round_down(x: float) -> float:
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return math.floor(x / scale) * scale


def equal_kl(
    study: Study,
    budgets: Sequence[float] | None = None,
    baseline: str | None = None,
    n: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[float]]:
    """(one row per variant and KL budget: each metric's frontier value, its bootstrap interval over seeds,
    and the share of the shared KL range where the variant's frontier lies above the baseline's; the budgets
    used). Unreached budgets are NaN with `reached` False."""
    per_metric = {m: run_points(study, m) for m in METRICS if m in study.runs.columns}
    if not per_metric:
        return pd.DataFrame(), []
    reaches = [reach for _, reach in frontiers(next(iter(per_metric.values())), 0.5).values()]
    budgets = list(budgets) if budgets else default_budgets(reaches)
    seeds = sorted(study.runs["seed"].dropna().unique())
    rng = np.random.default_rng(seed)
    # fewer seeds cannot show seed variation: no interval then, and the caption says so
    enough = len(seeds) >= MIN_SEEDS
    draws = [rng.choice(seeds, size=len(seeds), replace=True) for _ in range(n)] if enough else []
    rows: dict[tuple[str, float], dict[str, object]] = {}
    for metric, points in per_metric.items():
        start = origin(study, metric)
        fronts = frontiers(points, start)
        boot = [frontiers(_resample(points, d), start) for d in draws]
        shared = min(reach for _, reach in fronts.values())
        grid = np.linspace(0.0, shared, GRID)
        for variant, (front, reach) in fronts.items():
            above = _share_above(front, fronts.get(baseline or ""), grid) if baseline != variant else None
            for budget in budgets:
                row = rows.setdefault((variant, budget), {"variant": variant, "kl_budget": budget})
                row["reached"] = budget <= reach
                row["max_kl"] = reach
                row[metric] = read(front, budget, reach)
                samples = [read(b[variant][0], budget, b[variant][1]) for b in boot if variant in b]
                row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = percentile_interval(samples, level)
                if above is not None:
                    row[f"{metric}_above_{baseline}"] = above
    table = pd.DataFrame(list(rows.values()))
    return table.sort_values(["kl_budget", "variant"], kind="stable").reset_index(drop=True), budgets


def _resample(points: pd.DataFrame, seeds: np.ndarray) -> pd.DataFrame:
    """The points of the drawn seeds, a seed drawn twice counted twice."""
    return pd.concat([points[points["seed"] == s] for s in seeds], ignore_index=True)


def _share_above(
    front: tuple[np.ndarray, np.ndarray],
    other: tuple[tuple[np.ndarray, np.ndarray], float] | None,
    grid: np.ndarray,
) -> float | None:
    """The share of the shared KL range (`grid`) where this frontier lies above the other's."""
    if other is None or len(grid) == 0:
        return None
    mine = np.interp(grid, *front)
    theirs = np.interp(grid, *other[0])
    return float(np.mean(mine > theirs))


def seeds_note(study: Study) -> str:
    """What the intervals account for, given the study's number of seeds."""
    n = int(study.runs["seed"].nunique()) if not study.runs.empty else 0
    if n >= MIN_SEEDS:
        return f"95% intervals: a bootstrap over the {n} seeds"
    return f"{n} seed(s): seed variation is not estimated (an interval needs at least {MIN_SEEDS} seeds)"


def format_table(frame: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The equal-KL table as cells: value [interval] per metric, 'not reached (max KL x)' past a variant's
    largest KL, and the share of the shared range where its frontier lies above the baseline's."""
    out = []
    for _, row in frame.iterrows():
        cells: dict[str, object] = {
            "KL budget (nats/seq)": f"{row['kl_budget']:g}",
            "variant": row["variant"],
        }
        for metric in METRICS:
            if metric not in row:
                continue
            if not row["reached"]:
                cells[metric] = f"not reached (max KL {row['max_kl']:.3g})"
                continue
            low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None and math.isfinite(low) else ""
            cells[metric] = f"{row[metric]:.3f}{interval}"
            above = row.get(f"{metric}_above_{baseline}")
            if baseline and above is not None and not pd.isna(above):
                cells[f"{metric} frontier above {baseline}"] = f"{100 * above:.0f}% of the shared range"
        out.append(cells)
    return pd.DataFrame(out).fillna("")
