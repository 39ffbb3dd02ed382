"""Variants compared at equal KL: each variant's upper frontier of a win rate against KL(policy || reference),
from all of its configurations and their evaluations over training, read at common KL budgets.

A point is one configuration at one evaluated step (the final model, or a step of eval.every_steps), its KL
(kl_seq, nats per sequence) and metric averaged over the configuration's seeds. The reference itself (KL 0,
its own win rates) starts every frontier. The upper frontier keeps the points no cheaper point beats; between
two of them the frontier is read by linear interpolation in KL, and past a variant's largest KL it is not
reached (never extrapolated).

Intervals: the value at a budget is w A + (1 - w) B for the two frontier points around it (or one point), so
its per-(seed, prompt) values are w a[s, p] + (1 - w) b[s, p] from the points' per_prompt.jsonl (the final
model's, or steps/step-N/'s), and it gets the report's one interval over seeds and prompts
(bench.core.stats.crossed_interval; LC through its jackknife pseudo-values). With fewer than MIN_SEEDS seeds
seed variation is not estimated and the caption says so. The interval is for the frontier's points as chosen:
choosing them on the same evaluations (the upper envelope) adds an optimism it does not include.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.core.stats import NO_INTERVAL, Interval, crossed_interval
from bench.report.collect import Study
from bench.report.stats import point_matrix
from bench.report.units import headed

METRICS = ("win_rate", "lc_win_rate", "gold_win_rate")
DEFAULT_LEVELS = (0.25, 0.5, 1.0)  # default budgets: these fractions of the largest KL every variant reaches
GRID = 50  # KL values a dominance statement is checked at, over the shared range
# A budget below this share of a variant's first evaluated model's KL is read mostly off the straight line
# from the reference to that model, not from a model near it, and the table marks the value: a variant
# evaluated only at its final model at 4 nats has no model near 1 nat, so its value there is a line, and a
# variant with a real model at 1 nat looks better or worse than it by construction.
FROM_REFERENCE = 0.5


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


def frontier_indices(kl: Sequence[float], value: Sequence[float], origin: float) -> list[int]:
    """Indices of the upper frontier's points in order of KL, -1 for the origin (0, origin): each point whose
    value beats every cheaper one (at equal KL, the best)."""
    k_all, v_all = np.asarray(kl, dtype=float), np.asarray(value, dtype=float)
    chosen, ks, vs = [-1], [0.0], [origin]
    for i in np.argsort(k_all, kind="stable"):
        k, v = k_all[i], v_all[i]
        if math.isfinite(k) and math.isfinite(v) and v > vs[-1]:
            if k == ks[-1]:
                chosen[-1], vs[-1] = int(i), v
            else:
                chosen.append(int(i))
                ks.append(k)
                vs.append(v)
    return chosen


def upper_frontier(
    kl: Sequence[float], value: Sequence[float], origin: float
) -> tuple[np.ndarray, np.ndarray]:
    """(KL, value) of the upper frontier: from (0, origin), each point whose value beats every cheaper one."""
    k_all, v_all = np.asarray(kl, dtype=float), np.asarray(value, dtype=float)
    chosen = frontier_indices(kl, value, origin)
    ks = np.array([0.0 if i < 0 else k_all[i] for i in chosen])
    return ks, np.array([origin if i < 0 else v_all[i] for i in chosen])


def weights_at(ks: np.ndarray, budget: float) -> list[tuple[int, float]]:
    """[(frontier position, weight)] whose weighted values give the frontier's linear reading at `budget`
    (within its KL range; past its last point, that point alone)."""
    if budget >= ks[-1]:
        return [(len(ks) - 1, 1.0)]
    right = int(np.searchsorted(ks, budget, side="right"))
    left = right - 1
    w = (ks[right] - budget) / (ks[right] - ks[left])
    return [(left, float(w)), (right, float(1 - w))]


def read(frontier: tuple[np.ndarray, np.ndarray], budget: float, reach: float) -> float:
    """The frontier's value at `budget` nats (linear between its points); nan past `reach`, the variant's
    largest evaluated KL, since a frontier is never extrapolated."""
    ks, vs = frontier
    if budget > reach or budget < 0:
        return math.nan
    return float(np.interp(budget, ks, vs, right=vs[-1]))


def _means(points: pd.DataFrame) -> pd.DataFrame:
    return points.groupby(["variant", "config_key", "step"])[["kl", "value"]].mean().reset_index()


def frontiers(points: pd.DataFrame, origin: float) -> dict[str, tuple[tuple[np.ndarray, np.ndarray], float]]:
    """{variant: (frontier, reach)} from per-run points, averaged over seeds per (configuration, step)."""
    return {
        str(v): (upper_frontier(g["kl"], g["value"], origin), float(g["kl"].max()))
        for v, g in _means(points).groupby("variant")
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
    level: float = 0.95,
) -> tuple[pd.DataFrame, list[float]]:
    """(one row per variant and KL budget: each metric's frontier value, its interval over seeds and prompts,
    and the share of the shared KL range where the variant's frontier lies above the baseline's; the budgets
    used). Unreached budgets are NaN with `reached` False."""
    per_metric = {m: run_points(study, m) for m in METRICS if m in study.runs.columns}
    if not per_metric:
        return pd.DataFrame(), []
    reaches = [reach for _, reach in frontiers(next(iter(per_metric.values())), 0.5).values()]
    budgets = list(budgets) if budgets else default_budgets(reaches)
    if not budgets:  # some variant never left the reference (largest KL <= 0): no shared level to read at
        return pd.DataFrame(), []
    rows: dict[tuple[str, float], dict[str, object]] = {}
    for metric, points in per_metric.items():
        start = origin(study, metric)
        fronts = frontiers(points, start)
        shared = min(reach for _, reach in fronts.values())
        grid = np.linspace(0.0, shared, GRID)
        means = _means(points)
        for variant, (front, reach) in fronts.items():
            above = _share_above(front, fronts.get(baseline or ""), grid) if baseline != variant else None
            mine = means[means["variant"] == variant].reset_index(drop=True)
            chosen = frontier_indices(mine["kl"], mine["value"], start)
            for budget in budgets:
                row = rows.setdefault((variant, budget), {"variant": variant, "kl_budget": budget})
                row["reached"] = budget <= reach
                row["max_kl"] = reach
                row[metric] = value = read(front, budget, reach)
                measured = [k for k in front[0] if k > 0]
                row[f"{metric}_from_reference"] = bool(measured) and budget < FROM_REFERENCE * min(measured)
                iv = _interval(study, metric, mine, chosen, front[0], budget, value, start, level)
                row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = iv.low, iv.high
                row[f"{metric}_seed_variation"] = iv.seed_variation
                if above is not None:
                    row[f"{metric}_above_{baseline}"] = above
    table = pd.DataFrame(list(rows.values()))
    return table.sort_values(["kl_budget", "variant"], kind="stable").reset_index(drop=True), budgets


def _interval(
    study: Study,
    metric: str,
    means: pd.DataFrame,
    chosen: list[int],
    ks: np.ndarray,
    budget: float,
    value: float,
    start: float,
    level: float,
) -> Interval:
    """The interval of a frontier's reading at `budget` (module docstring): the weighted per-(seed, prompt)
    values of the frontier points around it, centred at the reading. NaN past the variant's reach."""
    if not math.isfinite(value):
        return NO_INTERVAL
    parts: list[tuple[pd.DataFrame | None, float]] = []
    for position, weight in weights_at(ks, budget):
        index = chosen[position]
        if index < 0:  # the origin: the reference against itself, no spread
            parts.append((None, weight))
            continue
        point = means.iloc[index]
        parts.append((point_matrix(study, metric, point["config_key"], int(point["step"])), weight))
    frames = [m for m, _ in parts if m is not None]
    if not frames:
        return crossed_interval([[value]], level)
    seeds = sorted(set.intersection(*(set(m.index) for m in frames)))
    prompts = sorted(set.intersection(*(set(m.columns) for m in frames)), key=str)
    total = np.zeros((len(seeds), len(prompts)))
    for matrix, weight in parts:
        total += weight * (start if matrix is None else matrix.loc[seeds, prompts].to_numpy(dtype=float))
    return crossed_interval(total, level, center=value) if total.size else NO_INTERVAL


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


