"""Slow tier: the over-optimisation study (sweeps/toy_overopt.yaml) as shipped. On dataset=toy_overopt the
judge misreads a negative word as praise; DPO learns the judge's taste and, pushed far enough, its gold win
rate rises and then falls by more than 0.10 while the judged win rate keeps rising, and the report marks the
gold-optimal KL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.report import collect_study
from bench.report.frontier import gold_optimum
from tests.helpers import REPO

pytestmark = pytest.mark.slow


def _curves(results: Path) -> pd.DataFrame:
    """Per configuration and evaluated step, the means over seeds of KL, gold and judged win rates."""
    study = collect_study(results / "toy_overopt")
    c = study.curves[study.curves["split"].isna()] if "split" in study.curves else study.curves
    c = c[c["metric"].isin(["kl_seq", "gold_win_rate", "win_rate"])]
    c = c.merge(study.runs[["run_id", "beta"]], on="run_id")
    return c.pivot_table(index=["beta", "step"], columns="metric", values="value").reset_index()


def test_dpo_over_optimises_the_misreading_judge_and_the_report_marks_the_gold_optimum(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    paths = [f"paths.results={results}", f"paths.scratch={tmp_path / 'scratch'}", "logging.wandb=false"]
    sweep = [
        sys.executable,
        "-m",
        "bench.cli",
        "sweep",
        "sweeps/toy_overopt.yaml",
        "launcher=local",
        "--wait",
    ]
    proc = subprocess.run([*sweep, *paths], cwd=REPO, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "6 done" in proc.stdout

    # over training steps: some configuration's gold win rate rises well above 1/2, then falls by >= 0.10
    curves = _curves(results)
    falls = []
    for beta, curve in curves.groupby("beta"):
        curve = curve.sort_values("step")
        peak = curve.loc[curve["gold_win_rate"].idxmax()]
        last = curve.iloc[-1]
        assert last["win_rate"] >= peak["win_rate"] - 0.01, f"beta {beta}: the judged win rate fell"
        if peak["gold_win_rate"] >= 0.6 and peak["step"] < last["step"]:
            falls.append(peak["gold_win_rate"] - last["gold_win_rate"])
    assert max(falls, default=0.0) >= 0.10, curves.to_string()

    # over betas and steps together (the gold win rate against KL): a peak, then a fall of >= 0.10 by the
    # largest KL, while the judged win rate there is higher than at the peak
    optimum = gold_optimum(collect_study(results / "toy_overopt")).iloc[0]
    assert optimum["gold_optimal_kl"] < optimum["max_kl"]
    assert optimum["peak_gold_win_rate"] - optimum["gold_win_rate_at_max_kl"] >= 0.10
    assert optimum["win_rate_at_max_kl"] > optimum["win_rate_at_peak"]

    report = [sys.executable, "-m", "bench.cli", "report", "toy_overopt", "--results", str(results)]
    proc = subprocess.run(report, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = results / "toy_overopt" / "report"
    marked = pd.read_csv(out / "gold_optimum.csv")
    assert marked.loc[0, "gold_optimal_kl"] == pytest.approx(optimum["gold_optimal_kl"])
    assert "## Gold-optimal KL" in (out / "report.md").read_text()
    assert (out / "frontier.png").stat().st_size > 10_000
