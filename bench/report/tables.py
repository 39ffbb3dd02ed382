"""The report's tables as DataFrames of formatted cells, written as markdown, LaTeX (booktabs) and CSV.

full grid      every finished run on all evaluation prompts (± one standard error over prompts)
best           each variant's best configuration under the selection rule, reported on the other split:
               mean and 95% interval over seeds and prompts (bench.report.stats: one method for every
               metric), lm-eval deltas against the reference (the alignment tax), and the paired comparison
               with the baseline variant
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.records import atomic_write_text
from bench.core.stats import Interval
from bench.report.collect import Study
from bench.report.stats import FITTED, SelectionRule, paired_interval, runs_interval, select_best
from bench.report.units import headed

# Columns of the full grid, in order; the CSV keeps every metric.
HEADLINE = (
    "win_rate",
    "lc_win_rate",
    "win_rate_hard",
    "gold_win_rate",
    "gold_reward_mean",
    "kl_seq",
    "kl_seq_k1",
    "kl_seq_k3",
    "length_tokens_mean",
    "length_ratio",
    "lm_eval/toy_nll/nll_per_token",
    "lm_eval/toy_mc/acc",
)
WITH_SE = ("win_rate", "gold_win_rate", "kl_seq", "kl_seq_k1")
# Metrics with per-prompt values (per_prompt.jsonl; pseudo-values for FITTED ones): the best table's intervals
PER_PROMPT = ("win_rate", "lc_win_rate", "gold_win_rate", "kl_seq", "length_tokens_mean")
COMPARED = ("win_rate", "lc_win_rate", "gold_win_rate")  # the paired comparisons shown against the baseline


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _short(value: Any) -> str:
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return ""
    return f"{value:g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def _interval(iv: Interval) -> str:
    if math.isnan(iv.mean):
        return ""
    return f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]" if math.isfinite(iv.low) else f"{iv.mean:.3f}"


def _p(p: float) -> str:
    return "" if math.isnan(p) else f"p={p:.3f}" if p >= 0.001 else "p<0.001"


def _fitted_mean(
    runs: pd.DataFrame, metric: str, split: str, seeds: list[object] | None = None
) -> float | None:
    """A FITTED metric's own value on a split, averaged over the runs' (or the given) seeds; None for a mean
    over prompts, whose per-prompt values give its centre."""
    column = f"{split}/{metric}"
    if metric not in FITTED or column not in runs.columns:
        return None
    chosen = runs if seeds is None else runs[runs["seed"].isin(seeds)]
    return float(chosen[column].mean())


def full_grid_numbers(study: Study) -> pd.DataFrame:
    """The full grid as numbers (the CSV): hyperparameters, integer seeds, each metric and its standard error
    in its own column."""
    frame = study.with_reference()
    columns = ["variant", *(c for c in study.shown_hyperparameters if c in frame.columns)]
    out = frame[columns].copy()
    out["seed"] = frame.get("seed", pd.Series(dtype=float)).astype("Int64")
    for c in (c for c in HEADLINE if c in frame.columns):
        out[c] = frame[c]
        if f"{c}_se" in frame.columns:
            out[f"{c}_se"] = frame[f"{c}_se"]
    return out


def full_grid(study: Study) -> pd.DataFrame:
    frame = study.with_reference()
    shown = pd.DataFrame({"variant": frame["variant"]})
    for column in study.shown_hyperparameters:
        shown[column] = frame.get(column, pd.Series([None] * len(frame))).map(_short)
    shown["seed"] = frame.get("seed", pd.Series(dtype=float)).map(
        lambda s: f"{int(s)}" if pd.notna(s) else ""
    )
    for c in (c for c in HEADLINE if c in frame.columns):
        se = frame[f"{c}_se"] if c in WITH_SE and f"{c}_se" in frame.columns else [None] * len(frame)
        cells = [_num(v) + (f" ± {s:.3f}" if isinstance(s, float) and math.isfinite(s) else "")
                 for v, s in zip(frame[c], se, strict=True)]  # fmt: skip
        shown[headed(c.removeprefix("lm_eval/"), c)] = cells
    return shown


def best_table(
    study: Study, rule: SelectionRule, baseline: str | None, report_split: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, numbers) of each variant's selected configuration, reported on `report_split` (never the
    selection's split). `numbers` is the CSV: one number a column (mean, interval bounds, p-value apart)."""
    if report_split == rule.split:
        raise ValueError("the best configurations must be reported on a different split than selected on")
    best = select_best(study.runs, rule)
    base = baseline if baseline in set(best["variant"]) else None
    base_prompts = _prompts(study, best, base, report_split) if base else None
    out, numbers = [], []
    for _, sel in best.iterrows():
        runs = study.runs[study.runs["config_key"] == sel["config_key"]]
        prompts = _prompts(study, best, sel["variant"], report_split)
        hyper = {c: runs[c].iloc[0] if c in runs else None for c in study.shown_hyperparameters}
        counts = {
            "configs": int(study.runs.loc[study.runs["variant"] == sel["variant"], "config_key"].nunique()),
            "seeds": int(sel["seeds"]),
        }
        selection = f"{rule.split} {rule.metric} (selection)"
        row: dict[str, Any] = {
            "variant": sel["variant"],
            **{c: _short(v) for c, v in hyper.items()},
            **counts,
        }
        row[selection] = _num(float(sel["selection_score"]))
        num: dict[str, Any] = {
            "variant": sel["variant"],
            **hyper,
            **counts,
            selection: float(sel["selection_score"]),
        }
        for metric in PER_PROMPT:
            iv = runs_interval(study, runs, metric, report_split)
            if math.isnan(iv.mean):  # a metric these runs do not have
                continue
            name = f"{report_split} {metric}"
            row[headed(name, metric)] = _interval(iv)
            num |= {name: iv.mean, f"{name} ci_low": iv.low, f"{name} ci_high": iv.high, f"{name} se": iv.se}
        for task in ("lm_eval/toy_nll/nll_per_token", "lm_eval/toy_mc/acc"):
            if task in runs.columns and task in study.reference:
                delta = float(runs[task].mean()) - float(study.reference[task])
                row[headed(f"Δ {task.removeprefix('lm_eval/')} vs reference", task)] = f"{delta:+.3f}"
                num[f"delta {task.removeprefix('lm_eval/')} vs reference"] = delta
        if base_prompts is not None and sel["variant"] != base:
            base_runs = study.runs[
                study.runs["config_key"] == best.loc[best["variant"] == base, "config_key"].iloc[0]
            ]
            for metric in (m for m in COMPARED if m in prompts.columns):
                shared = [s for s in runs["seed"] if s in set(base_runs["seed"])]
                mine, theirs = (_fitted_mean(r, metric, report_split, shared) for r in (runs, base_runs))
                center = None if mine is None or theirs is None else mine - theirs
                d = paired_interval(prompts, base_prompts, metric, center)
                row[f"Δ {metric} vs {base} [95% CI], p"] = (
                    f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}], {_p(d.p_value())}"
                    if math.isfinite(d.mean)
                    else ""
                )
                for key, value in (("diff", d.mean), ("ci_low", d.low), ("ci_high", d.high)):
                    num[f"{metric} vs {base} {key}"] = value
                num[f"{metric} vs {base} p_value"] = d.p_value()
        out.append(row)
        numbers.append(num)
    table = pd.DataFrame(out).fillna("")
    order = sorted(table["variant"], key=lambda v: (v != base, v))  # the baseline first, then by name
    frame = pd.DataFrame(numbers).set_index("variant").loc[order].reset_index()
    return table.set_index("variant").loc[order].reset_index(), frame


