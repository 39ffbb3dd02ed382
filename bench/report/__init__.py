"""`bench report <study>`: one tidy table over a study's run folders, written as markdown and CSV, plus plots.

The reference model is its own row (from results/<study>/_reference/). Unfinished and failed runs are listed,
never silently dropped. Issue 6 extends this (seed statistics, significance, LaTeX, published comparisons).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.records import atomic_write_text, read_json, read_jsonl

# Columns of the headline table, in order; the CSV keeps every metric.
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


def _metrics(folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in read_jsonl(folder / "metrics.jsonl"):
        out[row["metric"]] = row["value"]
        if row.get("stderr") is not None:
            out[f"{row['metric']}_se"] = row["stderr"]
    return out


def collect(study_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(one row per finished run plus reference rows, notes on unfinished or failed runs)."""
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for folder in sorted(p for p in study_dir.iterdir() if (p / "manifest.json").exists()):
        if not (folder / "metrics.jsonl").exists():
            status = read_json(folder / "status.json") if (folder / "status.json").exists() else {}
            error = (status.get("error") or "").splitlines()[:1]
            notes.append(
                f"{folder.name}: {status.get('state', 'pending')} at stage {status.get('stage')} {error}"
            )
            continue
        manifest = read_json(folder / "manifest.json")
        cfg = manifest["config"]
        rows.append(
            {
                # evaluations of existing models (bench evaluate) carry a label, not a trained variant
                "variant": manifest.get("label") or cfg["choices"]["loss"],
                "beta": cfg["loss"].get("beta"),
                "lr": cfg["train"]["learning_rate"],
                "seed": cfg["seed"],
                "dataset": cfg["choices"]["dataset"],
                "run_id": folder.name,
                **_metrics(folder),
            }
        )
    for folder in sorted((study_dir / "_reference").glob("*/metrics.jsonl")):
        rows.append(
            {"variant": "reference", "run_id": f"_reference/{folder.parent.name}", **_metrics(folder.parent)}
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["variant", "beta", "lr", "seed"], na_position="first", kind="stable")
    return frame.reset_index(drop=True), notes


def _cell(value: Any, se: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f"{text} ± {se:.3f}" if isinstance(se, float) and not math.isnan(se) else text


def markdown_table(frame: pd.DataFrame) -> str:
    cols = [c for c in HEADLINE if c in frame.columns]
    shown = pd.DataFrame(
        {
            "variant": frame["variant"],
            "beta": frame["beta"].map(lambda b: "" if b is None or pd.isna(b) else f"{b:g}"),
            "lr": frame["lr"].map(lambda b: "" if b is None or pd.isna(b) else f"{b:g}"),
            "seed": frame["seed"].map(lambda b: "" if b is None or pd.isna(b) else str(int(b))),
        }
    )
    for c in cols:
        se = frame[f"{c}_se"] if c in WITH_SE and f"{c}_se" in frame.columns else [None] * len(frame)
        shown[c.removeprefix("lm_eval/")] = [_cell(v, s) for v, s in zip(frame[c], se, strict=True)]
    return shown.to_markdown(index=False)


def write_report(study_dir: Path) -> str:
    """Write report/results.{md,csv} and report/frontier.{png,pdf}; return the markdown table."""
    frame, notes = collect(study_dir)
    out = study_dir / "report"
    if frame.empty:
        text = f"no finished runs in {study_dir}\n" + "".join(f"- {n}\n" for n in notes)
        atomic_write_text(out / "results.md", text)
        return text
    table = markdown_table(frame)
    body = [f"# Study `{study_dir.name}`\n", table, ""]
    body.append(
        "win rates are against the reference model's samples (soft judge preference; ± one standard error "
        "over prompts); KL in nats per sequence (kl_seq: exact per-step KL along policy samples)."
    )
    if notes:
        body += ["", "Not in the table (unfinished or failed):", *[f"- {n}" for n in notes]]
    text = "\n".join(body) + "\n"
    atomic_write_text(out / "results.md", text)
    atomic_write_text(out / "results.csv", frame.to_csv(index=False))
    from bench.report.plots import plot_frontier

    plot_frontier(frame, out)
    return text
