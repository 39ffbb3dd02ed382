"""Study plots (PNG and PDF, matplotlib), one function per figure, each returning the files it wrote.

frontier      win rate and gold win rate against KL per variant: the DPO paper's reward-KL frontier, traced
              by the evaluations over training when the runs have them (eval.every_steps), else by the runs
judge_gold    judged against gold win rate: where the judge and the truth disagree (toy world)
length        length ratio against judged win rate: how much of a win is length
sensitivity   win rates against beta per variant, one line per learning rate
training      reward margin, preference accuracy, chosen and rejected log-probs over training steps
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.collect import Study
from bench.report.frontier import frontiers, gold_optimum, origin, run_points
from bench.report.stats import runs_interval

KL_LABEL = "KL(policy || reference), nats per sequence"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        tmp = p.with_name(f".{p.stem}.tmp{p.suffix}")
        fig.savefig(tmp, dpi=120)
        tmp.replace(p)
    _plt().close(fig)
    return paths


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend only where something is labelled (a study without, e.g., length metrics draws none)."""
    if ax.get_legend_handles_labels()[0] or kwargs.get("handles"):
        ax.legend(**kwargs)


def _reference_star(ax: Any, study: Study, x: str, y: str) -> None:
    if x in study.reference and y in study.reference:
        ax.scatter([study.reference[x]], [study.reference[y]], marker="*", s=160, color="black",
                   label="reference", zorder=4, clip_on=False)  # fmt: skip


MARKERS = "osD^vPXh<>p*"  # one per configuration of a variant (cycled past eleven)
LEGEND_COLUMNS = 3


def _markers(study: Study) -> dict[str, str]:
    """{config_key: marker}: a distinct marker per configuration within its variant."""
    out: dict[str, str] = {}
    for _, group in study.runs.groupby("variant"):
        for i, key in enumerate(dict.fromkeys(group["config_key"])):
            out[str(key)] = MARKERS[i % len(MARKERS)]
    return out


def _colors(study: Study) -> dict[str, str]:
    return {v: f"C{i}" for i, v in enumerate(sorted(study.runs["variant"].unique()))}


def plot_frontier(study: Study, out: Path) -> list[Path]:
    """Per variant (color) and configuration (marker): the final models (large), their evaluations over
    training (small, joined in step order), the variant's upper frontier (dashed) and, in the gold panel, its
    gold-optimal KL (dotted)."""
    plt = _plt()
    rows = math.ceil((study.runs["config_key"].nunique() + 5) / LEGEND_COLUMNS)  # legend rows under the axes
    legend_in = 0.18 * rows + 0.3
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6 + legend_in))
    runs, curves = study.runs, study.curves
    colors, markers = _colors(study), _markers(study)
    optimum = gold_optimum(study)
    for ax, metric, title in zip(axes, ("win_rate", "gold_win_rate"), ("The judge's view", "The gold view"),
                                 strict=True):  # fmt: skip
        traced = chained = False
        for _, run in runs.iterrows():
            color, marker = colors[run["variant"]], markers[str(run["config_key"])]
            if not curves.empty:
                c = curves[curves["run_id"] == run["run_id"]]
                if "split" in c.columns:  # all prompts only (the split rows are beside them)
                    c = c[c["split"].isna()]
                wide = c.pivot_table(index="step", columns="metric", values="value")
                if {"kl_seq", metric} <= set(wide.columns):
                    ax.plot(wide["kl_seq"], wide[metric], color=color, alpha=0.45, lw=0.8, marker=marker,
                            ms=3, clip_on=False)  # fmt: skip
                    traced = True
            if metric in run and "kl_seq" in run and pd.notna(run[metric]):
                ax.scatter([run["kl_seq"]], [run[metric]], color=color, marker=marker, s=42, zorder=3,
                           edgecolors="black", linewidths=0.4, clip_on=False)  # fmt: skip
        _frontier_lines(ax, study, metric, colors)
        chained = _round_chains(ax, runs, metric, colors) or chained
        _reference_star(ax, study, "kl_seq", metric)
        if metric == "gold_win_rate" and not optimum.empty:
            for _, row in optimum.iterrows():
                ax.axvline(row["gold_optimal_kl"], color=colors.get(row["variant"], "grey"), ls=":", lw=1.2)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=1.0)  # variants' KL spans orders of magnitude; 0 stays on the axis
        ax.set_xlim(left=-0.15)  # the reference at KL 0 drawn whole
        ax.margins(x=0.04, y=0.06)
        ax.set(xlabel=KL_LABEL, ylabel=f"{metric.replace('_', ' ')} vs reference", title=title)
        ax.grid(alpha=0.3)
        if ax is axes[0]:
            handles = _frontier_legend(plt, study, traced, not optimum.empty, chained)
            fig.legend(handles=handles, loc="lower center", ncol=LEGEND_COLUMNS, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, legend_in / (4.6 + legend_in), 1, 1))
    return _save(fig, out, "frontier")


