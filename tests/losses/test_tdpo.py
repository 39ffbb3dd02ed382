"""TDPO's sequential KL through the trainer: per-position KL(ref || pi) from the two models' whole
distributions, against the authors' formula written out position by position, and the loss our trainer
computes from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench.losses import build_loss
from bench.train.position_kl import position_kl_logps
from bench.train.trainer import VariantTrainer
from tests.losses import parity


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> parity.Harness:
    return parity.build(tmp_path_factory.mktemp("parity_tdpo"))


def _models(root: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import AutoModelForCausalLM

    import bench.toyworld.model  # noqa: F401  (registers the toy_llama model type)

    policy = AutoModelForCausalLM.from_pretrained(str(root / "policy"))
    reference = AutoModelForCausalLM.from_pretrained(str(root / "reference")).eval()
    return policy, reference


def _written_out(policy: torch.nn.Module, reference: torch.nn.Module, batch: dict[str, torch.Tensor]):
    """(margin, sequential KL) per row, one completion position at a time (the authors' definition)."""
    ids, mask = batch["input_ids"], batch["completion_mask"]
    with torch.no_grad():
        logits = policy(input_ids=ids, attention_mask=batch["attention_mask"]).logits.double()
        ref_logits = reference(input_ids=ids, attention_mask=batch["attention_mask"]).logits.double()
    margins, kls = [], []
    for row in range(ids.size(0)):
        margin = kl = 0.0
        for t in range(1, ids.size(1)):
            if not mask[row, t]:
                continue
            logp, ref_logp = F.log_softmax(logits[row, t - 1], -1), F.log_softmax(ref_logits[row, t - 1], -1)
            margin += float(logp[ids[row, t]] - ref_logp[ids[row, t]])
            kl += float((ref_logp.exp() * (ref_logp - logp)).sum())
        margins.append(margin)
        kls.append(kl)
    return torch.tensor(margins, dtype=torch.float64), torch.tensor(kls, dtype=torch.float64)


def test_position_kl_is_the_sequential_kl_written_out(harness: parity.Harness) -> None:
    policy, reference = _models(harness.root)
    batch = harness.batch
    logps, mask, ref_logps, kl = position_kl_logps(policy, reference, batch)
    margin, seq_kl = _written_out(policy, reference, batch)
    # two rows hold words the toy model masks (log-probs near -1e4): their float32 margins keep ~1e-3 nats
    torch.testing.assert_close((logps - ref_logps).sum(1).double(), margin, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(kl.sum(1).double(), seq_kl, atol=1e-5, rtol=1e-5)
    assert bool((seq_kl > 0).all())
    assert torch.equal(mask, batch["completion_mask"][:, 1:])


@pytest.mark.parametrize("tdpo2", [True, False])
def test_tdpo_loss_through_our_trainer_is_the_authors(
    harness: parity.Harness, tmp_path: Path, tdpo2: bool
) -> None:
    from trl import DPOConfig

    models = parity.fresh_models(harness.root)
    trainer = VariantTrainer(
        variant=build_loss("tdpo", {"beta": 0.2, "alpha": 0.5, "tdpo2": tdpo2}),
        refstats={"identity": "parity-reference", "cache_dir": str(tmp_path / "cache")},
        args=DPOConfig(
            output_dir=str(tmp_path / "ours"),
            per_device_train_batch_size=len(parity.ROWS),
            precompute_ref_log_probs=False,  # the reference is live: its whole distribution is needed
            **parity.CPU,
        ),
        **models,
    )
    ours = parity.our_loss(trainer)
    batch = trainer.data_collator([dict(trainer.train_dataset[i]) for i in range(len(parity.ROWS))])
    policy, reference = trainer.model, trainer.ref_model
    margin, kl = _written_out(policy, reference, batch)
    (m_w, m_l), (d_w, d_l) = margin.chunk(2), kl.chunk(2)
    weight = 0.5 if tdpo2 else 1.0
    expected = float(-F.logsigmoid(0.2 * (m_w - m_l + weight * (d_w - d_l))).mean())
    assert abs(ours - expected) < 1e-4 * max(1.0, abs(expected)), (ours, expected)
