"""The report on hand-made run folders (2 variants x 3 seeds, one more configuration, a missing and a failed
run): aggregation is exact, the selection rule reads only the validation split, paired comparisons and
intervals are what the numbers imply, the LaTeX is well formed, the plots and the HTML are written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core.splits import prompt_split
from bench.report import collect_study, write_report
from bench.report.stats import SelectionRule, paired_interval, select_best
from tests.helpers import REPO

PROMPTS = list(range(40))
# variant, beta -> (val lc, test lc, per-prompt win offset). dpo beta 1 wins on validation; on the test split
# dpo beta 2 would: a rule that peeked at the test split would pick it.
CONFIGS = {
    ("dpo", 1.0): (0.70, 0.55, 0.10),
    ("dpo", 2.0): (0.60, 0.80, 0.20),
    ("ipo", 0.5): (0.65, 0.60, 0.15),
}


def _win(offset: float, seed: int, pid: int) -> float:
    return 0.4 + offset + 0.005 * pid + 0.01 * seed


def _write(folder: Path, name: str, data: object) -> None:
    text = "".join(json.dumps(r) + "\n" for r in data) if isinstance(data, list) else json.dumps(data)
    (folder / name).write_text(text)


def _run(study: Path, variant: str, beta: float, seed: int, state: str = "done") -> Path:
    folder = study / f"{variant}-b{beta:g}-s{seed}"
    folder.mkdir(parents=True)
    cfg = {
        "choices": {"loss": variant, "dataset": "toy"},
        "loss": {"name": variant, "beta": beta},
        "train": {"learning_rate": 1e-3},
        "seed": seed,
    }
    _write(folder, "manifest.json", {"config": cfg})
    _write(
        folder,
        "status.json",
        {
            "state": state,
            "stage": None if state == "done" else "judge",
            "error": "ValueError: judge crashed\ntraceback" if state == "failed" else None,
        },
    )
    if state != "done":
        return folder
    val_lc, test_lc, offset = CONFIGS[(variant, beta)]
    per_prompt = [
        {
            "prompt_id": p,
            "split": prompt_split(p),
            "win_rate": _win(offset, seed, p),
            "gold_win_rate": 0.5 + offset / 2,
            "kl_seq": beta * 2 + seed,
        }
        for p in PROMPTS
    ]
    _write(folder, "per_prompt.jsonl", per_prompt)
    rows = [
        {"metric": "win_rate", "value": float(np.mean([r["win_rate"] for r in per_prompt])), "stderr": 0.01},
        {"metric": "lc_win_rate", "value": (val_lc + test_lc) / 2, "stderr": None},
        {"metric": "kl_seq", "value": beta * 2 + seed, "stderr": 0.1},
        {"metric": "gold_win_rate", "value": 0.5 + offset / 2, "stderr": 0.02},
        {"metric": "lc_win_rate", "value": val_lc + 0.01 * seed, "stderr": None, "split": "val"},
        {"metric": "lc_win_rate", "value": test_lc + 0.01 * seed, "stderr": None, "split": "test"},
        {"metric": "lm_eval/toy_mc/acc", "value": 0.4 + offset, "stderr": 0.05},
    ]
    _write(folder, "metrics.jsonl", rows)
    return folder


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    root = tmp_path / "handmade"
    for variant, beta in CONFIGS:
        for seed in (0, 1, 2):
            _run(root, variant, beta, seed)
    missing = root / "dpo-b4-s0"
    missing.mkdir()
    _write(missing, "manifest.json", {"config": {}})
    _run(root, "ipo", 0.5, 7, state="failed")
    ref = root / "_reference" / "abc"
    ref.mkdir(parents=True)
    _write(
        ref,
        "metrics.jsonl",
        [
            {"metric": "win_rate", "value": 0.5, "stderr": 0.0},
            {"metric": "lm_eval/toy_mc/acc", "value": 0.6, "stderr": 0.05},
        ],
    )
    return root


def test_aggregation_is_exact_and_lists_missing_and_failed_runs(study: Path) -> None:
    s = collect_study(study)
    assert len(s.runs) == 9 and len(s.per_prompt) == 9 * len(PROMPTS)
    row = s.runs[(s.runs["variant"] == "dpo") & (s.runs["beta"] == 2.0) & (s.runs["seed"] == 1)].iloc[0]
    assert row["val/lc_win_rate"] == pytest.approx(0.61) and row["test/lc_win_rate"] == pytest.approx(0.81)
    assert row["kl_seq"] == 5.0 and row["kl_seq_se"] == 0.1
    assert len(set(s.runs["config_key"])) == 3  # the seeds of one configuration share a key
    notes = "\n".join(s.notes)
    assert "dpo-b4-s0: pending" in notes
    assert "ipo-b0.5-s7: failed at stage judge: ValueError: judge crashed" in notes
    table = write_report(study)
    assert "reference" in table and "ipo-b0.5-s7: failed" in table
    runs = pd.read_csv(study / "report" / "runs.csv")
    assert len(runs) == 10  # nine runs and the reference
    assert runs.loc[runs["run_id"] == "dpo-b2-s1", "win_rate"].item() == pytest.approx(row["win_rate"])


def test_selection_reads_only_the_validation_split(study: Path) -> None:
    runs = collect_study(study).runs
    rule = SelectionRule("lc_win_rate", "val")
    best = select_best(runs, rule)
    assert best.set_index("variant").loc["dpo", "beta"] == 1.0  # the test split would have said 2
    assert best.set_index("variant").loc["dpo", "selection_score"] == pytest.approx(0.71)
    scrambled = runs.copy()
    for column in [c for c in runs.columns if c.startswith("test/")]:
        scrambled[column] = np.random.default_rng(0).permutation(scrambled[column].to_numpy()) * 100
    assert select_best(scrambled, rule).equals(best)
    without_test = runs.drop(columns=[c for c in runs.columns if c.startswith("test/")])
    assert select_best(without_test, rule).equals(best)
    write_report(study, rule)
    table = pd.read_csv(study / "report" / "best.csv").set_index("variant")
    assert table.loc["dpo", "beta"] == 1 and table.loc["dpo", "seeds"] == 3
    test_prompts = [p for p in PROMPTS if prompt_split(p) == "test"]
    expected = np.mean([_win(0.10, s, p) for s in (0, 1, 2) for p in test_prompts])
    assert table.loc["dpo", "test win_rate"] == pytest.approx(expected)  # the CSV holds numbers
    assert table.loc["dpo", "test win_rate ci_low"] <= expected <= table.loc["dpo", "test win_rate ci_high"]
    assert table.loc["dpo", "delta toy_mc/acc vs reference"] == pytest.approx(-0.1)
    assert f"| {expected:.3f} [" in (study / "report" / "best.md").read_text()  # the table shows cells


def test_paired_comparison_and_intervals(study: Path) -> None:
    s = collect_study(study)
    pp = s.per_prompt[s.per_prompt["split"] == "test"]
    dpo = pp[pp["run_id"].str.startswith("dpo-b1-")]
    ipo = pp[pp["run_id"].str.startswith("ipo-")]
    d = paired_interval(ipo, dpo, "win_rate")
    # ipo's per-prompt win is dpo's + 0.05 on every (seed, prompt): the paired difference has no noise
    assert d.mean == pytest.approx(0.05) and d.low == pytest.approx(0.05)
    assert d.high == pytest.approx(0.05) and d.p_value() < 1e-12
    assert (d.seeds, d.prompts) == (3, len(dpo["prompt_id"].unique()))
    write_report(study)
    best = pd.read_csv(study / "report" / "best.csv").set_index("variant")
    numbers = best.loc["ipo", ["win_rate vs dpo diff", "win_rate vs dpo ci_low", "win_rate vs dpo ci_high"]]
    assert (
        numbers.tolist() == pytest.approx([0.05, 0.05, 0.05])
        and best.loc["ipo", "win_rate vs dpo p_value"] < 1e-12
    )
    assert "+0.050 [+0.050, +0.050], p<0.001" in (study / "report" / "best.md").read_text()


def test_latex_tables_are_well_formed(study: Path) -> None:
    write_report(study)
    for name in ("results", "best"):
        tex = (study / "report" / f"{name}.tex").read_text()
        assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1
        spec = re.search(r"\\begin\{tabular\}\{([lcr]+)\}", tex)
        assert spec, tex
        for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
            assert tex.count(rule) == 1
        body = tex.split("\\toprule")[1].split("\\bottomrule")[0].replace("\\midrule", "")
        lines = [line for line in body.strip().splitlines() if line.strip()]
        for line in lines:  # every row: one cell per column, ended by \\, no unescaped special character
            assert line.rstrip().endswith("\\\\"), line
            assert len(re.findall(r"(?<!\\)&", line)) == len(spec.group(1)) - 1, line
            assert not re.search(r"(?<!\\)[_%#]", line.replace("$\\Delta$", "")), line
        assert tex.count("{") == tex.count("}")


def test_plots_and_the_self_contained_report_are_written(study: Path) -> None:
    write_report(study)
    out = study / "report"
    for name in ("frontier", "judge_vs_gold", "length", "sensitivity", "training"):
        assert (out / f"{name}.png").stat().st_size > 5_000, name
        assert (out / f"{name}.pdf").stat().st_size > 1_000, name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "Best configuration per variant" in html
    assert "ipo-b0.5-s7: failed" in html
    assert (out / "report.md").read_text().count("![") == 5


def test_published_comparison(study: Path, tmp_path: Path) -> None:
    from bench.report.published import comparison

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "paper.csv").write_text(
        "source,setting,method,method_published,metric,value,unit,note\n"
        "Paper v1 Table 2,base,dpo,DPO,lc_win_rate,60.0,percent,\n"
        "Paper v1 Table 2,base,simpo,SimPO,lc_win_rate,70.0,percent,\n"
        "Paper v1 Table 2,other,dpo,DPO,lc_win_rate,10.0,percent,\n"
    )
    table = comparison({"file": "paper", "setting": "base"}, {"dpo": {"lc_win_rate": 0.555}}, folder)
    assert table.to_dict("records") == [
        {
            "setting": "base",
            "method": "DPO",
            "metric": "lc_win_rate",
            "published": "60.0",
            "ours": "55.5",
            "ours - published": "-4.5",
            "source": "Paper v1 Table 2",
        }
    ]
    shipped = pd.read_csv(REPO / "analysis" / "published" / "simpo_readme_v0.1.csv")
    simpo = shipped[(shipped["setting"] == "Mistral-Base") & (shipped["method"] == "simpo")]
    assert simpo.set_index("metric")["value"].to_dict() == {
        "lc_win_rate": 21.4,
        "win_rate": 20.8,
        "arena_hard_win_rate": 16.6,
    }


def test_report_logs_to_wandb_as_a_table(study: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bench.report import tidy
    from bench.tracking import log_report
    from tests.helpers import wandb_records

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    write_report(study)
    log_report("handmade", tidy(study), sorted((study / "report").glob("*.png")), tmp_path)
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(next(run.glob("*.wandb")))
    logged = {  # an image logs nested keys (frontier/height, ...); the table logs 'runs'
        (i.key or "/".join(i.nested_key)).split("/")[0]
        for r in records
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
    }
    kinds = [r.WhichOneof("record_type") for r in records]
    assert {"runs", "frontier", "training"} <= logged, f"records in the file: {kinds}"


def test_a_study_that_names_its_source_gets_the_published_comparison(study: Path) -> None:
    (study / "study.json").write_text(
        json.dumps({"study": "handmade", "source": {"file": "simpo_readme_v0.1", "setting": "Mistral-Base"}})
    )
    write_report(study)
    table = pd.read_csv(study / "report" / "published.csv")
    dpo = table[(table["method"] == "DPO") & (table["metric"] == "lc_win_rate")].iloc[0]
    # ours: dpo's selected beta (1) on the test split, mean over seeds of 0.55 + 0.01 * seed, in percent
    assert (dpo["published"], dpo["ours"], dpo["ours - published"]) == (15.1, 56.0, 40.9)
    assert set(table["method"]) == {"DPO", "IPO"}  # only the variants the study ran
    assert "Published comparison" in (study / "report" / "report.html").read_text()


def test_an_unknown_selection_metric_fails_naming_the_choices(study: Path) -> None:
    from bench.core.errors import ConfigError

    expected = r"no metric 'lc_winrate' on the val split; --select one of: lc_win_rate"
    with pytest.raises(ConfigError, match=expected):
        write_report(study, SelectionRule("lc_winrate", "val"))


def _simpo_run(study: Path, gamma: float, seed: int, val_lc: float) -> None:
    """A SimPO run whose gamma_beta_ratio is the only thing that differs from its neighbour's."""
    folder = study / f"simpo-g{gamma:g}-s{seed}"
    folder.mkdir(parents=True)
    loss = {"beta": 2.0, "gamma_beta_ratio": gamma, "sft_weight": 0.0, "paper": "Meng et al. 2024"}
    cfg = {"choices": {"loss": "simpo", "dataset": "toy"}, "loss": loss, "train": {"learning_rate": 1e-3}}
    _write(folder, "manifest.json", {"config": {**cfg, "seed": seed}})
    _write(folder, "status.json", {"state": "done", "stage": None, "error": None})
    per_prompt = [
        {"prompt_id": p, "split": prompt_split(p), "win_rate": val_lc, "kl_seq": 1.0} for p in PROMPTS
    ]
    _write(folder, "per_prompt.jsonl", per_prompt)
    rows = [
        {"metric": "win_rate", "value": val_lc, "stderr": 0.01},
        {"metric": "lc_win_rate", "value": val_lc, "stderr": None, "split": "val"},
        {"metric": "lc_win_rate", "value": val_lc, "stderr": None, "split": "test"},
    ]
    _write(folder, "metrics.jsonl", rows)


