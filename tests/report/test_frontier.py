"""Equal-KL comparison on hand-made run folders with known frontiers: the upper frontier, its reading at KL
budgets (linear between its points, never extrapolated), the default budgets, the dominance share, the
interval over seeds and prompts of an interpolated reading, and the gold-optimal KL."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.core.splits import prompt_split
from bench.core.stats import crossed_interval
from bench.report import collect_study, write_report
from bench.report.frontier import default_budgets, equal_kl, gold_optimum, read, upper_frontier

# variant -> beta -> (KL, win rate) of that configuration, the same for every seed unless noise is added
POINTS = {
    "dpo": {1.0: (1.0, 0.6), 2.0: (2.0, 0.7), 4.0: (4.0, 0.65)},  # the last is dominated; reach 4
    "ipo": {0.5: (0.5, 0.58), 3.0: (3.0, 0.72)},  # reach 3
}


PROMPTS = 12


def _per_prompt(win: float, seed: int, beta: float) -> list[float]:
    """Per-prompt win rates averaging to `win` + a seed effect: a prompt effect and an interaction."""
    values = [
        win + 0.01 * (seed - 1) + 0.02 * math.sin(p) + 0.003 * math.cos(7 * p * seed + beta)
        for p in range(PROMPTS)
    ]
    return [v - (np.mean(values) - win - 0.01 * (seed - 1)) for v in values]


def _study(root: Path, seeds: tuple[int, ...], noise: float = 0.0, prompts: bool = False) -> Path:
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
                if prompts:
                    per_prompt = _per_prompt(win, seed, beta)
                    value = float(np.mean(per_prompt))
                    (folder / "per_prompt.jsonl").write_text("".join(
                        json.dumps({"prompt_id": p, "split": prompt_split(p), "win_rate": v}) + "\n"
                        for p, v in enumerate(per_prompt)))  # fmt: skip
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
    assert "seed variation is not estimated" not in text and "over seeds and prompts" in text


def test_a_reading_between_two_frontier_points_gets_the_interval_of_their_weighted_prompts(
    tmp_path: Path,
) -> None:
    study = collect_study(_study(tmp_path / "s", seeds=(0, 1, 2), prompts=True))
    table, _ = equal_kl(study, budgets=[1.5, 0.5], baseline="dpo")
    row = table[(table["variant"] == "dpo") & (table["kl_budget"] == 1.5)].iloc[0]
    # dpo's frontier: (0, 0.5), (1, 0.6), (2, 0.7); at 1.5 nats, half of beta 1's and half of beta 2's values
    assert row["win_rate"] == pytest.approx(0.65)
    pairs = [zip(_per_prompt(0.6, s, 1.0), _per_prompt(0.7, s, 2.0), strict=True) for s in (0, 1, 2)]
    matrix = [[0.5 * a + 0.5 * b for a, b in seed] for seed in pairs]
    expected = crossed_interval(matrix, center=0.65)
    assert (row["win_rate_ci_low"], row["win_rate_ci_high"]) == pytest.approx((expected.low, expected.high))
    assert row["win_rate_seed_variation"] and expected.low < 0.65 < expected.high
    # half-way between the reference (no spread) and the first point: half of the point's spread
    first = table[(table["variant"] == "dpo") & (table["kl_budget"] == 0.5)].iloc[0]
    single = crossed_interval([_per_prompt(0.6, s, 1.0) for s in (0, 1, 2)], center=0.6)
    assert first["win_rate_ci_high"] - first["win_rate"] == pytest.approx(0.5 * (single.high - 0.6))


def test_the_gold_optimal_kl_is_where_gold_peaks_and_the_report_marks_it(tmp_path: Path) -> None:
    root = tmp_path / "over"
    # judged win rate keeps rising with KL; gold rises to beta 1 and falls after
    for beta, kl, judged, gold in ((4.0, 1.0, 0.7, 0.62), (1.0, 3.0, 0.85, 0.70), (0.25, 9.0, 0.97, 0.55)):
        folder = root / f"dpo-b{beta:g}-s0"
        folder.mkdir(parents=True)
        cfg = {"choices": {"loss": "dpo", "dataset": "toy"}, "loss": {"beta": beta},
               "train": {"learning_rate": 1e-3}, "seed": 0}  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps({"config": cfg}))
        rows = [{"metric": "kl_seq", "value": kl}, {"metric": "win_rate", "value": judged},
                {"metric": "gold_win_rate", "value": gold}]  # fmt: skip
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    optimum = gold_optimum(collect_study(root)).iloc[0]
    assert optimum["gold_optimal_kl"] == 3.0 and optimum["peak_gold_win_rate"] == 0.70
    assert optimum["configuration"] == "dpo beta=1" and optimum["step"] == -1
    assert (optimum["max_kl"], optimum["gold_win_rate_at_max_kl"], optimum["win_rate_at_max_kl"]) == (
        9.0,
        0.55,
        0.97,
    )
    write_report(root)
    table = (root / "report" / "gold_optimum.md").read_text()
    assert "| dpo       | dpo beta=1" in table and "final" in table
    assert "Gold-optimal KL" in (root / "report" / "report.md").read_text()


def test_a_variant_that_never_left_the_reference_leaves_no_equal_kl_table_and_the_report_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a shrunk study at a tiny learning rate: one variant's policy sampled exactly like the reference (KL 0)
    monkeypatch.setitem(POINTS, "ipo", {0.5: (0.0, 0.5)})
    root = _study(tmp_path / "s", seeds=(0,))
    table, budgets = equal_kl(collect_study(root), baseline="dpo")
    assert table.empty and budgets == []
    write_report(root)
    text = (root / "report" / "report.md").read_text()
    assert "Not available: no KL level that every variant reaches" in text and "is 0 nats" in text


def test_a_reading_far_below_a_variants_first_model_is_marked_as_a_line_from_the_reference(
    tmp_path: Path,
) -> None:
    """dpo's first model is at 1 nat and ipo's at 0.5: at 0.4 nats dpo's value is mostly the straight line
    from the reference (0.4 < 0.5 x 1), ipo's is not (0.4 >= 0.5 x 0.5); the table and caption say so."""
    root = _study(tmp_path / "s", seeds=(0, 1))
    table, _ = equal_kl(collect_study(root), budgets=[0.4, 0.75], baseline="dpo")
    at = {(r.variant, r.kl_budget): r for r in table.itertuples()}
    assert at[("dpo", 0.4)].win_rate_from_reference and not at[("ipo", 0.4)].win_rate_from_reference
    assert not at[("dpo", 0.75)].win_rate_from_reference  # 0.75 >= 0.5 x 1: near enough to a model
    out = tmp_path / "report"
    write_report(root, baseline="dpo", out=out, kl=[0.4, 0.75])
    text = (out / "equal_kl.md").read_text()
    assert "| 0.540*" in text and "| 0.564 " in text  # dpo at 0.4 (0.5 + 0.4 x 0.1) marked; ipo not
    assert "read off the straight line from the reference" in (out / "report.md").read_text()
