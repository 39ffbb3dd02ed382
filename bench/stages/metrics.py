"""The metrics stage: KL, lengths, gold reward and win rates into metrics.jsonl (one number a row).

A row is {"metric", "value", "stderr"} plus, where a bootstrap ran (eval.bootstrap resamples, eval.ci_level),
"ci_low" and "ci_high"; lc_win_rate also names its GLM ("glm"). Standard errors and intervals are over
prompts: the samples of one prompt are averaged first, since samples that share a prompt are not independent,
and the bootstrap resamples prompts. Every interval of one call uses the same seed, hence the same resampled
prompt sets: intervals of different metrics come from one joint bootstrap.

KL definitions (docs/toyworld.md, Metrics) live in bench.core.kl; this module turns them into rows.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bench.core.chat import uses_chat_template
from bench.core.kl import kl_exact, kl_k1, kl_k3, n_steps, offpolicy_logratios, token_k3_sum
from bench.core.records import atomic_write_jsonl, read_jsonl
from bench.core.splits import SPLITS, prompt_split
from bench.core.stats import bootstrap_ci, mean_se, ratio_se
from bench.judge import annotations_path, judge_length_stats, load_annotations, win_rates
from bench.judge.winrates import lc_pseudo_values, preferences
from bench.sources import GoldReward
from bench.sources.shapes import data_shape, to_shape
from bench.specs import RunSpec
from bench.stages.base import Context, Stage
from bench.stages.generate import GENERATIONS
from bench.stages.lm_eval import OUTPUT_NAME as LM_EVAL
from bench.stages.lm_eval import lm_eval_rows
from bench.tracking import log_final_metrics

log = logging.getLogger(__name__)

Row = dict[str, Any]
JUDGE_RATES = ("win_rate", "win_rate_hard", "lc_win_rate")
JUDGE_LENGTH = ("judge_length_slope", "length_win_correlation", "lc_minus_raw")
OFFPOLICY = ("offpolicy_logratio_chosen", "offpolicy_logratio_rejected", "offpolicy_margin_accuracy")


def per_prompt(
    rows: Iterable[Row], value: Callable[[Row], float], reduce: Literal["mean", "sum"] = "mean"
) -> dict[Any, float]:
    """{prompt_id: mean (or sum) of value over that prompt's samples}, in first-seen order."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for r in rows:
        groups[r["prompt_id"]].append(value(r))
    return {k: sum(v) / (len(v) if reduce == "mean" else 1) for k, v in groups.items()}


def _ratio(v: np.ndarray) -> float:
    return float(v[:, 0].sum() / v[:, 1].sum())


class _Rows:
    """Metric rows of one call, with the call's bootstrap settings."""

    def __init__(self, bootstrap: int, ci_level: float, seed: int):
        self.rows: list[Row] = []
        self.bootstrap, self.ci_level, self.seed = bootstrap, ci_level, seed

    def add(
        self,
        metric: str,
        value: float,
        stderr: float | None = None,
        ci: tuple[float | None, float | None] = (None, None),
        **extra: Any,
    ) -> None:
        row: Row = {"metric": metric, "value": value, "stderr": stderr}
        low, high = ci
        if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
            row["ci_low"], row["ci_high"] = float(low), float(high)
        self.rows.append(row | extra)

    def ci(self, values: ArrayLike, statistic: Callable[[np.ndarray], float]) -> tuple[float, float]:
        return bootstrap_ci(values, statistic, self.bootstrap, self.ci_level, self.seed)

    def mean(self, metric: str, values: dict[Any, float]) -> None:
        """A mean over prompts of per-prompt values, with its standard error and bootstrap interval."""
        x = list(values.values())
        self.add(metric, *mean_se(x), ci=self.ci(x, np.mean))

    def ratio(self, metric: str, num: dict[Any, float], den: dict[Any, float]) -> None:
        """sum(num) / sum(den) over the prompts both have, paired by prompt."""
        pairs = [(num[k], den[k]) for k in num if k in den]
        value, se = ratio_se([a for a, _ in pairs], [b for _, b in pairs])
        self.add(metric, value, se, ci=self.ci(pairs, _ratio))


def _pairwise(policy: list[Row], reference: list[Row], score: Callable[[str], float]) -> list[Row]:
    """Per policy sample, the fraction of its prompt's reference samples it beats (ties 1/2)."""
    ref_scores: dict[Any, list[float]] = defaultdict(list)
    for r in reference:
        ref_scores[r["prompt_id"]].append(score(r["completion"]))
    out = []
    for r in policy:
        s = score(r["completion"])
        refs = ref_scores[r["prompt_id"]]
        wins = sum(1.0 if s > t else 0.5 if s == t else 0.0 for t in refs)
        out.append({"prompt_id": r["prompt_id"], "win": wins / len(refs)})
    return out


def sample_metrics(
    rows: list[Row],
    reference: list[Row],
    gold: GoldReward | None,
    bootstrap: int = 0,
    ci_level: float = 0.95,
    seed: int = 0,
    alphas: int | None = None,
) -> list[Row]:
    """KL, length and, where the data has a gold reward, sentiment and gold-reward metrics of one model's
    samples against the reference's (the first `alphas` of its repetition weights; all by default)."""
    out = _Rows(bootstrap, ci_level, seed)
    out.mean("kl_seq", per_prompt(rows, kl_exact))
    out.mean("kl_seq_k1", per_prompt(rows, kl_k1))
    out.mean("kl_seq_k3", per_prompt(rows, kl_k3))
    # Nats per generated token (<eos> included): total KL over total tokens, a ratio estimator over prompts.
    tokens = per_prompt(rows, n_steps, "sum")
    out.ratio("kl_token_mean", per_prompt(rows, kl_exact, "sum"), tokens)
    out.ratio("kl_token_k3_mean", per_prompt(rows, token_k3_sum, "sum"), tokens)

    def n_tokens(r: Row) -> float:
        return r["n_tokens"]

    def n_chars(r: Row) -> float:
        return len(r["completion"])

    out.mean("length_tokens_mean", per_prompt(rows, n_tokens))
    out.mean("length_chars_mean", per_prompt(rows, n_chars))
    out.ratio("length_ratio", per_prompt(rows, n_tokens), per_prompt(reference, n_tokens))
    out.ratio("length_chars_ratio", per_prompt(rows, n_chars), per_prompt(reference, n_chars))
    out.mean("finished_rate", per_prompt(rows, lambda r: float(r["finished"])))
    if gold is None:
        return out.rows
    out.mean("sentiment_mean", per_prompt(rows, lambda r: gold.sentiment(r["completion"])))
    for i, alpha in enumerate(gold.alphas[:alphas]):
        suffix = "" if i == 0 else f"_alpha{alpha:g}"

        def score(text: str, a: float = alpha) -> float:
            return gold.reward(text, a)

        out.mean(f"gold_reward_mean{suffix}", per_prompt(rows, lambda r, g=score: g(r["completion"])))  # type: ignore[misc]
        out.mean(f"gold_win_rate{suffix}", per_prompt(_pairwise(rows, reference, score), lambda r: r["win"]))
    return out.rows


def _judge_metrics(annotations: pd.DataFrame, spec: RunSpec, bootstrap: int | None = None) -> dict[str, Any]:
    """The judge's numbers: win rates with bootstrap intervals (the LC GLM refitted per resample), which GLM
    was used, and the judge's length statistics.

    Keys: win_rate, win_rate_hard, lc_win_rate, each with _stderr, _ci_low and _ci_high; lc_glm;
    judge_length_slope (log-odds per 100 characters), length_win_correlation, lc_minus_raw."""
    e = spec.eval
    rates = win_rates(
        annotations,
        bootstrap=e.bootstrap if bootstrap is None else bootstrap,
        ci_level=e.ci_level,
        seed=spec.seed,
        gamed_csv=e.alpaca_eval_gamed_csv,
    )
    return rates | judge_length_stats(annotations, rates, gamed_csv=e.alpaca_eval_gamed_csv)


def judge_metric_rows(stats: Mapping[str, Any]) -> list[Row]:
    """Rows of the judge's numbers (keys as _judge_metrics documents); the LC row names its GLM."""
    out = _Rows(0, 0.0, 0)
    for name in JUDGE_RATES:
        extra = {"glm": stats["lc_glm"]} if name == "lc_win_rate" else {}
        ci = (stats.get(f"{name}_ci_low"), stats.get(f"{name}_ci_high"))
        out.add(name, stats[name], stats.get(f"{name}_stderr"), ci=ci, **extra)
    for name in JUDGE_LENGTH:
        out.add(name, stats[name])
    return out.rows


def offpolicy_metric_rows(stats: Mapping[str, float]) -> list[Row]:
    """Rows of bench.core.kl.offpolicy_logratios' result (log-ratios in nats per sequence, accuracy a
    fraction); none when the diagnostic was not defined for the data (unpaired rows)."""
    if not stats:
        return []
    return [{"metric": m, "value": stats[m], "stderr": stats[f"{m}_stderr"]} for m in OFFPOLICY]


def lm_eval_metric_rows(flat: list[Row]) -> list[Row]:
    """lm-eval results as metric rows named lm_eval/<task>/<metric> (filter appended when not 'none')."""
    out = []
    for r in flat:
        name = f"lm_eval/{r['task']}/{r['metric']}" + (
            "" if r["filter"] in (None, "none") else f"/{r['filter']}"
        )
        out.append({"metric": name, "value": r["value"], "stderr": r["stderr"]})
    return out


def mark_tempered_kl(spec: RunSpec, rows: list[Row]) -> list[Row]:
    """KL rows say so when the samples were not drawn from the policy itself (temperature != 1, top-k or
    top-p: the published AlpacaEval decodings): the per-step KL is then summed along the decoded paths,
    which is not the sequence-level KL(pi || ref) that ancestral samples at T=1 estimate."""
    g = spec.eval.generation
    if g.temperature == 1 and g.top_k == 0 and g.top_p >= 1:
        return rows
    how = f"T={g.temperature:g}, top_k={g.top_k}, top_p={g.top_p:g}"
    return [r | {"samples": f"decoded ({how})"} if r["metric"].startswith("kl_") else r for r in rows]


def split_rows(
    spec: RunSpec,
    gold: GoldReward | None,
    policy: list[Row],
    reference: list[Row],
    annotations: pd.DataFrame | None,
) -> list[Row]:
    """The sample and judge metrics again on each prompt split (bench.core.splits), rows tagged "split": the
    report selects configurations on one split and reports them on the other. Standard errors only: the
    report's intervals come from per_prompt.jsonl, over seeds and prompts."""
    rows: list[Row] = []
    for split in SPLITS:
        pol = [r for r in policy if prompt_split(r["prompt_id"]) == split]
        ref = [r for r in reference if prompt_split(r["prompt_id"]) == split]
        if not pol:
            continue
        part = sample_metrics(pol, ref, gold, alphas=1)
        if annotations is not None:
            mask = annotations["prompt_id"].map(prompt_split) == split
            part += judge_metric_rows(_judge_metrics(annotations[mask].reset_index(drop=True), spec, 0))
        rows += [r | {"split": split} for r in part]
    return rows


def per_prompt_rows(
    gold: GoldReward | None,
    policy: list[Row],
    reference: list[Row],
    annotations: pd.DataFrame,
    gamed_csv: str | None = None,
) -> list[Row]:
    """per_prompt.jsonl: one row per evaluation prompt with its split and the per-prompt values the report's
    intervals rest on (win rates, gold win rate and reward, KL, length; for the LC win rate, a fitted GLM, its
    jackknife pseudo-value within the prompt's split, whose LC win rate the report reports)."""
    wins = annotations.assign(win=preferences(annotations)).groupby("prompt_id")["win"].mean()
    lc: dict[Any, float] = {}
    for split in SPLITS:
        part = annotations[annotations["prompt_id"].map(prompt_split) == split].reset_index(drop=True)
        if len(part):
            lc |= lc_pseudo_values(part, gamed_csv)
    columns = {
        "win_rate": {k: float(v) for k, v in wins.items()},
        "lc_win_rate": lc,
        "kl_seq": per_prompt(policy, kl_exact),
        "length_tokens_mean": per_prompt(policy, lambda r: r["n_tokens"]),
    }
    if gold is not None:
        alpha = gold.alphas[0]

        def score(text: str) -> float:
            return gold.reward(text, alpha)

        columns["gold_win_rate"] = per_prompt(_pairwise(policy, reference, score), lambda r: r["win"])
        columns["gold_reward_mean"] = per_prompt(policy, lambda r: score(r["completion"]))
    prompts = per_prompt(policy, lambda r: 0.0)
    return [
        {"prompt_id": pid, "split": prompt_split(pid)} | {m: col.get(pid) for m, col in columns.items()}
        for pid in prompts
    ]


OFFPOLICY_MAX_PAIRS = 512


def offpolicy_pairs(spec: RunSpec) -> int:
    """Training pairs the off-policy diagnostic scores: 512 at most, and no more than the run's optimiser
    steps drew (max_steps x batch_size), so a run of a few steps (a smoke test, a shrunk study) does not
    pay two models' forward passes over 512 pairs for its diagnostic."""
    t = spec.train
    return OFFPOLICY_MAX_PAIRS if t.max_steps <= 0 else min(OFFPOLICY_MAX_PAIRS, t.max_steps * t.batch_size)


def _offpolicy(ctx: Context) -> Mapping[str, float]:
    """The off-policy diagnostic of a final model: log-ratios on the training pairs (needs both models; ranked
    lists give their best-against-worst pairs). Unpaired training rows have no pairs: the diagnostic is
    left out, without loading a model."""
    rows = ctx.sources.data.training_rows()
    if data_shape(rows) == "unpaired":
        log.info("off-policy diagnostic left out: the training rows are unpaired (no chosen/rejected pairs)")
        return {}
    pairs = to_shape(rows, "pairs", f"dataset={ctx.spec.dataset.name}")
    policy, tok = ctx.sources.model.load(ctx.policy)
    reference, _ = ctx.sources.model.load(ctx.sources.model.reference())
    chat = uses_chat_template(tok, ctx.spec.model.chat_template)
    return offpolicy_logratios(
        policy, reference, tok, pairs, offpolicy_pairs(ctx.spec), seed=ctx.spec.seed, chat=chat
    )


class Metrics(Stage):
    """metrics.jsonl (one number a row) and per_prompt.jsonl: samples, judge, lm-eval and, for a final model,
    the off-policy log-ratios on the training pairs (over training each step would cost a pass over them)."""

    name = "metrics"

    def reads(self, ctx: Context) -> list[Path]:
        return [
            ctx.run_dir / GENERATIONS,
            ctx.reference_dir / GENERATIONS,
            annotations_path(ctx.spec, ctx.run_dir),
        ]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / "metrics.jsonl"]

    def run(self, ctx: Context) -> None:
        spec, e = ctx.spec, ctx.spec.eval
        gold = ctx.sources.data.gold()
        policy = read_jsonl(ctx.run_dir / GENERATIONS)
        reference = read_jsonl(ctx.reference_dir / GENERATIONS)
        rows = sample_metrics(policy, reference, gold, e.bootstrap, e.ci_level, spec.seed)
        annotations = load_annotations(annotations_path(spec, ctx.run_dir))
        rows += judge_metric_rows(_judge_metrics(annotations, spec))
        rows += split_rows(spec, gold, policy, reference, annotations)
        atomic_write_jsonl(
            ctx.run_dir / "per_prompt.jsonl",
            per_prompt_rows(gold, policy, reference, annotations, e.alpaca_eval_gamed_csv),
        )
        if ctx.step is None:
            rows += offpolicy_metric_rows(_offpolicy(ctx))
        if (ctx.run_dir / LM_EVAL).exists():  # evaluations over training (the curve stage) skip lm-eval
            rows += lm_eval_metric_rows(lm_eval_rows(ctx.run_dir / LM_EVAL))
        rows = mark_tempered_kl(spec, rows)
        atomic_write_jsonl(ctx.run_dir / "metrics.jsonl", rows)
        if spec.logging.wandb and ctx.step is None:
            log_final_metrics(spec, ctx.run_dir, rows)


