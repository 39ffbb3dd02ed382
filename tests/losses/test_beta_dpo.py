"""beta-DPO's dynamic beta and data selection (bench/losses/beta_dpo.py), over several batches: the running
gap statistics, the share kept, the batch's beta against the running mean, and DPO at alpha 0 and keep 1."""

from __future__ import annotations

import torch

from bench.losses import SequenceStats, build_loss


def batch(gaps: list[float]) -> SequenceStats:
    """Pairs whose chosen log-ratio is gap / 2 and rejected -gap / 2 (reference at 0)."""
    h = torch.tensor(gaps, dtype=torch.float64)
    zeros = torch.zeros_like(h)
    ones = torch.ones(len(gaps), dtype=torch.long)
    return SequenceStats(h / 2, -h / 2, ones, ones, zeros, zeros)


def test_alpha_zero_and_keep_one_is_dpo_over_batches() -> None:
    beta_dpo = build_loss("beta_dpo", {"beta": 0.3, "alpha": 0.0, "keep": 1.0})
    dpo = build_loss("dpo", {"beta": 0.3})
    for gaps in ([1.0, -2.0, 0.5], [3.0, 3.5, -1.0]):
        assert torch.allclose(beta_dpo(batch(gaps)).losses, dpo(batch(gaps)).losses)


def test_the_running_statistics_and_the_batch_beta_follow_the_gaps() -> None:
    loss = build_loss("beta_dpo", {"beta": 0.1, "alpha": 0.5, "keep": 1.0, "momentum": 0.9})
    gaps = [1.0, 3.0]
    out = loss(batch(gaps))
    running = loss.running  # type: ignore[attr-defined]
    assert abs(running["mean"] - 0.2) < 1e-12 and abs(running["std"] - 0.1 * 2**0.5) < 1e-12
    beta_b = 0.1 * (1 + 0.5 * (2.0 - 0.2))  # the batch's gap (2) above the running mean (0.2)
    expected = -torch.nn.functional.logsigmoid(beta_b * torch.tensor(gaps, dtype=torch.float64))
    assert torch.allclose(out.losses, expected)
    loss(batch([2.0, 2.0]))
    assert abs(loss.running["mean"] - (0.9 * 0.2 + 0.1 * 2.0)) < 1e-12  # type: ignore[attr-defined]


def test_a_share_is_kept_and_the_mean_over_the_batch_is_the_mean_over_the_kept() -> None:
    torch.manual_seed(0)
    loss = build_loss("beta_dpo", {"beta": 0.1, "alpha": 0.0, "keep": 0.5})
    gaps = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    out = loss(batch(gaps)).losses
    kept = out != 0
    assert int(kept.sum()) == 4
    dpo = -torch.nn.functional.logsigmoid(0.1 * torch.tensor(gaps, dtype=torch.float64))
    assert torch.allclose(out.mean(), dpo[kept].mean())
    torch.manual_seed(0)
    again = build_loss("beta_dpo", {"beta": 0.1, "alpha": 0.0, "keep": 0.5})(batch(gaps)).losses
    assert torch.equal(out, again)  # the trainer's seed makes the draw repeat
