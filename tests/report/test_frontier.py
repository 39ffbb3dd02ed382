"""Equal-KL comparison on hand-made run folders with known frontiers: the upper frontier, its reading at KL
budgets (linear between its points, never extrapolated), the default budgets, the dominance share, and the
seed bootstrap (only with three seeds or more)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.report import collect_study, write_report
from bench.report.frontier import default_budgets, equal_kl, read, upper_frontier

# variant -> beta -> (KL, win rate) of that configuration, the same for every seed unless noise is added
POINTS = {
    "dpo": {1.0: (1.0, 0.6), 2.0: (2.0, 0.7), 4.0: (4.0, 0.65)},  # the last is dominated; reach 4
    "ipo": {0.5: (0.5, 0.58), 3.0: (3.0, 0.72)},  # reach 3
}


def _study(root: Path, seeds: tuple[int, ...], noise: float = 0.0) -> Path:
    rng = np.random.default_rng(0)
    for variant, configs in POINTS.items():
        for beta, (kl, win) in configs.items():
            for seed in seeds:
                folder = root / f"{variant}-b{beta:g}-s{seed}"
                folder.mkdir(parents=True)
                cfg = {"choices": {"loss": variant, "dataset": "toy"}, "loss": {"beta": beta},
                       "train": {"learning_rate": 1e-3}, "seed": seed}  # fmt: skip
                (folder / "manifest.json").write_text(json.dumps({"config": cfg}))
                (folder / "status.json").write_text(json.dumps({"state": "done"}))
                value = win + noise * rng.standard_normal()
                rows = [{"metric": "kl_seq", "value": kl}, {"metric": "win_rate", "value": value}]
                (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_the_upper_frontier_keeps_only_points_no_cheaper_point_beats() -> None:
    ks, vs = upper_frontier([2.0, 1.0, 4.0], [0.7, 0.6, 0.65], origin=0.5)
    assert ks.tolist() == [0.0, 1.0, 2.0] and vs.tolist() == [0.5, 0.6, 0.7]
    assert read((ks, vs), 1.5, reach=4.0) == pytest.approx(0.65)  # linear between frontier points
    assert read((ks, vs), 3.0, reach=4.0) == pytest.approx(0.7)  # flat to the variant's reach
    assert math.isnan(read((ks, vs), 5.0, reach=4.0))  # never extrapolated
    assert default_budgets([4.0, 3.0]) == [0.75, 1.5, 3.0]
    assert default_budgets([0.1643]) == [0.041, 0.082, 0.16]  # rounded down: the largest stays inside


def test_variants_are_read_at_common_budgets_with_the_share_above_the_baseline(tmp_path: Path) -> None:
    study = collect_study(_study(tmp_path / "s", seeds=(0, 1)))
    table, budgets = equal_kl(study, baseline="dpo")
    assert budgets == [0.75, 1.5, 3.0]
    at = {(r.variant, r.kl_budget): r for r in table.itertuples()}
    assert at[("dpo", 0.75)].win_rate == pytest.approx(0.5 + 0.75 * 0.1)
    assert at[("ipo", 1.5)].win_rate == pytest.approx(0.58 + 0.14 * (1.0 / 2.5))
    assert at[("dpo", 3.0)].win_rate == pytest.approx(0.7) and at[("ipo", 3.0)].reached
    # ipo lies above dpo on [0, 13/11) and again on (2.64, 3]: 51% of [0, 3] (50 grid points)
    assert at[("ipo", 0.75)].win_rate_above_dpo == pytest.approx((13 / 11 + 3 - 0.148 / 0.056) / 3, abs=0.03)
    assert math.isnan(at[("dpo", 0.75)].win_rate_ci_low)  # 2 seeds: no interval, and the caption says why
    past, _ = equal_kl(study, budgets=[3.5], baseline="dpo")
    row = past[past["variant"] == "ipo"].iloc[0]
    assert not row["reached"] and math.isnan(row["win_rate"])


def test_three_seeds_give_a_seed_bootstrap_interval_and_the_report_opens_with_equal_kl(
    tmp_path: Path,
) -> None:
    root = _study(tmp_path / "s", seeds=(0, 1, 2), noise=0.02)
    table, _ = equal_kl(collect_study(root), baseline="dpo")
    finite = table.dropna(subset=["win_rate_ci_low"])
    assert len(finite) == len(table[table["reached"]]) > 0
    assert (finite["win_rate_ci_low"] <= finite["win_rate"] + 1e-12).all()
    assert (finite["win_rate"] <= finite["win_rate_ci_high"] + 1e-12).all()
    write_report(root, kl=[1.0, 5.0])
    text = (root / "report" / "report.md").read_text()
    assert text.index("Variants at equal KL") < text.index("All runs")
    assert "not reached (max KL 3)" in (root / "report" / "equal_kl.md").read_text()
    assert "3 seed(s): seed variation" not in text and "a bootstrap over the 3 seeds" in text
