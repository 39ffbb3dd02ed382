"""Study plots (PNG and PDF, matplotlib), one function per figure, each returning the files it wrote.

frontier      win rate and gold win rate against KL per variant: the DPO paper's reward-KL frontier, traced
              by the evaluations over training when the runs have them (eval.every_steps), else by the runs
judge_gold    judged against gold win rate: where the judge and the truth disagree (toy world)
length        length ratio against judged win rate: how much of a win is length
sensitivity   win rates against beta per variant, one line per learning rate
training      reward margin, preference accuracy, chosen and rejected log-probs over training steps
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.report.collect import Study
from bench.report.frontier import frontiers, origin, run_points

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
                   label="reference", zorder=3)  # fmt: skip


def plot_frontier(study: Study, out: Path) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    runs, curves = study.runs, study.curves
    for ax, metric, title in zip(axes, ("win_rate", "gold_win_rate"), ("The judge's view", "The gold view"),
                                 strict=True):  # fmt: skip
        for i, (variant, group) in enumerate(runs.groupby("variant")):
            color = f"C{i}"
            traced = False
            if not curves.empty:
                for run_id in group["run_id"]:
                    c = curves[curves["run_id"] == run_id]
                    if "split" in c.columns:  # all prompts only (the split rows are beside them)
                        c = c[c["split"].isna()]
                    wide = c.pivot_table(index="step", columns="metric", values="value")
                    if {"kl_seq", metric} <= set(wide.columns):
                        ax.plot(wide["kl_seq"], wide[metric], color=color, alpha=0.5, lw=1, marker=".")
                        traced = True
            if metric in group and "kl_seq" in group:
                g = group.sort_values("kl_seq")
                ax.scatter(g["kl_seq"], g[metric], color=color, label=str(variant), zorder=2)
                if not traced and len(g) > 1:
                    ax.plot(g["kl_seq"], g[metric], color=color, alpha=0.6)
        _frontier_lines(ax, study, metric)
        _reference_star(ax, study, "kl_seq", metric)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("symlog", linthresh=1.0)  # variants' KL spans orders of magnitude; 0 stays on the axis
        ax.set_xlim(left=0.0)
        ax.set(xlabel=KL_LABEL, ylabel=f"{metric.replace('_', ' ')} vs reference", title=title)
        ax.grid(alpha=0.3)
    _legend(axes[0], fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "frontier")


def _frontier_lines(ax: Any, study: Study, metric: str) -> None:
    """Each variant's upper frontier (bench.report.frontier), dashed in the variant's color."""
    points = run_points(study, metric)
    if points.empty:
        return
    colors = {v: f"C{i}" for i, v in enumerate(sorted(study.runs["variant"].unique()))}
    for variant, ((ks, vs), _) in frontiers(points, origin(study, metric)).items():
        ax.plot(ks, vs, color=colors.get(variant, "grey"), ls="--", lw=1.5, label=f"{variant} frontier")


def plot_judge_vs_gold(study: Study, out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for variant, group in study.runs.groupby("variant"):
        if {"win_rate", "gold_win_rate"} <= set(group.columns):
            ax.scatter(group["win_rate"], group["gold_win_rate"], label=str(variant))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="judge = gold")
    _reference_star(ax, study, "win_rate", "gold_win_rate")
    ax.set(xlabel="judged win rate", ylabel="gold win rate", title="Judge vs truth", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "judge_vs_gold")


def plot_length(study: Study, out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.4))
    for i, (variant, group) in enumerate(study.runs.groupby("variant")):
        if {"length_ratio", "win_rate"} <= set(group.columns):
            ax.scatter(group["length_ratio"], group["win_rate"], color=f"C{i}", label=f"{variant} (raw)")
        if {"length_ratio", "lc_win_rate"} <= set(group.columns):
            ax.scatter(group["length_ratio"], group["lc_win_rate"], color=f"C{i}", marker="x",
                       label=f"{variant} (LC)")  # fmt: skip
    _reference_star(ax, study, "length_ratio", "win_rate")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="length / reference length", ylabel="win rate vs reference", title="Length and win rate")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7)
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


def plot_sensitivity(study: Study, out: Path) -> list[Path]:
    """Win rates against each variant's main hyperparameter, one line per setting of its other varied
    hyperparameters (nothing averaged over but seeds), a panel per variant."""
    plt = _plt()
    columns = study.shown_hyperparameters
    variants = sorted(study.runs["variant"].unique())
    fig, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 3.8), squeeze=False)
    metrics = [m for m in ("win_rate", "gold_win_rate") if m in study.runs.columns]
    for ax, variant in zip(axes[0], variants, strict=True):
        group = study.runs[study.runs["variant"] == variant]
        x = _axis(group, [c for c in columns if group[c].notna().any()])
        if x is None:
            continue
        others = [
            c for c in columns if c != x and c in group and group[c].notna().any() and group[c].nunique() > 1
        ]
        for key, lines in group.groupby(others, dropna=False) if others else [((), group)]:
            setting = ", ".join(f"{o}={_fmt(v)}" for o, v in zip(others, np.atleast_1d(key), strict=True))
            for metric in metrics:
                g = lines.groupby(x)[metric].mean().sort_index()
                style = "-" if metric == "win_rate" else "--"
                ax.plot(
                    g.index, g.values, marker="o", ls=style, label=", ".join(filter(None, [metric, setting]))
                )
        values = sorted(group[x].unique())
        if len(values) > 1 and min(values) > 0:
            ax.set_xscale("log")
        ax.set_xticks(values, [_fmt(v) for v in values])
        ax.minorticks_off()
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=x, ylabel="win rate (mean over seeds)", title=variant)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "sensitivity")


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def plot_training(study: Study, out: Path) -> list[Path]:
    plt = _plt()
    logs = study.train_logs
    panels = (("rewards/margins", "reward margin"), ("rewards/accuracies", "preference accuracy"),
              ("logps/chosen", "log p(chosen)"), ("logps/rejected", "log p(rejected)"))  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    colors = {v: f"C{i}" for i, v in enumerate(sorted(study.runs["variant"].unique()))}
    variant_of = dict(zip(study.runs["run_id"], study.runs["variant"], strict=True))
    for ax, (column, label) in zip(axes, panels, strict=True):
        if not logs.empty and column in logs.columns:
            for run_id, log in logs.dropna(subset=[column]).groupby("run_id"):
                variant = variant_of.get(str(run_id))
                ax.plot(log["step"], log[column], color=colors.get(variant, "grey"), alpha=0.7, lw=1)
        ax.set(xlabel="step", title=label)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, label=v) for v, c in colors.items()]
    _legend(axes[0], handles=handles, fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "training")


def plot_all(study: Study, out: Path) -> list[Path]:
    paths = plot_frontier(study, out) + plot_judge_vs_gold(study, out) + plot_length(study, out)
    if study.hyperparameters:
        paths += plot_sensitivity(study, out)
    return paths + plot_training(study, out)
