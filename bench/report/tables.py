"""The report's tables as DataFrames of formatted cells, written as markdown, LaTeX (booktabs) and CSV.

full grid      every finished run on all evaluation prompts (± one standard error over prompts)
best           each variant's best configuration under the selection rule, reported on the other split:
               mean and 95% interval over seeds and prompts, lm-eval deltas against the reference (the
               alignment tax), and the paired comparison with the baseline variant
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.records import atomic_write_text
from bench.core.stats import mean_ci, paired_difference, seed_t_interval
from bench.report.collect import Study
from bench.report.stats import SelectionRule, select_best

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
# Metrics with a value per prompt (per_prompt.jsonl): intervals over seeds and prompts, paired comparisons
PER_PROMPT = ("win_rate", "gold_win_rate", "kl_seq", "length_tokens_mean")
COMPARED = ("win_rate", "gold_win_rate")  # the paired comparisons shown against the baseline


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _short(value: Any) -> str:
    if value is None or (not isinstance(value, str | bool) and pd.isna(value)):
        return ""
    return f"{value:g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def _interval(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]" if math.isfinite(low) else f"{mean:.3f}"


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
        shown[c.removeprefix("lm_eval/")] = cells
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
        intervals = {m: mean_ci(prompts, m) for m in PER_PROMPT if m in prompts.columns}
        lc = f"{report_split}/lc_win_rate"
        if lc in runs.columns:
            mean, low, high = seed_t_interval(list(runs[lc]))
            intervals["lc_win_rate"] = (mean, max(low, 0.0), min(high, 1.0))  # a rate
        for metric, (mean, low, high) in intervals.items():
            row[f"{report_split} {metric}"] = _interval(mean, low, high)
            num |= {f"{report_split} {metric}": mean, f"{report_split} {metric} ci_low": low}
            num[f"{report_split} {metric} ci_high"] = high
        for task in ("lm_eval/toy_nll/nll_per_token", "lm_eval/toy_mc/acc"):
            if task in runs.columns and task in study.reference:
                delta = float(runs[task].mean()) - float(study.reference[task])
                row[f"Δ {task.removeprefix('lm_eval/')} vs reference"] = f"{delta:+.3f}"
                num[f"delta {task.removeprefix('lm_eval/')} vs reference"] = delta
        if base_prompts is not None and sel["variant"] != base:
            for metric in COMPARED:
                if metric in prompts.columns:
                    d = paired_difference(prompts, base_prompts, metric)
                    p = f"p={d['p_value']:.3f}" if d["p_value"] > 0 else "p<0.001"  # 1000 resamples
                    row[f"Δ {metric} vs {base} [95% CI], p"] = (
                        f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}], {p}"
                    )
                    for key in ("diff", "ci_low", "ci_high", "p_value"):
                        num[f"{metric} vs {base} {key}"] = d[key]
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