def test_every_hyperparameter_is_in_view_and_best_names_the_winning_gamma(study: Path) -> None:
    for seed in (0, 1):
        _simpo_run(study, 0.3, seed, val_lc=0.62)
        _simpo_run(study, 0.8, seed, val_lc=0.71)  # the winner on the validation split
    runs = collect_study(study).runs
    simpo = runs[runs["variant"] == "simpo"]
    assert sorted(simpo["configuration"].unique()) == [
        "simpo beta=2 gamma_beta_ratio=0.3 sft_weight=0",
        "simpo beta=2 gamma_beta_ratio=0.8 sft_weight=0",
    ]
    assert runs.groupby("config_key")["configuration"].nunique().max() == 1  # one name per configuration
    assert runs.drop_duplicates("config_key")["configuration"].is_unique  # and one configuration per name
    write_report(study)
    best = pd.read_csv(study / "report" / "best.csv")
    row = best[best["variant"] == "simpo"].iloc[0]
    assert row["gamma_beta_ratio"] == 0.8 and row["configs"] == 2
    assert "paper" not in best.columns  # documentation keys are not hyperparameters
    n_val = sum(prompt_split(p) == "val" for p in PROMPTS)
    sizes = (
        f"40 evaluation prompts ({n_val} val, {40 - n_val} test), 3 seed(s)"  # the failed run's seed 7 aside
    )
    assert sizes in (study / "report" / "report.md").read_text()  # every caption says what it rests on
    grid = pd.read_csv(study / "report" / "results.csv")
    assert sorted(grid.loc[grid["variant"] == "simpo", "gamma_beta_ratio"].unique()) == [0.3, 0.8]


