"""The metrics stage: KL, lengths, gold reward and win rates into metrics.jsonl (one number a row).

A row is {"metric", "value", "stderr"} plus, where a bootstrap ran (eval.bootstrap resamples, eval.ci_level),
"ci_low" and "ci_high"; lc_win_rate also names its GLM ("glm"). Standard errors and intervals are over
prompts: the samples of one prompt are averaged first, since samples that share a prompt are not independent,
and the bootstrap resamples prompts. Every interval of one call uses the same seed, hence the same resampled
prompt sets: intervals of different metrics come from one joint bootstrap.

KL definitions follow ARCHITECTURE.md (Metrics) and live in bench/kl.py; this module turns them into rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from bench.kl import kl_exact, kl_k1, kl_k3, n_steps, token_k3_sum
from bench.records import atomic_write_jsonl, read_jsonl
from bench.splits import SPLITS, prompt_split

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec

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


def mean_se(values: Iterable[float]) -> tuple[float, float]:
    """Mean and its standard error (sample sd / sqrt(n)); (nan, nan) when empty, se nan for one value."""
    x = np.asarray(list(values), dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def ratio_se(num: Iterable[float], den: Iterable[float]) -> tuple[float, float]:
    """sum(num) / sum(den) over prompts and its delta-method (ratio-estimator) standard error.

    R = mean(a) / mean(b); se(R) = sd(a_i - R b_i) / (sqrt(n) mean(b)). Used where each prompt gives a
    numerator and a denominator (KL and tokens, policy and reference lengths), neither of them fixed.
    """
    a, b = np.asarray(list(num), dtype=float), np.asarray(list(den), dtype=float)
    n = len(a)
    if n == 0 or b.sum() == 0:
        return math.nan, math.nan
    r = float(a.sum() / b.sum())
    if n == 1:
        return r, math.nan
    return r, float((a - r * b).std(ddof=1) / (math.sqrt(n) * b.mean()))


def bootstrap_ci(
    per_prompt_values: ArrayLike,
    statistic: Callable[[np.ndarray], float],
    n: int,
    level: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over prompts.

    per_prompt_values: one entry per prompt, a number or a row of numbers (shape (P,) or (P, k), so a ratio
    of two per-prompt quantities resamples both together). Draws `n` resamples of P prompts with replacement
    (numpy's default_rng(seed): the same prompt sets for a given (seed, P)) and returns the (1 - level) / 2
    and (1 + level) / 2 quantiles of the statistic. (nan, nan) when n is 0 or there are fewer than 2 prompts.
    """
    values = np.asarray(per_prompt_values, dtype=float)
    prompts = len(values)
    if n <= 0 or prompts < 2:
        return math.nan, math.nan
    index = np.random.default_rng(seed).integers(0, prompts, size=(n, prompts))
    stats = np.array([statistic(values[i]) for i in index], dtype=float)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


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


def gold_alphas(spec: RunSpec) -> tuple[float, ...]:
    """The gold reward's repetition weights: the toy world's; none elsewhere (no known true reward)."""
    if spec.dataset.source != "toyworld":
        return ()
    from bench.data.toyworld.build import world_params

    return tuple(world_params(spec).gold_alphas)


def sample_metrics(
    rows: list[Row],
    reference: list[Row],
    gold_alphas: Iterable[float],
    bootstrap: int = 0,
    ci_level: float = 0.95,
    seed: int = 0,
) -> list[Row]:
    """KL, length and (toy world: `gold_alphas` non-empty) sentiment and gold-reward metrics of one model's
    samples against the reference's."""
    from bench.data.toyworld.process import gold_reward, sentiment

    gold_alphas = tuple(gold_alphas)

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
    if gold_alphas:  # the toy world's vocabulary
        out.mean("sentiment_mean", per_prompt(rows, lambda r: sentiment(r["completion"])))
    for i, alpha in enumerate(gold_alphas):
        suffix = "" if i == 0 else f"_alpha{alpha:g}"

        def gold(text: str, a: float = alpha) -> float:
            return gold_reward(text, a)

        out.mean(f"gold_reward_mean{suffix}", per_prompt(rows, lambda r, g=gold: g(r["completion"])))  # type: ignore[misc]
        out.mean(f"gold_win_rate{suffix}", per_prompt(_pairwise(rows, reference, gold), lambda r: r["win"]))
    return out.rows


def _judge_metrics(annotations: pd.DataFrame, spec: RunSpec, bootstrap: int | None = None) -> dict[str, Any]:
    """The judge's numbers: win rates with bootstrap intervals (the LC GLM refitted per resample), which GLM
    was used, and the judge's length statistics. The one place this module calls the judge.

    Keys: win_rate, win_rate_hard, lc_win_rate, each with _stderr, _ci_low and _ci_high; lc_glm;
    judge_length_slope (log-odds per 100 characters), length_win_correlation, lc_minus_raw."""
    from bench.judge import judge_length_stats, win_rates

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
    """Rows of bench.kl.offpolicy_logratios' result (log-ratios in nats per sequence, accuracy a fraction)."""
    return [{"metric": m, "value": stats[m], "stderr": stats[f"{m}_stderr"]} for m in OFFPOLICY]


