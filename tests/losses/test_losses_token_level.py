"""Variants on the per-token view (needs_token_logps): parity with TRL where TRL has them (LD-DPO's ld_alpha,
WPO's use_weighting), through our real trainer path (cached per-token reference, collator, scatter), and
SamPO's down-sampling; and a variant that declares nothing keeps exactly its batches and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.losses import SequenceStats, build_loss
from bench.losses.sampo import down_sample
from bench.train.tokenview import TOKEN_COLUMNS, TokenRefCollator
from bench.train.trainer import VariantTrainer
from tests.losses import parity

our_loss = parity.our_loss


def variant_trainer(root: Path, cache: Path, name: str, params: dict[str, Any]) -> Any:
    return parity.our_trainer(root, cache, parity.ROWS, name, params)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> parity.Harness:
    return parity.build(tmp_path_factory.mktemp("parity_tokens"))


@pytest.mark.parametrize(
    ("name", "params", "config"),
    [
        ("ld_dpo", {"beta": 0.5, "alpha": 0.3}, {"loss_type": ["sigmoid"], "beta": 0.5, "ld_alpha": 0.3}),
        ("ld_dpo", {"beta": 0.5, "alpha": 0.0}, {"loss_type": ["sigmoid"], "beta": 0.5, "ld_alpha": 0.0}),
        ("wpo", {"beta": 0.5}, {"loss_type": ["sigmoid"], "beta": 0.5, "use_weighting": True}),
    ],
    ids=["ld_dpo-0.3", "ld_dpo-0", "wpo"],
)
def test_token_level_variants_match_trl_through_our_trainer(
    harness: parity.Harness, tmp_path: Path, name: str, params: dict[str, Any], config: dict[str, Any]
) -> None:
    trl = parity.trl_loss(harness.root, harness.batch, **config)
    ours = our_loss(variant_trainer(harness.root, tmp_path / "cache", name, params))
    assert abs(ours - trl) < 1e-5, (name, ours, trl)
    dpo = parity.trl_loss(harness.root, harness.batch, loss_type=["sigmoid"], beta=0.5)
    assert abs(trl - dpo) > 1e-4  # the rows' lengths differ, so the variant is not DPO on this batch


def test_ld_dpo_at_alpha_one_is_dpo_through_our_trainer(harness: parity.Harness, tmp_path: Path) -> None:
    dpo = our_loss(variant_trainer(harness.root, tmp_path / "c", "dpo", {"beta": 0.5}))
    ld = our_loss(variant_trainer(harness.root, tmp_path / "c", "ld_dpo", {"beta": 0.5, "alpha": 1.0}))
    # not to 1e-6: one rejected row holds a token the toy model masks (log-prob -1e4), and float32 sums of it
    # in another order differ by ~5e-4 nats; every other row agrees to 1e-6
    assert abs(dpo - ld) < 1e-4


def test_a_variant_declaring_nothing_keeps_its_batches_and_the_sums_agree(
    harness: parity.Harness, tmp_path: Path
) -> None:
    dpo = variant_trainer(harness.root, tmp_path / "c", "dpo", {"beta": 0.5})
    ld = variant_trainer(harness.root, tmp_path / "c", "ld_dpo", {"beta": 0.5})
    assert not isinstance(dpo.data_collator, TokenRefCollator) and isinstance(
        ld.data_collator, TokenRefCollator
    )
    assert not set(TOKEN_COLUMNS) & set(dpo.train_dataset.column_names)
    assert set(TOKEN_COLUMNS) <= set(ld.train_dataset.column_names)
    assert set(dpo.refstats) == {"identity", "cache_dir", "key", "computed", "pairs"}  # no per-token entry
    for side in ("chosen", "rejected"):  # the per-token pass sums to the summed cache's values
        summed = torch.tensor(dpo.train_dataset[f"ref_{side}_logps"])
        per_token = torch.tensor([sum(r) for r in ld.train_dataset[f"ref_{side}_token_logps"]])
        assert torch.allclose(summed, per_token, atol=1e-5)
        assert torch.allclose(summed, torch.tensor(ld.train_dataset[f"ref_{side}_logps"]), atol=1e-5)
    batch = dpo.data_collator([dict(dpo.train_dataset[i]) for i in range(len(parity.ROWS))])
    assert "ref_token_logps_flat" not in batch
    seen: list[SequenceStats] = []

    class Spy:  # the variant, recording the statistics it is given
        def __init__(self, variant: Any) -> None:
            self.variant = variant

        def __getattr__(self, name: str) -> Any:
            return getattr(self.variant, name)

        def __call__(self, stats: SequenceStats) -> Any:
            seen.append(stats)
            return self.variant(stats)

    dpo.variant = Spy(dpo.variant)
    with torch.no_grad():
        dpo._compute_loss(dpo.model, batch, False)
    assert seen[0].tokens is None
    assert torch.allclose(seen[0].policy_chosen_logps, harness.stats.policy_chosen_logps, atol=1e-5)


def test_a_second_token_level_run_reuses_the_cached_per_token_reference(
    harness: parity.Harness, tmp_path: Path
) -> None:
    first = variant_trainer(harness.root, tmp_path / "c", "sampo", {"beta": 0.5})
    second = variant_trainer(harness.root, tmp_path / "c", "ld_dpo", {"beta": 0.5})
    assert first.refstats["token_computed"] and not second.refstats["token_computed"]
    assert first.refstats["token_key"] == second.refstats["token_key"]


def test_sampo_keeps_the_shorter_answer_and_a_uniform_subset_of_the_longer() -> None:
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]])
    keep = torch.tensor([2, 2])
    torch.manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(3000):
        kept = down_sample(mask, keep)
        assert kept.sum(1).tolist() == [2.0, 2.0] and bool((kept <= mask).all())
        assert kept[1].tolist() == mask[1].tolist()  # the shorter row keeps all of its tokens
        counts += kept[0]
    assert counts[4] == 0 and torch.allclose(counts[:4] / 3000, torch.full((4,), 0.5), atol=0.04)
    torch.manual_seed(1)
    a = down_sample(mask, keep)
    torch.manual_seed(1)
    assert torch.equal(a, down_sample(mask, keep))  # the trainer's seed makes the draws repeat


def test_sampo_is_dpo_when_the_answers_have_equal_lengths(harness: parity.Harness) -> None:
    s = harness.stats
    width = 3
    ones = torch.ones(len(s.chosen_tokens), width)
    chosen = torch.rand(len(s.chosen_tokens), width) * -1
    rejected = torch.rand(len(s.chosen_tokens), width) * -1
    ref_c, ref_r = torch.rand_like(chosen) * -1, torch.rand_like(rejected) * -1
    from bench.losses import TokenStats

    tokens = TokenStats(chosen, rejected, ones, ones, ref_c, ref_r)
    stats = SequenceStats(
        chosen.sum(1), rejected.sum(1), ones.sum(1), ones.sum(1), ref_c.sum(1), ref_r.sum(1), tokens=tokens
    )
    sampo = build_loss("sampo", {"beta": 0.5})(stats).losses
    dpo = build_loss("dpo", {"beta": 0.5})(stats).losses
    assert torch.allclose(sampo, dpo, atol=1e-6)


def test_tr_dpo_trains_like_trls_synced_reference(harness: parity.Harness, tmp_path: Path) -> None:
    """Four optimiser steps with the reference mixed (alpha 0.6) after steps 2 and 4: our moving reference
    (bench.train.moving_ref) against TRL's sync_ref_model, from the same policy, reference and data."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from bench.train.moving_ref import moving_reference_callback

    root = harness.root
    common = parity.TRAINING

    def models() -> dict[str, Any]:
        return parity.fresh_models(root)

    sync = {"sync_ref_model": True, "ref_model_mixup_alpha": 0.6, "ref_model_sync_steps": 2}
    theirs = DPOTrainer(args=DPOConfig(output_dir=str(tmp_path / "trl"), **common, **sync), **models())
    variant = build_loss("tr_dpo", {"beta": 0.5, "alpha": 0.6, "sync_steps": 2})
    ours = VariantTrainer(
        args=DPOConfig(output_dir=str(tmp_path / "ours"), **common),
        variant=variant,
        refstats={"identity": "parity-reference", "cache_dir": str(tmp_path / "cache")},
        **models(),
    )
    ours.add_callback(moving_reference_callback(ours, variant, None))
    their_losses, their_policy, their_reference = parity.train_steps(theirs)
    our_losses, our_policy, our_reference = parity.train_steps(ours)
    assert len(our_losses) == 4 and our_losses == pytest.approx(their_losses, abs=1e-5)
    initial = AutoModelForCausalLM.from_pretrained(str(root / "reference")).state_dict()
    for name, value in our_reference.items():
        assert torch.allclose(value, their_reference[name], atol=1e-6), name
    assert any(not torch.allclose(our_reference[k], initial[k]) for k in our_reference)  # it did move
    for name, value in our_policy.items():
        assert torch.allclose(value, their_policy[name], atol=1e-6), name


