"""Each variant's best configuration under a stated selection rule, and the report's one interval method.

Every interval of the report is bench.core.stats.crossed_interval over a configuration's seeds x prompts
matrix of per-prompt values (per_prompt.jsonl; the LC win rate's are jackknife pseudo-values, centred at its
fitted value): seed-to-seed variation (training, judge labels, evaluation samples) and prompt sampling both
count, and with fewer than MIN_SEEDS seeds the interval is over prompts only and the caption says so. A
paired comparison takes the same formula over the (seed, prompt) differences of two configurations, which
removes the prompt difficulty and seed effects they share.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.core.stats import MIN_SEEDS, NO_INTERVAL, Interval, crossed_interval
from bench.report.collect import Study

CONFIG_KEYS = ("variant", "beta", "lr", "dataset", "config_key")  # a configuration: everything but the seed
RATES = ("win_rate", "win_rate_hard", "lc_win_rate", "gold_win_rate")  # fractions: intervals kept in [0, 1]
# per_prompt.jsonl columns that hold jackknife pseudo-values of a fitted statistic rather than its own
# per-prompt values: they give an interval's spread, the statistic's fitted value its centre
FITTED = ("lc_win_rate",)


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


def seeds_note(study: Study) -> str:
    """What the intervals account for, given the study's number of seeds."""
    n = int(study.runs["seed"].nunique()) if not study.runs.empty else 0
    how = "t intervals over seeds and prompts (crossed random effects, Satterthwaite degrees of freedom)"
    if n >= MIN_SEEDS:
        return f"95% {how}, {n} seeds"
    return (
        f"{n} seed(s): seed variation is not estimated (it needs at least {MIN_SEEDS} seeds); the 95% "
        "intervals are over prompts for these seeds only"
    )


def prompt_matrix(prompts: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seeds x prompt ids of one configuration's per-prompt values (rows of per_prompt.jsonl)."""
    if prompts.empty or metric not in prompts.columns:
        return pd.DataFrame()
    return prompts.pivot_table(index="seed", columns="prompt_id", values=metric, aggfunc="mean")


def _bounded(metric: str, interval: Interval) -> Interval:
    return interval.clipped(0.0, 1.0) if metric in RATES else interval


def config_interval(
    prompts: pd.DataFrame, metric: str, center: float | None = None, level: float = 0.95
) -> Interval:
    """A configuration's mean of `metric` and its interval over seeds and prompts; `center`: a fitted
    statistic's own value (FITTED metrics), the pseudo-values giving only the spread."""
    matrix = prompt_matrix(prompts, metric)
    if matrix.empty:
        return NO_INTERVAL
    return _bounded(metric, crossed_interval(matrix.to_numpy(dtype=float), level, center))


def paired_interval(
    a: pd.DataFrame, b: pd.DataFrame, metric: str, center: float | None = None, level: float = 0.95
) -> Interval:
    """a minus b over the seeds and prompts both have, paired by (seed, prompt), with its interval (and
    Interval.p_value for the test of no difference)."""
    ma, mb = prompt_matrix(a, metric), prompt_matrix(b, metric)
    if ma.empty or mb.empty:
        return NO_INTERVAL
    seeds = [s for s in ma.index if s in mb.index]
    prompts = [p for p in ma.columns if p in mb.columns]
    if not seeds or not prompts:
        return NO_INTERVAL
    diff = ma.loc[seeds, prompts].to_numpy(dtype=float) - mb.loc[seeds, prompts].to_numpy(dtype=float)
    return crossed_interval(diff, level, center)


def point_matrix(study: Study, metric: str, config_key: str, step: int) -> pd.DataFrame:
    """Seeds x prompt ids of a configuration at one evaluated step (-1: its final models), from the final
    per_prompt.jsonl or steps/step-N/'s. Runs without per-prompt values at that step are left out; none at all
    gives one column of the runs' own values, so seeds alone can still give an interval."""
    runs = study.runs[study.runs["config_key"] == config_key]
    frames, fallback = [], {}
    for _, run in runs.iterrows():
        rows = _prompts_at(study, str(run["run_id"]), step)
        if rows is not None and metric in rows.columns:
            frames.append(rows.assign(seed=run["seed"]))
        fallback[run["seed"]] = _value_at(study, run, metric, step)
    if frames:
        return prompt_matrix(pd.concat(frames, ignore_index=True), metric)
    return pd.DataFrame({"run": fallback}).dropna()


def _final_step(study: Study, run_id: str) -> int | None:
    curves = study.curves
    if curves.empty:
        return None
    steps = curves.loc[curves["run_id"] == run_id, "step"]
    return int(steps.max()) if len(steps) else None


def _prompts_at(study: Study, run_id: str, step: int) -> pd.DataFrame | None:
    steps = study.step_prompts
    if step >= 0 and not steps.empty:
        rows = steps[(steps["run_id"] == run_id) & (steps["step"] == step)]
        if len(rows):
            return rows
    if step < 0 or step == _final_step(study, run_id):
        pp = study.per_prompt
        return pp[pp["run_id"] == run_id] if not pp.empty else None
    return None


def _value_at(study: Study, run: pd.Series, metric: str, step: int) -> float:
    if step < 0 or step == _final_step(study, str(run["run_id"])):
        return float(run.get(metric, float("nan")))
    c = study.curves
    hit = c[(c["run_id"] == run["run_id"]) & (c["step"] == step) & (c["metric"] == metric)]
    if "split" in c.columns:
        hit = hit[hit["split"].isna()]
    return float(hit["value"].iloc[0]) if len(hit) else float("nan")


def runs_interval(
    study: Study, runs: pd.DataFrame, metric: str, split: str | None = None, level: float = 0.95
) -> Interval:
    """The interval of `metric` over the given runs (one configuration's seeds), on all evaluation prompts or
    on one prompt split: their per-prompt values (a FITTED metric centred at the runs' own mean), else, for
    runs without per-prompt values of it, their per-run values as one column (seeds alone)."""
    column = f"{split}/{metric}" if split else metric
    pp = study.per_prompt
    prompts = pp[pp["run_id"].isin(set(runs["run_id"]))] if not pp.empty else pp
    if split and not prompts.empty:
        prompts = prompts[prompts["split"] == split]
    center = float(runs[column].mean()) if metric in FITTED and column in runs else None
    if metric in prompts.columns and prompts[metric].notna().any():
        return config_interval(prompts, metric, center, level)
    if column not in runs:
        return NO_INTERVAL
    values = pd.DataFrame({"seed": runs["seed"], "prompt_id": "all", metric: runs[column]})
    return config_interval(values, metric, None, level)
