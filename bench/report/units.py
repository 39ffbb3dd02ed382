"""What each reported number is measured in, for the table headers (the CSV twins keep bare metric names)."""

from __future__ import annotations

UNITS = {
    "win_rate": "fraction",
    "win_rate_hard": "fraction",
    "lc_win_rate": "fraction",
    "gold_win_rate": "fraction",
    "gold_reward_mean": "gold reward",
    "kl_seq": "nats/seq",
    "kl_seq_k1": "nats/seq",
    "kl_seq_k3": "nats/seq",
    "length_tokens_mean": "tokens",
    "length_ratio": "x reference",
    "toy_nll/nll_per_token": "nats/token",
    "toy_mc/acc": "fraction",
}


def headed(label: str, metric: str) -> str:
    """`label` with the metric's unit appended, e.g. 'test kl_seq (nats/seq)'; unchanged for unknown units."""
    unit = UNITS.get(metric.removeprefix("lm_eval/"))
    return f"{label} ({unit})" if unit else label