def test_the_moving_reference_is_saved_with_a_checkpoint_and_restored(tmp_path: Path) -> None:
    from bench.train import moving_ref

    torch.manual_seed(0)
    reference, policy = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = reference.weight.detach().clone()
    moving_ref.mix_into(reference, policy, 0.25)
    assert torch.allclose(reference.weight, 0.75 * before + 0.25 * policy.weight)
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    moving_ref.save(reference, checkpoint)
    fresh = torch.nn.Linear(3, 2)
    moving_ref.load(fresh, checkpoint)
    assert torch.equal(fresh.weight, reference.weight) and torch.equal(fresh.bias, reference.bias)
    with pytest.raises(RuntimeError, match="cannot resume a run whose reference moves"):
        moving_ref.load(fresh, tmp_path)


def test_a_moving_reference_with_tied_embeddings_round_trips(harness: parity.Harness, tmp_path: Path) -> None:
    """The toy model ties its embedding and head (safetensors' save_file refuses shared tensors: the first
    toy_moving_ref study failed on it at its first checkpoint)."""
    from transformers import AutoModelForCausalLM

    from bench.train import moving_ref

    reference = AutoModelForCausalLM.from_pretrained(str(harness.root / "reference"))
    policy = AutoModelForCausalLM.from_pretrained(str(harness.root / "policy"))
    assert reference.get_input_embeddings().weight is reference.get_output_embeddings().weight
    moving_ref.mix_into(reference, policy, 0.5)
    moving_ref.save(reference, tmp_path)
    fresh = AutoModelForCausalLM.from_pretrained(str(harness.root / "reference"))
    moving_ref.load(fresh, tmp_path)
    for (name, value), other in zip(reference.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(value, other), name


def test_a_moving_reference_with_lora_is_refused_before_any_compute(tmp_path: Path) -> None:
    from bench.config import load_spec
    from bench.core.errors import ConfigError
    from bench.pipeline import preflight
    from tests.helpers import tiny_overrides

    lora = "+model.lora={enabled: true, r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}"
    spec = load_spec(tiny_overrides(tmp_path, "loss=tr_dpo", lora))
    with pytest.raises(ConfigError, match=r"loss=tr_dpo moves its reference .* model.lora.enabled=false"):
        preflight(spec)


def test_tr_dpo_saves_its_moving_reference_with_every_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    """Through the train stage: the reference moves every step and is saved beside each resumable checkpoint
    (kept here by stopping the stage at its second one), and a rerun resumes from it."""
    from transformers import TrainerCallback

    from bench.config import load_spec
    from bench.sources import select
    from bench.train import moving_ref
    from bench.train.fit import run_train
    from bench.train.state import trainer_dir
    from tests.helpers import tiny_overrides

    spec = load_spec(
        tiny_overrides(
            tiny_root,
            "loss=tr_dpo",
            "loss.sync_steps=1",
            "train.max_steps=3",
            "train.save_steps=1",
            f"paths.scratch={tmp_path}",
            f"paths.results={tmp_path / 'results'}",
        )
    )
    seen: list[Path] = []

    class Stop(Exception):
        pass

    class Look(TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            folder = trainer_dir(spec) / f"checkpoint-{state.global_step}"
            if (folder / moving_ref.FILE).exists():
                seen.append(folder)
            if state.global_step == 2:
                raise Stop

    from transformers import Trainer

    train = Trainer.train

    def with_look(trainer: Any, *a: Any, **kw: Any) -> Any:
        trainer.add_callback(Look())
        return train(trainer, *a, **kw)

    Trainer.train = with_look  # type: ignore[method-assign]
    try:
        with pytest.raises(Stop):
            run_train(spec, select(spec), spec.run_dir())
    finally:
        Trainer.train = train  # type: ignore[method-assign]
    assert [p.name for p in seen] == ["checkpoint-1", "checkpoint-2"]
    from bench.core.records import read_json

    run_train(spec, select(spec), spec.run_dir())  # resumes from checkpoint-2, its moving reference loaded
    assert read_json(spec.run_dir() / "train_info.json")["resumed_from_step"] == 2
