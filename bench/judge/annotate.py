"""Annotating: every policy sample against every reference sample of its prompt, through a real
`alpaca_eval.evaluate` call, written atomically as judgments/<judge>/annotations.json + leaderboard.csv."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.errors import ConfigError, UnavailableError
from bench.core.records import atomic_dir
from bench.judge.api import check_api_judge, library_tracebacks_folded, secrets_redacted
from bench.judge.api_calls import ResumableCompletions
from bench.judge.references import (
    alpaca_eval_instructions,
    load_gamed_csv,
    load_reference_outputs,
    prompt_index,
    reference_rows_from_file,
)
from bench.judge.registry import check_our_judge, fn_completions, quiet_alpaca_eval_import, resolve_judge
from bench.judge.winrates import win_rates

if TYPE_CHECKING:
    import pandas as pd

    from bench.sources import Sources
    from bench.specs import RunSpec

log = logging.getLogger(__name__)
POLICY, REFERENCE = "policy", "reference"  # generator names: output_2 and output_1 in AlpacaEval's terms
ID_COLUMNS = ["prompt_id", "policy_sample", "reference_sample"]


def check_judge(spec: RunSpec, sources: Sources) -> None:
    """Preflight, before any compute: the judge exists and can run here (our judge's model folder and tokens;
    an API judge's key, package and endpoint), and the reference-outputs file and gamed csv are readable.
    Which prompts the reference file must cover is known only after generation: run_judge checks that."""
    judge = resolve_judge(spec.eval.judge)
    checks: list[Callable[[], object]] = [
        lambda: (
            check_our_judge(judge, spec, sources)
            if judge.kind == "ours"
            else check_api_judge(judge.name, judge.config)
        )
    ]
    if spec.eval.reference_outputs:
        checks.append(lambda: load_reference_outputs(str(spec.eval.reference_outputs)))
    if spec.eval.alpaca_eval_gamed_csv:
        checks.append(lambda: load_gamed_csv(str(spec.eval.alpaca_eval_gamed_csv)))
    missing: list[str] = []  # what this machine lacks: reported together, after every other check ran
    for check in checks:
        try:
            check()
        except UnavailableError as err:
            missing.append(str(err))
    if missing:
        raise UnavailableError("; ".join(missing))


def annotations_path(spec: RunSpec, run_dir: Path) -> Path:
    """run_dir/judgments/<judge>/annotations.json: its existence marks the judge stage complete."""
    return Path(run_dir) / "judgments" / spec.eval.judge / "annotations.json"


def load_annotations(path: Path) -> pd.DataFrame:
    """annotations.json as a DataFrame (plain json, so pandas does not guess dates or dtypes)."""
    import pandas as pd

    return pd.DataFrame(json.loads(Path(path).read_text()))


def _by_prompt(rows: list[dict[str, Any]], side: str) -> dict[int, tuple[str, dict[int, str]]]:
    """{prompt_id: (prompt, {sample: completion})}, refusing duplicate (prompt_id, sample) rows."""
    out: dict[int, tuple[str, dict[int, str]]] = {}
    for row in rows:
        pid, sample = int(row["prompt_id"]), int(row["sample"])
        prompt, samples = out.setdefault(pid, (row["prompt"], {}))
        if row["prompt"] != prompt:
            raise ConfigError(f"{side} generations: prompt_id {pid} has two different prompts")
        if sample in samples:
            raise ConfigError(f"{side} generations: duplicate row for prompt_id {pid}, sample {sample}")
        samples[sample] = row["completion"]
    return out


def _pair_rows(
    policy_rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]], reference_name: str = REFERENCE
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """AlpacaEval's two inputs, one row per (prompt, policy sample, reference sample), in matching order.

    annotate_head2head otherwise merges on `instruction` (a cartesian product of all rows sharing a prompt,
    then drop_duplicates over whole rows); with is_ordered=True it merges row i with row i. So both sides are
    laid out pair by pair and merged by order, and the id columns ride along into the annotations.
    """
    policy, reference = _by_prompt(policy_rows, POLICY), _by_prompt(reference_rows, REFERENCE)
    if set(policy) != set(reference):
        only = sorted(set(policy) ^ set(reference))[:5]
        raise ConfigError(f"policy and reference generations cover different prompt_ids (e.g. {only})")
    outputs_1: list[dict[str, Any]] = []
    outputs_2: list[dict[str, Any]] = []
    for pid in sorted(policy):
        prompt, pol = policy[pid]
        if reference[pid][0] != prompt:
            raise ConfigError(f"prompt_id {pid}: the policy and reference rows have different prompts")
        for i, pol_text in sorted(pol.items()):
            for j, ref_text in sorted(reference[pid][1].items()):
                base = {"instruction": prompt, "prompt_id": pid}
                outputs_1.append(
                    {**base, "output": ref_text, "generator": reference_name, "reference_sample": j}
                )
                outputs_2.append({**base, "output": pol_text, "generator": POLICY, "policy_sample": i})
    return outputs_1, outputs_2


def _check_complete(df: pd.DataFrame, expected: int) -> None:
    """Every pair must come back, once: AlpacaEval returns a pair whose verdict failed to parse with a NaN
    preference (run_judge counts those as malformed); a missing or duplicated pair is a bug."""
    missing = [c for c in [*ID_COLUMNS, "preference", "output_1", "output_2"] if c not in df.columns]
    if missing:
        raise RuntimeError(f"alpaca_eval returned annotations without columns {missing}")
    if len(df) != expected:
        raise RuntimeError(f"judge: expected {expected} annotated pairs, got {len(df)} rows")
    if df.duplicated(ID_COLUMNS).any():
        raise RuntimeError(
            "judge: alpaca_eval returned duplicate (prompt_id, policy_sample, reference_sample)"
        )


def _drop_malformed(df: pd.DataFrame, spec: RunSpec) -> tuple[pd.DataFrame, int]:
    """The pairs with a verdict, and how many had an unparseable one (malformed). Those are left out of every
    win rate, never read as ties or wins; a log line names them, and above eval.judge_max_malformed of all
    pairs the stage fails (a judge that mostly answers nonsense is misconfigured, not noisy)."""
    bad = df["preference"].isna()
    n_bad, n = int(bad.sum()), len(df)
    if not n_bad:
        return df, 0
    pairs = [tuple(int(v) for v in row) for row in df.loc[bad, ID_COLUMNS].itertuples(index=False)]
    shown = ", ".join(map(str, pairs[:5])) + (", ..." if n_bad > 5 else "")
    judge = spec.eval.judge
    log.warning(
        "judge %s: %d of %d verdicts were malformed (unparseable judge output) and are left out of the win "
        "rates: (prompt_id, policy_sample, reference_sample) %s",
        judge, n_bad, n, shown,
    )  # fmt: skip
    if n_bad > spec.eval.judge_max_malformed * n:
        raise ConfigError(
            f"judge {judge}: {n_bad} of {n} verdicts were malformed (unparseable), more than "
            f"eval.judge_max_malformed={spec.eval.judge_max_malformed:g} of them: check that the judge's "
            "model answers in the format its AlpacaEval config parses (the log shows the raw answers), or "
            "raise eval.judge_max_malformed"
        )
    return df[~bad].reset_index(drop=True), n_bad


def partial_answers_path(spec: RunSpec, run_dir: Path) -> Path:
    """judgments/<judge>.partial.jsonl: an API judge's answers kept while its stage is unfinished."""
    return annotations_path(spec, run_dir).parent.with_suffix(".partial.jsonl")


def _resumable_annotator(spec: RunSpec, run_dir: Path) -> Callable[..., Any]:
    """alpaca_eval.evaluate's `Annotator`: its PairwiseAnnotator with every openai_completions decoder wrapped
    in ResumableCompletions (retries, answers kept; `annotators` and `fn_completions` are public attributes).
    Other decoders (anthropic, ...) are left as alpaca_eval runs them."""
    from alpaca_eval.annotators import PairwiseAnnotator
    from alpaca_eval.decoders.openai import openai_completions

    calls = ResumableCompletions(
        openai_completions, partial_answers_path(spec, run_dir), spec.eval.judge_api, spec.eval.judge
    )

    def build(**kwargs: Any) -> Any:
        annotator = PairwiseAnnotator(**kwargs)
        for single in annotator.annotators.values():
            if single.fn_completions is openai_completions:
                single.fn_completions = calls
        return annotator

    return build


def _alpaca_eval_index(
    spec: RunSpec, prompts: set[str], references: list[dict[str, str]] | None
) -> dict[str, int] | None:
    """{prompt: AlpacaEval index} when a gamed csv is configured and the prompts are exactly its instructions
    (the condition for length_controlled_v1), else None."""
    if not spec.eval.alpaca_eval_gamed_csv:
        return None
    gamed = load_gamed_csv(spec.eval.alpaca_eval_gamed_csv)
    return prompt_index(prompts, alpaca_eval_instructions(gamed, references))


def _leaderboard_extras(rates: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    """Our numbers in the leaderboard, in AlpacaEval's percent scale and column names where it has them."""
    pct = {
        "win_rate": "win_rate",
        "discrete_win_rate": "win_rate_hard",
        "length_controlled_winrate": "lc_win_rate",
    }
    extras: dict[str, Any] = {
        "length_controlled_winrate": 100 * rates["lc_win_rate"],
        "lc_standard_error": 100 * rates["lc_win_rate_stderr"],
        "lc_glm": rates["lc_glm"],
        "bootstrap": spec.eval.bootstrap,
        "ci_level": spec.eval.ci_level,
    }
    for column, key in pct.items():
        for side in ("low", "high"):
            extras[f"{column}_ci_{side}"] = 100 * rates[f"{key}_ci_{side}"]
    return extras


def run_judge(
    spec: RunSpec,
    sources: Sources,
    run_dir: Path,
    policy_rows: list[dict[str, Any]],
    reference_rows: list[dict[str, Any]],
) -> Path:
    """Judge every policy sample against every reference sample of its prompt through `alpaca_eval.evaluate`.

    The reference samples are `reference_rows` (the reference model's), or with eval.reference_outputs that
    file's outputs for each prompt (checked to cover every prompt before anything is annotated).
    Writes run_dir/judgments/<judge>/annotations.json (one record per pair with a verdict) and leaderboard.csv
    (with lc_glm, bootstrap intervals, n_pairs and n_malformed: verdicts that did not parse, left out) in one
    rename, so a killed run leaves nothing; returns the annotations path, skipping the work when it exists.
    An API judge's answers are kept as they arrive (partial_answers_path), so a rerun after a failure asks
    only for the missing ones (bench.judge.api_calls).
    """
    judge = resolve_judge(spec.eval.judge)
    path = annotations_path(spec, run_dir)
    if path.exists():
        return path
    references, reference_name = None, REFERENCE
    if spec.eval.reference_outputs:
        references = load_reference_outputs(spec.eval.reference_outputs)
        reference_rows, reference_name = reference_rows_from_file(
            policy_rows, references, spec.eval.reference_outputs
        )
    outputs_1, outputs_2 = _pair_rows(policy_rows, reference_rows, reference_name)
    index = _alpaca_eval_index(spec, {r["instruction"] for r in outputs_2}, references)
    fn = fn_completions(judge, spec, sources)
    with quiet_alpaca_eval_import():
        import alpaca_eval
        import pandas as pd

    t0 = time.perf_counter()
    log.info("judge %s: annotating %d policy/reference pairs ...", judge.name, len(outputs_1))
    extra: dict[str, Any] = {"fn_completions": fn} if fn is not None else {}
    if judge.kind == "alpaca_eval":
        extra["Annotator"] = _resumable_annotator(spec, run_dir)
    with library_tracebacks_folded(), secrets_redacted():
        leaderboard, annotations = alpaca_eval.evaluate(
            model_outputs=pd.DataFrame(outputs_2),
            reference_outputs=pd.DataFrame(outputs_1),
            annotators_config=judge.config,
            name=POLICY,
            output_path=None,  # we write the files ourselves, atomically
            precomputed_leaderboard=None,
            caching_path=None,  # a second run with it crashes under pandas 3; api_calls keeps API answers
            is_return_instead_of_print=True,
            sort_by="win_rate",
            fn_metric="get_winrate",
            annotation_kwargs={"is_ordered": True, "chunksize": None},  # one chunk: no per-128-row overhead
            **extra,
        )
    df = pd.DataFrame(annotations)
    _check_complete(df, len(outputs_1))
    df, n_malformed = _drop_malformed(df, spec)
    df = df.astype({c: int for c in ID_COLUMNS}).sort_values(ID_COLUMNS, kind="stable").reset_index(drop=True)
    if index is not None:
        df["alpaca_eval_index"] = df["instruction"].map(index).astype(int)
    e = spec.eval
    rates = win_rates(df, e.bootstrap, e.ci_level, spec.seed, gamed_csv=e.alpaca_eval_gamed_csv)
    for column, value in _leaderboard_extras(rates, spec).items():
        leaderboard[column] = value
    leaderboard["n_pairs"], leaderboard["n_malformed"] = len(outputs_1), n_malformed
    with atomic_dir(path.parent) as tmp:
        df.to_json(tmp / "annotations.json", orient="records", indent=2, double_precision=15)
        leaderboard.to_csv(tmp / "leaderboard.csv")
    partial_answers_path(spec, run_dir).unlink(missing_ok=True)  # every answer is in annotations.json now
    log.info("judge %s: %d pairs in %.1f s -> %s", judge.name, len(df), time.perf_counter() - t0, path.parent)
    return path