def _round_chains(ax: Any, runs: pd.DataFrame, metric: str, colors: dict[str, str]) -> bool:
    """Each round joined to the round it continues (a chain's path over rounds: the frontier over rounds),
    solid and thin in the later round's color; True when any was drawn."""
    if "after" not in runs or runs["after"].isna().all() or metric not in runs or "kl_seq" not in runs:
        return False
    by_id = runs.set_index("run_id")
    drawn = False
    for _, run in runs[runs["after"].notna()].iterrows():
        if run["after"] in by_id.index:
            before = by_id.loc[run["after"]]
            ax.annotate(
                "",
                xy=(run["kl_seq"], run[metric]),
                xytext=(before["kl_seq"], before[metric]),
                arrowprops={"arrowstyle": "->", "color": colors.get(run["variant"], "grey"), "lw": 1.0},
            )
            drawn = True
    return drawn


def _frontier_legend(plt: Any, study: Study, traced: bool, optimum: bool, chained: bool = False) -> list[Any]:
    """Legend entries: each configuration (color and marker), then what the line styles and sizes mean."""
    line = plt.Line2D
    handles = _configuration_handles(plt, study)
    handles.append(line([], [], color="grey", marker="o", ls="", ms=6, label="final model (one per seed)"))
    if traced:
        handles.append(line([], [], color="grey", marker="o", ms=3, lw=0.8, alpha=0.6,
                            label="evaluations over training"))  # fmt: skip
    handles.append(line([], [], color="grey", ls="--", lw=1.5, label="variant's upper frontier"))
    if optimum:
        handles.append(line([], [], color="grey", ls=":", lw=1.2, label="gold-optimal KL"))
    if chained:
        handles.append(line([], [], color="grey", lw=1.0, label="round r-1 -> round r (a chain)"))
    handles.append(line([], [], color="black", marker="*", ls="", ms=10, label="reference"))
    return handles


def _frontier_lines(ax: Any, study: Study, metric: str, colors: dict[str, str]) -> None:
    """Each variant's upper frontier (bench.report.frontier), dashed in the variant's color."""
    points = run_points(study, metric)
    if points.empty:
        return
    for variant, ((ks, vs), _) in frontiers(points, origin(study, metric)).items():
        ax.plot(ks, vs, color=colors.get(variant, "grey"), ls="--", lw=1.5)


def _configuration_handles(plt: Any, study: Study) -> list[Any]:
    """A legend entry per configuration: its variant's color and its own marker."""
    colors, markers = _colors(study), _markers(study)
    configs = study.runs.drop_duplicates("config_key")
    return [
        plt.Line2D([], [], color=colors[r["variant"]], marker=markers[str(r["config_key"])], ls="", ms=6,
                   label=str(r.get("configuration", r["variant"])))
        for _, r in configs.iterrows()
    ]  # fmt: skip


