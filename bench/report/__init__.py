"""`bench report <study>`: a study's run folders into tables, plots and one report file.

Writes results/<study>/report/:
  runs.csv                  the tidy table: one row per finished run (and the reference), every metric
  results.{md,tex,csv}      the full grid on all evaluation prompts (± one standard error over prompts)
  equal_kl.{md,tex,csv}     each variant's upper win-rate-vs-KL frontier read at common KL budgets
  best.{md,tex,csv}         each variant's best configuration under the selection rule (chosen on the
                            validation prompts, reported on the test prompts): mean and 95% interval over
                            seeds and prompts, lm-eval deltas against the reference, paired comparison with
                            the baseline variant
  gold_optimum.{md,tex,csv} each variant's gold-optimal KL, and its gold and judged win rates past it
  published.{md,tex,csv}    published figures beside ours, when the study names a source
  *.png, *.pdf              frontier, judge_vs_gold, length, sensitivity, training
  report.html, report.md    everything above in one file (images embedded in the HTML)
Unfinished and failed runs are listed with their state and error, never dropped silently.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from bench.core.errors import ConfigError
from bench.core.records import atomic_write_text
from bench.core.splits import SPLITS
from bench.report.collect import Study, collect, collect_study
from bench.report.frontier import METRICS, equal_kl, format_optimum, format_table, gold_optimum
from bench.report.html import Section, write_html, write_markdown
from bench.report.plots import plot_all
from bench.report.published import comparison
from bench.report.stats import SelectionRule, seeds_note, select_best
from bench.report.tables import best_table, full_grid, full_grid_numbers, write_table

__all__ = ["SelectionRule", "check_options", "collect", "collect_study", "write_report"]
log = logging.getLogger(__name__)

GRID_NOTE = (
    "Win rates are against the reference model's samples (soft judge preference; ± one standard error over "
    "prompts), on all evaluation prompts; KL in nats per sequence (kl_seq: exact per-step KL along policy "
    "samples)."
)


def sample_sizes(study: Study) -> str:
    """'P evaluation prompts (V val, T test), S seeds': what every interval of the report rests on."""
    seeds = int(study.runs["seed"].nunique()) if "seed" in study.runs else 0
    pp = study.per_prompt
    if pp.empty:
        return f"{seeds} seed(s)"
    prompts = pp.drop_duplicates("prompt_id")
    counts = prompts["split"].value_counts().to_dict() if "split" in prompts else {}
    halves = ", ".join(f"{counts.get(s, 0)} {s}" for s in SPLITS)
    return f"{len(prompts)} evaluation prompts ({halves}), {seeds} seed(s)"


def check_options(study: Study, rule: SelectionRule, baseline: str | None) -> str | None:
    """The report's options against the study, before anything is written (a dry run calls this too): an
    explicit --baseline must be one of the study's variants, --select a metric its runs have on the selection
    split. Returns the baseline to compare against: the given one, else dpo when the study has it."""
    variants = sorted(study.runs["variant"].unique()) if not study.runs.empty else []
    if baseline is not None and variants and baseline not in variants:
        raise ConfigError(
            f"--baseline {baseline!r} is not a variant of study {study.name}: "
            f"use one of {', '.join(variants)}"
        )
    if variants:
        try:
            select_best(study.runs, rule)
        except KeyError as err:
            if str(err.args[0]).startswith("no metric"):  # a typo in --select: the user's to fix
                raise ConfigError(err.args[0]) from err
    if baseline is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in variants else None
    return baseline


DEFAULT_BASELINE = "dpo"
BUDGET_RATIO = (
    2  # warn when one variant was selected among more than this many times another's configurations
)


def tuning_budget(best: pd.DataFrame) -> str:
    """A warning when the variants were selected among very different numbers of configurations: the best of
    more configurations is inflated by the selection's own noise. Empty when the budgets are comparable."""
    counts = dict(zip(best["variant"], best["configs"], strict=True))
    if not counts or max(counts.values()) <= BUDGET_RATIO * min(counts.values()):
        return ""
    listed = ", ".join(f"{v} {n}" for v, n in counts.items())
    return (
        f" Warning: unequal tuning budgets ({listed} configurations): a variant selected among more "
        "configurations looks better by selection alone; compare them at equal budgets or at equal KL."
    )


