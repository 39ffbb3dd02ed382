"""The metrics stage: KL estimators, lengths, gold reward and win rates into metrics.jsonl (one number a row).

Standard errors are over prompts: the samples of one prompt are averaged first, since samples that share a
prompt are not independent. KL definitions follow ARCHITECTURE.md (Metrics): the exact per-step KL summed
along each sampled path is the primary estimate; k1 and k3 are reported beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.records import atomic_write_jsonl, read_jsonl

if TYPE_CHECKING:
    from bench.config import RunSpec

Row = dict[str, Any]


def mean_se_over_prompts(rows: Iterable[Row], value: Callable[[Row], float]) -> tuple[float, float]:
    """Mean of per-prompt means, and its standard error across prompts."""
    per_prompt: dict[Any, list[float]] = defaultdict(list)
    for r in rows:
        per_prompt[r["prompt_id"]].append(value(r))
    means = [sum(v) / len(v) for v in per_prompt.values()]
    n = len(means)
    if n == 0:
        return math.nan, math.nan
    mean = sum(means) / n
    var = sum((m - mean) ** 2 for m in means) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def kl_k1(r: Row) -> float:
    """k1 = sum_t log pi - log ref: unbiased for KL(pi || ref) on policy samples, but noisy."""
    return sum(a - b for a, b in zip(r["logprobs"], r["ref_logprobs"], strict=True))


def kl_k3(r: Row) -> float:
    """Sequence-level k3 = exp(s) - 1 - s with s = log ref/pi of the whole sequence (Schulman 2020).

    Non-negative, but at sequence level biased low in practice (ARCHITECTURE.md): reported, not primary.
    """
    s = -kl_k1(r)
    return math.expm1(s) - s if s < 700 else math.inf


def kl_exact(r: Row) -> float:
    """sum_t KL(pi(.|prefix_t) || ref(.|prefix_t)) along the sampled path: unbiased, lowest variance."""
    return float(sum(r["kl_steps"]))


def _pairwise(policy: list[Row], reference: list[Row], score: Callable[[str], float]) -> list[Row]:
    """Per prompt, the fraction of (policy, reference) sample pairs where policy scores higher (ties 1/2)."""
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


def sample_metrics(rows: list[Row], reference: list[Row], gold_alphas: Iterable[float]) -> list[Row]:
    """KL, length and (toy world) gold-reward metrics of one model's samples against the reference's."""
    from bench.data.toyworld.process import gold_reward, sentiment

    out: list[Row] = []

    def add(metric: str, value: float, stderr: float | None = None) -> None:
        out.append({"metric": metric, "value": value, "stderr": stderr})

    for name, fn in (("kl_seq", kl_exact), ("kl_seq_k1", kl_k1), ("kl_seq_k3", kl_k3)):
        add(name, *mean_se_over_prompts(rows, fn))
    length, length_se = mean_se_over_prompts(rows, lambda r: r["n_tokens"])
    ref_length = mean_se_over_prompts(reference, lambda r: r["n_tokens"])[0]
    add("length_tokens_mean", length, length_se)
    add("length_chars_mean", *mean_se_over_prompts(rows, lambda r: len(r["completion"])))
    add("length_ratio", length / ref_length if ref_length else math.nan)
    add("finished_rate", *mean_se_over_prompts(rows, lambda r: float(r["finished"])))
    add("sentiment_mean", *mean_se_over_prompts(rows, lambda r: sentiment(r["completion"])))
    for i, alpha in enumerate(gold_alphas):
        suffix = "" if i == 0 else f"_alpha{alpha:g}"

        def gold(text: str, a: float = alpha) -> float:
            return gold_reward(text, a)

        add(f"gold_reward_mean{suffix}", *mean_se_over_prompts(rows, lambda r, g=gold: g(r["completion"])))  # type: ignore[misc]
        add(
            f"gold_win_rate{suffix}",
            *mean_se_over_prompts(_pairwise(rows, reference, gold), lambda r: r["win"]),
        )
    return out


def run_metrics(spec: RunSpec, run_dir: Path, reference_generations: Path) -> Path:
    """metrics.jsonl of a trained run: samples, judge and lm-eval metrics. Skipped when it exists."""
    from bench.data.toyworld.build import world_params
    from bench.evaluate import lm_eval_rows
    from bench.judge import annotations_path, load_annotations, win_rates

    out = run_dir / "metrics.jsonl"
    if out.exists():
        return out
    policy = read_jsonl(run_dir / "generations.jsonl")
    reference = read_jsonl(reference_generations)
    rows = sample_metrics(policy, reference, world_params(spec).gold_alphas)
    rates = win_rates(load_annotations(annotations_path(spec, run_dir)))
    for name in ("win_rate", "win_rate_hard", "lc_win_rate"):
        rows.append({"metric": name, "value": rates[name], "stderr": rates.get(f"{name}_stderr")})
    rows += lm_eval_metric_rows(lm_eval_rows(run_dir / "lm_eval.json"))
    atomic_write_jsonl(out, rows)
    return out


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
    from bench.data.toyworld.build import world_params
    from bench.evaluate import lm_eval_rows

    out = folder / "metrics.jsonl"
    if out.exists():
        return out
    reference = read_jsonl(folder / "generations.jsonl")
    rows = sample_metrics(reference, reference, world_params(spec).gold_alphas)
    rows += [{"metric": m, "value": 0.5, "stderr": 0.0} for m in ("win_rate", "win_rate_hard", "lc_win_rate")]
    rows += lm_eval_metric_rows(lm_eval_rows(folder / "lm_eval.json"))
    atomic_write_jsonl(out, rows)
    return out
