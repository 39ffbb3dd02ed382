"""Variants on other data shapes against TRL where TRL has them, on real batches through our trainer: TPO
(pairs plus a gold response) against trl.experimental.tpo's TPOTrainer, KTO on unpaired rows against TRL's
KTOTrainer; and the listwise ones against what they reduce to (Plackett-Luce with two completions is DPO;
LiPO against its sum written out)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.losses import ListStats, SequenceStats, build_loss
from tests.losses import parity

GOLD = [
    dict(row, gold=parity.ROWS[(i + 1) % len(parity.ROWS)]["chosen"]) for i, row in enumerate(parity.ROWS)
]
UNPAIRED = [
    {"prompt": row["prompt"], "completion": row[side], "label": side == "chosen"}
    for row in parity.ROWS
    for side in ("chosen", "rejected")
][:-1]  # 11 rows: an odd count, so desirable and undesirable rows are not balanced


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> parity.Harness:
    return parity.build(tmp_path_factory.mktemp("parity_shapes"))


def _ours(root: Path, cache: Path, rows: list[dict[str, Any]], name: str, params: dict[str, Any]) -> float:
    """Our trainer's loss on all `rows` (TRL-laid rows) in one batch, at the policy's weights."""
    return parity.our_loss(parity.our_trainer(root, cache, rows, name, params))


def _trl_loss(trainer: Any) -> float:
    """A TRL trainer's own loss on one batch of its whole training set, at the policy's weights."""
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        return float(trainer._compute_loss(trainer.model, batch, False))


@pytest.mark.parametrize(
    ("params", "config"),
    # betas that keep each loss near 1 (the random policy's log-prob gaps are tens of nats): 1e-5 is tight
    [
        ({"beta": 0.05, "alpha": 1.0}, {"beta": 0.05, "tpo_alpha": 1.0}),
        (
            {"beta": 0.05, "alpha": 0.3, "label_smoothing": 0.1},
            {"beta": 0.05, "tpo_alpha": 0.3, "label_smoothing": 0.1},
        ),
        ({"beta": 0.05, "loss_type": "hinge"}, {"beta": 0.05, "loss_type": "hinge"}),
        ({"beta": 0.5, "loss_type": "ipo"}, {"beta": 0.5, "loss_type": "ipo"}),
        (
            {"beta": 0.5, "loss_type": "tpo_l", "gamma": 0.7},
            {"beta": 0.5, "loss_type": "tpo-l", "tpo_l_gamma": 0.7},
        ),
        ({"beta": 0.05, "alpha": 0.0}, {"beta": 0.05, "tpo_alpha": 0.0}),
    ],
    ids=["sigmoid", "smoothed", "hinge", "ipo", "tpo_l", "no-nll"],
)
def test_tpo_matches_trl(
    harness: parity.Harness, tmp_path: Path, params: dict[str, Any], config: dict[str, Any]
) -> None:
    from trl.experimental.tpo import TPOConfig, TPOTrainer

    root = harness.root
    rows = [{k: v for k, v in r.items() if k != "gold"} | {"reference": r["gold"]} for r in GOLD]
    models = parity.fresh_models(root, rows)
    del models["ref_model"]  # TPO is reference-free
    trl = TPOTrainer(
        args=TPOConfig(
            output_dir=str(root / "tpo"), per_device_train_batch_size=len(rows), **parity.CPU, **config
        ),
        **models,
    )
    expected = _trl_loss(trl)
    laid = [{k: v for k, v in r.items() if k != "gold"} | {"more": [r["gold"]]} for r in GOLD]
    ours = _ours(root, tmp_path / "cache", laid, "tpo", params)
    # relative: two rejected completions hold words the toy model masks (-1e4 nats), so IPO's loss is ~1e6
    assert abs(ours - expected) < 1e-5 * max(1.0, abs(expected)), (ours, expected)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 1.33)])
def test_kto_unpaired_matches_trl_kto_with_trls_kl_pairs(
    harness: parity.Harness, tmp_path: Path, weights: tuple[float, float]
) -> None:
    """TRL pairs each row with the previous row's completion of its batch (completions[-1:] +
    completions[:-1]); laid out with those partners, our loss is TRL's."""
    from trl import KTOConfig, KTOTrainer

    root = harness.root
    trl = KTOTrainer(
        args=KTOConfig(
            output_dir=str(root / "kto"),
            per_device_train_batch_size=len(UNPAIRED),
            beta=0.5,
            desirable_weight=weights[0],
            undesirable_weight=weights[1],
            **parity.CPU,
        ),
        **parity.fresh_models(root, UNPAIRED),
    )
    expected = _trl_loss(trl)
    laid = [
        {
            "prompt": r["prompt"],
            "chosen": r["completion"],
            "rejected": UNPAIRED[i - 1]["completion"],
            "label": float(r["label"]),
        }
        for i, r in enumerate(UNPAIRED)
    ]
    params = {"beta": 0.5, "lambda_d": weights[0], "lambda_u": weights[1]}
    ours = _ours(root, tmp_path / "cache", laid, "kto_unpaired", params)
    assert abs(ours - expected) < 1e-5, (ours, expected)