def run_metrics(
    spec: RunSpec,
    run_dir: Path,
    reference_generations: Path,
    offpolicy: Mapping[str, float] | None = None,
) -> Path:
    """metrics.jsonl of a trained run: samples, judge and lm-eval metrics. Skipped when it exists.

    offpolicy: bench.kl.offpolicy_logratios(policy, reference, tokenizer, training pairs), computed by the
    caller (it needs both models in memory); its three rows are added when given.
    """
    from bench.evaluate import lm_eval_rows
    from bench.judge import annotations_path, load_annotations

    out = run_dir / "metrics.jsonl"
    if out.exists():
        return out
    policy = read_jsonl(run_dir / "generations.jsonl")
    reference = read_jsonl(reference_generations)
    e = spec.eval
    rows = sample_metrics(policy, reference, gold_alphas(spec), e.bootstrap, e.ci_level, spec.seed)
    annotations = load_annotations(annotations_path(spec, run_dir))
    rows += judge_metric_rows(_judge_metrics(annotations, spec))
    rows += split_rows(spec, policy, reference, annotations)
    atomic_write_jsonl(run_dir / "per_prompt.jsonl", per_prompt_rows(spec, policy, reference, annotations))
    if offpolicy is not None:
        rows += offpolicy_metric_rows(offpolicy)
    if (run_dir / "lm_eval.json").exists():  # evaluations over training (bench/curve.py) skip lm-eval
        rows += lm_eval_metric_rows(lm_eval_rows(run_dir / "lm_eval.json"))
    atomic_write_jsonl(out, mark_tempered_kl(spec, rows))
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
    spec: RunSpec, policy: list[Row], reference: list[Row], annotations: pd.DataFrame | None
) -> list[Row]:
    """The sample and judge metrics again on each prompt split (bench.splits), rows tagged "split": the
    report selects configurations on one split and reports them on the other. Standard errors only: the
    report's intervals come from per_prompt.jsonl, over seeds and prompts."""
    rows: list[Row] = []
    for split in SPLITS:
        pol = [r for r in policy if prompt_split(r["prompt_id"]) == split]
        ref = [r for r in reference if prompt_split(r["prompt_id"]) == split]
        if not pol:
            continue
        part = sample_metrics(pol, ref, gold_alphas(spec)[:1])
        if annotations is not None:
            mask = annotations["prompt_id"].map(prompt_split) == split
            part += judge_metric_rows(_judge_metrics(annotations[mask].reset_index(drop=True), spec, 0))
        rows += [r | {"split": split} for r in part]
    return rows


def per_prompt_rows(
    spec: RunSpec, policy: list[Row], reference: list[Row], annotations: pd.DataFrame
) -> list[Row]:
    """per_prompt.jsonl: one row per evaluation prompt with its split and the per-prompt values of the
    metrics a report resamples (win rates, gold win rate and reward, KL, length)."""
    from bench.data.toyworld.process import gold_reward
    from bench.judge.winrates import _preferences

    wins = annotations.assign(win=_preferences(annotations)).groupby("prompt_id")["win"].mean()
    columns = {
        "win_rate": {k: float(v) for k, v in wins.items()},
        "kl_seq": per_prompt(policy, kl_exact),
        "length_tokens_mean": per_prompt(policy, lambda r: r["n_tokens"]),
    }
    alphas = gold_alphas(spec)
    if alphas:

        def gold(text: str) -> float:
            return gold_reward(text, alphas[0])

        columns["gold_win_rate"] = per_prompt(_pairwise(policy, reference, gold), lambda r: r["win"])
        columns["gold_reward_mean"] = per_prompt(policy, lambda r: gold(r["completion"]))
    prompts = per_prompt(policy, lambda r: 0.0)
    return [
        {"prompt_id": pid, "split": prompt_split(pid)} | {m: col.get(pid) for m, col in columns.items()}
        for pid in prompts
    ]


def lm_eval_metric_rows(flat: list[Row]) -> list[Row]:
    """lm-eval results as metric rows named lm_eval/<task>/<metric> (filter appended when not 'none')."""
    out = []
    for r in flat:
        name = f"lm_eval/{r['task']}/{r['metric']}" + (
            "" if r["filter"] in (None, "none") else f"/{r['filter']}"
        )
        out.append({"metric": name, "value": r["value"], "stderr": r["stderr"]})
    return out


def reference_metrics(spec: RunSpec, folder: Path) -> Path:
    """metrics.jsonl of the reference model itself: the table's baseline row (win rates 0.5 by definition)."""
    from bench.evaluate import lm_eval_rows
    from bench.judge import annotations_path, load_annotations

    out = folder / "metrics.jsonl"
    if out.exists():
        return out
    reference = read_jsonl(folder / "generations.jsonl")
    e = spec.eval
    rows = sample_metrics(reference, reference, gold_alphas(spec), e.bootstrap, e.ci_level, spec.seed)
    judged = annotations_path(spec, folder)
    if judged.exists():  # judged against eval.reference_outputs (bench.run.evaluate_reference)
        annotations = load_annotations(judged)
        rows += judge_metric_rows(_judge_metrics(annotations, spec))
        rows += split_rows(spec, reference, reference, annotations)
    else:  # against itself: 1/2 by definition
        rows += [{"metric": m, "value": 0.5, "stderr": 0.0} for m in JUDGE_RATES]
        rows += split_rows(spec, reference, reference, None)
        rows += [
            {"metric": m, "value": 0.5, "stderr": 0.0, "split": sp} for sp in SPLITS for m in JUDGE_RATES
        ]
    rows += lm_eval_metric_rows(lm_eval_rows(folder / "lm_eval.json"))
    atomic_write_jsonl(out, rows)
    return out