def test_report_options_fail_with_the_choices_and_out_writes_elsewhere(study: Path, tmp_path: Path) -> None:
    from bench.core.errors import ConfigError
    from bench.report import check_options

    handmade = collect_study(study)
    with pytest.raises(
        ConfigError, match=r"--baseline 'kto' is not a variant of study handmade: use one of dpo, ipo"
    ):
        check_options(handmade, SelectionRule(), "kto")
    with pytest.raises(
        ConfigError, match=r"no metric 'nope' on the val split; --select one of: .*lc_win_rate"
    ):
        check_options(handmade, SelectionRule("nope"), None)
    assert check_options(handmade, SelectionRule(), None) == "dpo"  # the default, when the study ran it
    out = tmp_path / "elsewhere"
    write_report(study, out=out)
    assert (out / "report.html").exists() and not (study / "report").exists()


def test_unequal_tuning_budgets_are_called_out() -> None:
    from bench.report import tuning_budget

    assert tuning_budget(pd.DataFrame({"variant": ["dpo", "ipo"], "configs": [4, 2]})) == ""
    warning = tuning_budget(pd.DataFrame({"variant": ["dpo", "simpo"], "configs": [2, 8]}))
    assert "unequal tuning budgets (dpo 2, simpo 8 configurations)" in warning
