"""process_results of the toy lm-eval tasks (the YAMLs name it `!function utils.process_results`)."""

from __future__ import annotations

from typing import Any


def process_results(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    """Per-doc NLL metrics of toy_nll from lm-eval's (loglikelihood, is_greedy) of completion + eos.

    `n_tokens` counts the completion's words plus the eos, the tokens the loglikelihood covers.
    `true_nll` is -log p of the same completion under the true base process, so excess_nll is >= 0 in
    expectation and measures how far the model is from the process that generated the data.
    """
    loglikelihood, _ = results[0]
    nll = -float(loglikelihood)
    return {
        "nll_per_token": nll / doc["n_tokens"],
        "nll": nll,
        "excess_nll": nll - float(doc["true_nll"]),
    }