def _best_section(study: Study, rule: SelectionRule, baseline: str | None, out: Path) -> Section | None:
    report_split = next(s for s in SPLITS if s != rule.split)
    try:
        best, numbers = best_table(study, rule, baseline, report_split)
    except KeyError as err:  # runs evaluated before the prompt splits: no configuration can be chosen
        return Section("Best configuration per variant", f"Not available: {err.args[0]}")
    compared = (
        f" Paired comparisons against {baseline}: the same interval over the (seed, prompt) differences, "
        "with the t test's p-value."
        if baseline
        else ""
    )
    budget = tuning_budget(best)
    if budget:
        log.warning("report %s:%s", study.name, budget)
    caption = (
        f"Best configuration per variant: {rule.describe()}, among `configs` configurations of each variant; "
        f"reported on the {report_split} prompts as mean [95% interval] ({seeds_note(study)}; lc_win_rate, a "
        f"fitted GLM, through its jackknife pseudo-values over prompts; {sample_sizes(study)}). Win rates "
        f"are fractions, KL in nats per sequence, lengths in tokens.{compared}{budget}"
    )
    write_table(best, out, "best", caption, numbers=numbers)
    return Section("Best configuration per variant", caption, best)


def _equal_kl_section(
    study: Study, baseline: str | None, budgets: list[float] | None, out: Path
) -> Section | None:
    numbers, used = equal_kl(study, budgets, baseline)
    if numbers.empty or not used:
        why = "no run has both kl_seq and a win rate"
        if any(m in study.runs.columns for m in METRICS) and "kl_seq" in study.runs.columns:
            lowest = study.runs.groupby("variant")["kl_seq"].max().min()
            why = (
                f"no KL level that every variant reaches (the smallest of the variants' largest KLs is "
                f"{lowest:.3g} nats: a variant that never left the reference has no frontier to compare)"
            )
        return Section("Variants at equal KL", f"Not available: {why}.")
    table = format_table(numbers, baseline)
    levels = "as asked" if budgets else "1/4, 1/2 and all of the largest KL every variant reaches"
    above = (
        f" 'frontier above {baseline}': the share of the KL range every variant reaches where it lies above."
        if baseline
        else ""
    )
    caption = (
        "Variants at equal KL: each variant's upper frontier of a win rate against KL (kl_seq, nats per "
        "sequence) over all its configurations and evaluations over training (means over seeds), starting at "
        "the reference (KL 0), read at each KL budget by linear interpolation and never extrapolated "
        f"({', '.join(f'{b:g}' for b in used)} nats: {levels}); {sample_sizes(study)}; {seeds_note(study)}."
        f"{above}"
    )
    if any(numbers.get(f"{m}_from_reference", pd.Series(dtype=bool)).eq(True).any() for m in METRICS):
        caption += (
            " *: read off the straight line from the reference to the variant's first evaluated model, which "
            "lies at more than twice this KL: no model of it was measured near this budget (evaluate over "
            "training, eval.every_steps, or add configurations that stay closer to the reference)."
        )
    write_table(table, out, "equal_kl", caption, numbers=numbers)
    return Section("Variants at equal KL", caption, table)


def _optimum_section(study: Study, out: Path) -> Section | None:
    numbers = gold_optimum(study)
    if numbers.empty:
        return None
    caption = (
        "Where each variant's gold win rate peaks over all its configurations and evaluated steps (means "
        "over seeds; KL in nats per sequence, win rates against the reference as fractions, on all "
        f"evaluation prompts; {sample_sizes(study)}), and both win rates at the largest KL the variant "
        "reached. A gold win rate that falls past its optimum while the judged one rises is the judge being "
        "over-optimised. The frontier plot marks each gold-optimal KL (dotted)."
    )
    table = format_optimum(numbers)
    write_table(table, out, "gold_optimum", caption, numbers=numbers)
    return Section("Gold-optimal KL", caption, table)