def gold_optimum(study: Study) -> pd.DataFrame:
    """Per variant, where its gold win rate peaks over all its configurations and evaluated steps (means over
    seeds): the gold-optimal KL, the gold and judged win rates there, and both at the variant's largest KL.
    A gold win rate that falls past its optimum while the judged one keeps rising is over-optimisation of the
    judge (Gao et al. 2023, arXiv:2210.10760; Rafailov et al. 2024, arXiv:2406.02900). Empty without gold or
    judged win rates."""
    if not {"gold_win_rate", "win_rate"} <= set(study.runs.columns):
        return pd.DataFrame()
    keys = ["variant", "config_key", "step"]
    gold = _means(run_points(study, "gold_win_rate")).rename(columns={"value": "gold"})
    judged = _means(run_points(study, "win_rate")).drop(columns="kl").rename(columns={"value": "judged"})
    points = gold.merge(judged, on=keys)
    labels = study.runs.drop_duplicates("config_key").set_index("config_key")["configuration"]
    rows = []
    for variant, group in points.groupby("variant"):
        peak = group.loc[group["gold"].idxmax()]
        far = group.loc[group["kl"].idxmax()]
        rows.append(
            {
                "variant": variant,
                "configuration": labels.get(peak["config_key"], ""),
                "step": int(peak["step"]),
                "gold_optimal_kl": float(peak["kl"]),
                "peak_gold_win_rate": float(peak["gold"]),
                "win_rate_at_peak": float(peak["judged"]),
                "max_kl": float(far["kl"]),
                "gold_win_rate_at_max_kl": float(far["gold"]),
                "win_rate_at_max_kl": float(far["judged"]),
            }
        )
    return pd.DataFrame(rows)