def reference_metrics(ctx: Context, folder: Path) -> None:
    """metrics.jsonl of the reference model itself: the table's baseline row. Judged against
    eval.reference_outputs when that is set; against itself its win rates are 1/2 by definition."""
    spec, e = ctx.spec, ctx.spec.eval
    gold = ctx.sources.data.gold()
    reference = read_jsonl(folder / GENERATIONS)
    rows = sample_metrics(reference, reference, gold, e.bootstrap, e.ci_level, spec.seed)
    judged = annotations_path(spec, folder)
    if judged.exists():  # judged against eval.reference_outputs (bench.stages.reference)
        annotations = load_annotations(judged)
        rows += judge_metric_rows(_judge_metrics(annotations, spec))
        rows += split_rows(spec, gold, reference, reference, annotations)
    else:  # against itself: 1/2 by definition
        rows += [{"metric": m, "value": 0.5, "stderr": 0.0} for m in JUDGE_RATES]
        rows += split_rows(spec, gold, reference, reference, None)
        rows += [
            {"metric": m, "value": 0.5, "stderr": 0.0, "split": sp} for sp in SPLITS for m in JUDGE_RATES
        ]
    rows += lm_eval_metric_rows(lm_eval_rows(folder / LM_EVAL))
    atomic_write_jsonl(folder / "metrics.jsonl", rows)