def _prompts(study: Study, best: pd.DataFrame, variant: str | None, split: str) -> pd.DataFrame:
    """Per-prompt values of a variant's selected configuration on one split."""
    key = best.loc[best["variant"] == variant, "config_key"].iloc[0]
    run_ids = set(study.runs.loc[study.runs["config_key"] == key, "run_id"])
    pp = study.per_prompt
    if pp.empty:
        return pp
    return pp[pp["run_id"].isin(run_ids) & (pp["split"] == split)]


def latex(frame: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table; LaTeX's special characters in cells and headers escaped."""
    body = frame.to_latex(index=False, escape=True, column_format="l" * len(frame.columns))
    body = body.replace("Δ", r"$\Delta$").replace("±", r"$\pm$").replace("β", r"$\beta$")
    return (
        "% needs \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n\\small\n"
        f"{body}\\caption{{{_tex_escape(caption)}}}\n\\label{{{label}}}\n\\end{{table}}\n"
    )


def _tex_escape(text: str) -> str:
    specials = (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"))
    for char, escaped in specials:
        text = text.replace(char, escaped)
    return text


def write_table(
    frame: pd.DataFrame, out: Path, name: str, caption: str, numbers: pd.DataFrame | None = None
) -> dict[str, Path]:
    """<name>.md, <name>.tex and <name>.csv, each written atomically; the CSV holds `numbers` (one number a
    cell) when given, else the same cells as the other two."""
    paths = {"md": out / f"{name}.md", "tex": out / f"{name}.tex", "csv": out / f"{name}.csv"}
    atomic_write_text(paths["md"], frame.to_markdown(index=False) + "\n")
    atomic_write_text(paths["tex"], latex(frame, caption, f"tab:{name}"))
    atomic_write_text(paths["csv"], (frame if numbers is None else numbers).to_csv(index=False))
    return paths