def _list_stats(
    policy: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor | None = None
) -> SequenceStats:
    tokens = torch.ones_like(policy)
    return SequenceStats(
        policy[:, 0], policy[:, 1], tokens[:, 0], tokens[:, 1], ref[:, 0], ref[:, 1],
        more=ListStats(policy[:, 2:], tokens[:, 2:], mask[:, 2:], ref[:, 2:], scores),
    )  # fmt: skip


def test_plackett_luce_on_two_completions_is_dpo() -> None:
    generator = torch.Generator().manual_seed(0)
    policy, ref = (
        -10 * torch.rand(8, 2, generator=generator, dtype=torch.float64),
        -10 * torch.rand(8, 2, generator=generator, dtype=torch.float64),
    )
    stats = _list_stats(policy, ref, torch.ones(8, 2, dtype=torch.float64))
    pl = build_loss("plackett_luce", {"beta": 0.3})(stats).losses
    dpo = build_loss("dpo", {"beta": 0.3})(stats).losses
    torch.testing.assert_close(pl, dpo)


def test_plackett_luce_is_the_ranking_likelihood_and_masks_missing_completions() -> None:
    generator = torch.Generator().manual_seed(1)
    policy = -10 * torch.rand(3, 5, generator=generator, dtype=torch.float64)
    ref = -10 * torch.rand(3, 5, generator=generator, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.float64)
    losses = build_loss("plackett_luce", {"beta": 0.4})(_list_stats(policy, ref, mask)).losses
    for row in range(3):
        k = int(mask[row].sum())
        s = [0.4 * float(policy[row, i] - ref[row, i]) for i in range(k)]

        # the probability of the observed order among all k! orders, by brute force
        def weight(order: tuple[int, ...], s: list[float] = s) -> float:
            return math.prod(
                math.exp(s[o]) / sum(math.exp(s[p]) for p in order[i:]) for i, o in enumerate(order)
            )

        assert abs(sum(weight(o) for o in itertools.permutations(range(k))) - 1) < 1e-9
        assert abs(float(losses[row]) + math.log(weight(tuple(range(k))))) < 1e-9


def test_lipo_is_its_lambda_weighted_sum_written_out() -> None:
    generator = torch.Generator().manual_seed(2)
    policy = -10 * torch.rand(2, 4, generator=generator, dtype=torch.float64)
    ref = -10 * torch.rand(2, 4, generator=generator, dtype=torch.float64)
    scores = torch.tensor([[0.9, 0.6, 0.6, 0.1], [1.0, 0.5, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.float64)
    losses = build_loss("lipo", {"beta": 0.5})(_list_stats(policy, ref, mask, scores)).losses
    for row in range(2):
        k = int(mask[row].sum())
        s = [0.5 * float(policy[row, i] - ref[row, i]) for i in range(k)]
        rank = {i: 1 + sum(s[j] > s[i] for j in range(k)) for i in range(k)}
        psi = scores[row].tolist()
        total = 0.0
        for i, j in itertools.permutations(range(k), 2):
            if psi[i] > psi[j]:
                delta = abs(2 ** psi[i] - 2 ** psi[j]) * abs(
                    1 / math.log(1 + rank[i]) - 1 / math.log(1 + rank[j])
                )
                total += delta * math.log(1 + math.exp(-(s[i] - s[j])))
        assert abs(float(losses[row]) - total) < 1e-9


@pytest.mark.parametrize(
    ("declarations", "message"),
    [
        ({"data_shape": "list", "moving_reference": True}, "data_shape 'list' with per-token"),
        ({"data_shape": "unpaired", "needs_token_logps": True}, "data_shape 'unpaired' with per-token"),
        ({"needs_position_kl": True, "token_outputs": ("log_sum_sq_probs",)}, "needs_position_kl"),
        ({"moving_reference": True, "needs_kl_pairs": True}, "a live reference with needs_kl_pairs"),
    ],
)
def test_declarations_that_do_not_combine_are_refused_when_the_variant_is_built(
    monkeypatch: pytest.MonkeyPatch, declarations: dict[str, Any], message: str
) -> None:
    import dataclasses
    import sys
    import types

    from bench.core.errors import ConfigError
    from bench.losses.dpo import Loss as DPO

    module = types.ModuleType("bench.losses.zz_clash")
    module.Loss = dataclasses.dataclass(frozen=True)(type("Loss", (DPO,), dict(declarations)))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bench.losses.zz_clash", module)
    with pytest.raises(ConfigError, match=f"zz_clash.py declares what does not combine: {message}"):
        build_loss("zz_clash", {})