def _published_section(study: Study, rule: SelectionRule, out: Path) -> Section | None:
    if not study.source or study.runs.empty:
        return None
    source = study.source if isinstance(study.source, dict) else {"file": study.source}
    report_split = next(s for s in SPLITS if s != rule.split)
    ours: dict[str, dict[str, float]] = {}
    try:
        best = select_best(study.runs, rule)
    except KeyError as err:  # runs evaluated before the prompt splits: no configuration can be chosen
        return Section("Published comparison", f"Not available: {err.args[0]}")
    for _, sel in best.iterrows():
        runs = study.runs[study.runs["config_key"] == sel["config_key"]]
        ours[str(sel["variant"])] = {
            m: float(runs[f"{report_split}/{m}"].mean())
            for m in ("win_rate", "lc_win_rate")
            if f"{report_split}/{m}" in runs
        }
        if "beta" in runs and runs["beta"].notna().any():  # the selection's beta (a beta scan's answer)
            ours[str(sel["variant"])]["best_beta"] = float(runs["beta"].dropna().iloc[0])
    if study.reference:  # the SFT row: judged against eval.reference_outputs when that was set
        ours["reference"] = {
            m: float(study.reference[f"{report_split}/{m}"])
            for m in ("win_rate", "lc_win_rate")
            if f"{report_split}/{m}" in study.reference and study.reference[f"{report_split}/{m}"] != 0.5
        }
    table = comparison(source, ours)
    caption = f"Published figures ({source['file']}, setting {source.get('setting', 'all')}) beside ours."
    write_table(table, out, "published", caption)
    return Section("Published comparison", caption, table)


def write_report(
    study_dir: Path,
    rule: SelectionRule | None = None,
    baseline: str | None = None,
    out: Path | None = None,
    kl: list[float] | None = None,
) -> str:
    """Write the report folder (`out`, default <study>/report); return the full grid as markdown (what
    `bench report` prints). `baseline`: the variant paired comparisons are against (default: dpo, if run);
    `kl`: the KL budgets of the equal-KL table (default: a few inside the range every variant reaches)."""
    rule = rule or SelectionRule()
    log.info("report %s: reading run folders", study_dir.name)
    study = collect_study(study_dir)
    baseline = check_options(study, rule, baseline)
    out = out or study_dir / "report"
    missing = "".join(f"- {n}\n" for n in study.notes)
    if study.runs.empty:
        text = f"no finished runs in {study_dir}\n" + missing
        atomic_write_text(out / "results.md", text)
        return text
    log.info("report %s: %d finished run(s), %d not finished", study.name, len(study.runs), len(study.notes))
    atomic_write_text(out / "runs.csv", study.with_reference().to_csv(index=False))
    grid = full_grid(study)
    note = f"{GRID_NOTE} {sample_sizes(study)}."
    write_table(grid, out, "results", note, numbers=full_grid_numbers(study))
    # the question first, then the comparisons at equal KL and at each variant's best, then every run
    sections = [Section("Question", study.question.strip())] if study.question else []
    equal = _equal_kl_section(study, baseline, kl, out)
    best = _best_section(study, rule, baseline, out)
    optimum = _optimum_section(study, out)
    published = _published_section(study, rule, out)
    sections += [s for s in (equal, best, optimum) if s is not None]
    sections.append(Section("All runs", note, grid))
    sections += [s for s in (published,) if s is not None]
    log.info("report %s: plots", study.name)
    images = [p for p in plot_all(study, out) if p.suffix == ".png"]
    sections.append(Section("Plots", "", None, tuple(images)))
    if study.notes:
        sections.append(Section("Not in the tables (unfinished or failed)", "\n".join(study.notes)))
    title = f"Study {study.name}"
    write_html(out / "report.html", title, sections)
    write_markdown(out / "report.md", title, sections)
    text = f"# {title}\n\n{grid.to_markdown(index=False)}\n\n{GRID_NOTE}\n"
    if study.notes:
        text += "\nNot in the table (unfinished or failed):\n" + missing
    log.info("report %s: written to %s (report.html opens on its own)", study.name, out)
    return text


def tidy(study_dir: Path) -> pd.DataFrame:
    """The study as one tidy table (for notebooks): runs and the reference, every metric as a column."""
    return collect(study_dir)[0]