def plot_judge_vs_gold(study: Study, out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5.4))
    colors, markers = _colors(study), _markers(study)
    if {"win_rate", "gold_win_rate"} <= set(study.runs.columns):
        for _, run in study.runs.iterrows():
            ax.scatter([run["win_rate"]], [run["gold_win_rate"]], color=colors[run["variant"]],
                       marker=markers[str(run["config_key"])], clip_on=False)  # fmt: skip
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    _reference_star(ax, study, "win_rate", "gold_win_rate")
    ax.set(xlabel="judged win rate (fraction)", ylabel="gold win rate (fraction)", title="Judge vs truth",
           xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    ax.grid(alpha=0.3)
    handles = _configuration_handles(plt, study)
    handles.append(plt.Line2D([], [], color="grey", lw=0.8, ls="--", label="judge = gold"))
    handles.append(plt.Line2D([], [], color="black", marker="*", ls="", ms=10, label="reference"))
    _legend(ax, handles=handles, fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "judge_vs_gold")


def plot_length(study: Study, out: Path) -> list[Path]:
    """Win rate against length ratio per run: filled markers the raw win rate, hollow ones the LC win rate."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    colors, markers = _colors(study), _markers(study)
    for _, run in study.runs.iterrows():
        color, marker = colors[run["variant"]], markers[str(run["config_key"])]
        if pd.notna(run.get("length_ratio")) and pd.notna(run.get("win_rate")):
            ax.scatter([run["length_ratio"]], [run["win_rate"]], color=color, marker=marker, clip_on=False)
        if pd.notna(run.get("length_ratio")) and pd.notna(run.get("lc_win_rate")):
            ax.scatter([run["length_ratio"]], [run["lc_win_rate"]], facecolors="none", edgecolors=color,
                       marker=marker, clip_on=False)  # fmt: skip
    _reference_star(ax, study, "length_ratio", "win_rate")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.margins(0.06)
    ax.set(xlabel="length / reference length (tokens)", ylabel="win rate vs reference (fraction)",
           title="Length and win rate")  # fmt: skip
    ax.grid(alpha=0.3)
    handles = _configuration_handles(plt, study)
    handles.append(plt.Line2D([], [], color="grey", marker="o", ls="", label="judged (raw) win rate"))
    handles.append(plt.Line2D([], [], color="grey", marker="o", ls="", markerfacecolor="none",
                              label="LC win rate"))  # fmt: skip
    _legend(ax, handles=handles, fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "length")


def _axis(group: pd.DataFrame, candidates: list[str]) -> str | None:
    """The hyperparameter a variant's panel puts on its x-axis: beta when it varies, else the first numeric
    hyperparameter that varies, else the first numeric one the variant has."""
    numeric = [c for c in candidates if c in group and pd.to_numeric(group[c], errors="coerce").notna().all()]
    varying = [c for c in numeric if group[c].nunique() > 1]
    if "beta" in varying:
        return "beta"
    found = varying or numeric
    return found[0] if found else None


SENSITIVITY = (("win_rate", "-"), ("lc_win_rate", "-."), ("gold_win_rate", "--"))  # metric, line style


def plot_sensitivity(study: Study, out: Path) -> list[Path]:
    """Win rates (judged, LC and gold) against each variant's main hyperparameter with 95% intervals over
    seeds and prompts (bench.report.stats), one line per setting of its other varied hyperparameters (nothing
    averaged over but seeds), a panel per variant."""
    plt = _plt()
    columns = study.shown_hyperparameters
    variants = sorted(study.runs["variant"].unique())
    fig, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 3.8), squeeze=False)
    metrics = [(m, style) for m, style in SENSITIVITY if m in study.runs.columns]
    for ax, variant in zip(axes[0], variants, strict=True):
        group = study.runs[study.runs["variant"] == variant]
        x = _axis(group, [c for c in columns if group[c].notna().any()])
        if x is None:
            continue
        others = [
            c for c in columns if c != x and c in group and group[c].notna().any() and group[c].nunique() > 1
        ]
        settings = group.groupby(others, dropna=False) if others else [((), group)]
        for i, (key, lines) in enumerate(settings):  # a marker per setting, a color and line style per metric
            setting = ", ".join(f"{o}={_fmt(v)}" for o, v in zip(others, np.atleast_1d(key), strict=True))
            for j, (metric, style) in enumerate(metrics):
                xs = sorted(lines[x].unique())
                ivs = [runs_interval(study, lines[lines[x] == v], metric) for v in xs]
                mean = np.array([iv.mean for iv in ivs])
                err = np.array([[iv.mean - iv.low, iv.high - iv.mean] for iv in ivs]).T
                label = ", ".join(filter(None, [metric, setting]))
                ax.errorbar(xs, mean, yerr=np.nan_to_num(err), marker=MARKERS[i % len(MARKERS)], ls=style,
                            color=f"C{j}", capsize=3, ms=4, label=label)  # fmt: skip
        values = sorted(group[x].unique())
        if len(values) > 1 and min(values) > 0:
            ax.set_xscale("log")
        ax.set_xticks(values, [_fmt(v) for v in values])
        ax.minorticks_off()
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=x, ylabel="win rate vs reference (mean, 95% interval)", title=variant)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "sensitivity")


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def plot_training(study: Study, out: Path) -> list[Path]:
    plt = _plt()
    logs = study.train_logs
    # TRL's logged columns: title, y-axis label with its unit (rewards are the loss's implicit rewards)
    panels = (("rewards/margins", "reward margin", "chosen - rejected implicit reward"),
              ("rewards/accuracies", "preference accuracy", "fraction of pairs, chosen > rejected"),
              ("logps/chosen", "log p(chosen)", "nats per sequence"),
              ("logps/rejected", "log p(rejected)", "nats per sequence"))  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    colors, markers = _colors(study), _markers(study)
    runs = study.runs.set_index("run_id")
    for ax, (column, label, unit) in zip(axes, panels, strict=True):
        if not logs.empty and column in logs.columns:
            for run_id, log in logs.dropna(subset=[column]).groupby("run_id"):
                run = runs.loc[str(run_id)] if str(run_id) in runs.index else None
                color = "grey" if run is None else colors[run["variant"]]
                marker = None if run is None else markers[str(run["config_key"])]
                ax.plot(log["step"], log[column], color=color, alpha=0.7, lw=1, marker=marker, ms=4,
                        markevery=max(1, len(log) // 6))  # fmt: skip
        ax.set(xlabel="training step", ylabel=unit, title=label)
        ax.grid(alpha=0.3)
    _legend(axes[0], handles=_configuration_handles(plt, study), fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "training")


def plot_all(study: Study, out: Path) -> list[Path]:
    paths = plot_frontier(study, out) + plot_judge_vs_gold(study, out) + plot_length(study, out)
    if study.hyperparameters:
        paths += plot_sensitivity(study, out)
    return paths + plot_training(study, out)