def format_table(frame: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The equal-KL table as cells: value [interval] per metric (value* when it is read off the line from the
    reference: FROM_REFERENCE), 'not reached (max KL x)' past a variant's largest KL, and the share of the
    shared range where its frontier lies above the baseline's."""
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
                cells[headed(metric, metric)] = f"not reached (max KL {row['max_kl']:.3g})"
                continue
            low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None and math.isfinite(low) else ""
            line = "*" if row.get(f"{metric}_from_reference") is True else ""
            cells[headed(metric, metric)] = f"{row[metric]:.3f}{line}{interval}"
            above = row.get(f"{metric}_above_{baseline}")
            if baseline and above is not None and not pd.isna(above):
                cells[f"{metric} frontier above {baseline}"] = f"{100 * above:.0f}% of the shared range"
        out.append(cells)
    return pd.DataFrame(out).fillna("")


def format_optimum(numbers: pd.DataFrame) -> pd.DataFrame:
    """gold_optimum's frame as cells with the units in the headers."""
    return pd.DataFrame(
        {
            "variant": numbers["variant"],
            "configuration at the optimum": numbers["configuration"],
            "step": [("final" if s < 0 else str(s)) for s in numbers["step"]],
            "gold-optimal KL (nats/seq)": numbers["gold_optimal_kl"].map("{:.2f}".format),
            "peak gold win rate": numbers["peak_gold_win_rate"].map("{:.3f}".format),
            "judged win rate at the optimum": numbers["win_rate_at_peak"].map("{:.3f}".format),
            "largest KL (nats/seq)": numbers["max_kl"].map("{:.2f}".format),
            "gold win rate at the largest KL": numbers["gold_win_rate_at_max_kl"].map("{:.3f}".format),
            "judged win rate at the largest KL": numbers["win_rate_at_max_kl"].map("{:.3f}".format),
        }
    )
