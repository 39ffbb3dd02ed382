"""Judging: AlpacaEval pairwise preferences of policy vs reference outputs, and their win rates (the judge
stage, bench.stages.judge, calls it).

This package is the one place that imports alpaca_eval (lazily: it takes seconds to import, needs
setuptools<81, and sets the root logger to INFO on import). Every judge goes through `alpaca_eval.evaluate`:

* our judges, annotators/<name>_judge/ + bench/judge/<name>.py supplying a Python `fn_completions`:
  toy (the toy world's length-biased judge), local_lm (a causal LM's next-token probabilities of AlpacaEval's
  two answer tokens, eval.judge_model) and reward_model (Bradley-Terry on a sequence classifier's rewards);
* AlpacaEval's own annotator configs by folder name (weighted_alpaca_eval_gpt4_turbo, ...), calling the API
  their configs name with the key and base URL from the environment (preflight: bench.judge.api).

Modules: registry (names), api (API preflight), api_calls (API faults: retries, answers kept), references
(what is judged against; AlpacaEval's prompt set), annotate (run_judge, check_judge, files), winrates (win
rates, bootstrap, length sensitivity), lc (the length-controlled GLM offline),
markers/toy/local_lm/reward_model (our judges).
"""

from __future__ import annotations

from bench.judge.annotate import (
    ID_COLUMNS,
    POLICY,
    REFERENCE,
    annotations_path,
    check_judge,
    load_annotations,
    run_judge,
)
from bench.judge.lc import LC_GLM, LC_GLM_V1, lc_win_rate_minimal
from bench.judge.registry import ANNOTATORS_DIR, available_judges
from bench.judge.winrates import judge_length_stats, win_rates

__all__ = [
    "ANNOTATORS_DIR",
    "ID_COLUMNS",
    "LC_GLM",
    "LC_GLM_V1",
    "POLICY",
    "REFERENCE",
    "annotations_path",
    "available_judges",
    "check_judge",
    "judge_length_stats",
    "lc_win_rate_minimal",
    "load_annotations",
    "run_judge",
    "win_rates",
]
