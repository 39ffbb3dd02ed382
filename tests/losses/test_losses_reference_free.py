"""SimPO, CPO, ORPO, KTO and R-DPO: worked examples, parity with TRL, and the plumbing they declare.

TRL parity runs real TRL trainers (CPOTrainer, ORPOTrainer, KTOTrainer) built on a tiny random toy Llama and
four toy pairs: their own tokenisation, collation and forward give the batch and the loss, and our variant
gets the per-sequence statistics of the same batch under the same model.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_jsonl
from bench.losses import SequenceStats, build_loss
from bench.sources import select
from tests.helpers import tiny_overrides

PARITY_TOL = 1e-5


def _docstring_loss(name: str) -> float:
    """The final number of the docstring's 'per-example loss = ... = X' (6 decimals)."""
    doc = importlib.import_module(f"bench.losses.{name}").__doc__ or ""
    assert "Worked example" in doc, f"bench/losses/{name}.py needs a worked example in its docstring"
    tail = doc.split("Worked example", 1)[1].split("per-example loss =", 1)[1]
    match = re.match(r"\s*(?:[^=]*=\s*)?(\d+\.\d{6})\b", tail)
    assert match, f"bench/losses/{name}.py: no 'per-example loss = ... = 0.xxxxxx' in the worked example"
    return float(match.group(1))


def _stats(**kw: Any) -> SequenceStats:
    return SequenceStats(
        **{k: torch.tensor([float(v)]) if not isinstance(v, list) else torch.tensor(v) for k, v in kw.items()}
    )


def _softplus(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- worked examples against the docstrings


def test_simpo_worked_example() -> None:
    out = build_loss("simpo", {"beta": 2.0, "gamma_beta_ratio": 0.5})(
        _stats(policy_chosen_logps=-10, policy_rejected_logps=-18, chosen_tokens=5, rejected_tokens=6)
    )
    # Eq. 6: -log sigmoid(beta/|yw| log pi(yw) - beta/|yl| log pi(yl) - gamma), gamma = 0.5 * 2
    closed = _softplus(-(2.0 * -10 / 5 - 2.0 * -18 / 6 - 0.5 * 2.0))
    assert math.isclose(out.losses.item(), _docstring_loss("simpo"), abs_tol=1e-6)
    assert math.isclose(out.losses.item(), closed, rel_tol=1e-6)
    assert torch.allclose(out.chosen_rewards, torch.tensor([-4.0])) and torch.allclose(
        out.rejected_rewards, torch.tensor([-6.0])
    )
    with_sft = build_loss("simpo", {"beta": 2.0, "gamma_beta_ratio": 0.5, "sft_weight": 0.1})(
        _stats(policy_chosen_logps=-10, policy_rejected_logps=-18, chosen_tokens=5, rejected_tokens=6)
    )
    assert math.isclose(with_sft.losses.item(), closed + 0.1 * 10 / 5, rel_tol=1e-6)


def test_cpo_worked_example() -> None:
    out = build_loss("cpo", {"beta": 0.1, "nll_weight": 1.0})(
        _stats(policy_chosen_logps=-10, policy_rejected_logps=-12, chosen_tokens=5, rejected_tokens=6)
    )
    closed = _softplus(-0.1 * (-10 + 12)) + 1.0 * 10 / 5  # Eq. 3 + NLL per chosen token (B = 1)
    assert math.isclose(out.losses.item(), _docstring_loss("cpo"), abs_tol=1e-6)
    assert math.isclose(out.losses.item(), closed, rel_tol=1e-6)
    assert torch.allclose(out.chosen_rewards, torch.tensor([-1.0]))


def test_orpo_worked_example() -> None:
    out = build_loss("orpo", {"lam": 0.1})(
        _stats(policy_chosen_logps=-10, policy_rejected_logps=-18, chosen_tokens=5, rejected_tokens=6)
    )
    pw, pl = math.exp(-10 / 5), math.exp(-18 / 6)  # P(y|x) = exp(mean log-prob)
    log_or = math.log(pw / (1 - pw)) - math.log(pl / (1 - pl))
    closed = 10 / 5 + 0.1 * _softplus(-log_or)  # Eq. 6-7: L_SFT + lambda * L_OR
    assert math.isclose(out.losses.item(), _docstring_loss("orpo"), abs_tol=1e-6)
    assert math.isclose(out.losses.item(), closed, rel_tol=1e-6)
    assert math.isclose((out.chosen_rewards - out.rejected_rewards).item(), log_or, rel_tol=1e-6)


def test_kto_worked_example() -> None:
    stats = _stats(
        policy_chosen_logps=-10,
        policy_rejected_logps=-12,
        chosen_tokens=5,
        rejected_tokens=6,
        ref_chosen_logps=-11,
        ref_rejected_logps=-11,
        policy_kl_logps=[-20.0, -25.0],
        ref_kl_logps=[-22.0, -24.0],
    )
    out = build_loss("kto", {"beta": 0.1, "lambda_d": 1.0, "lambda_u": 1.5})(stats)
    z0 = max(0.0, ((-20 + 22) + (-25 + 24)) / 2)
    desirable = 1.0 * (1 - _sigmoid(0.1 * ((-10 + 11) - z0)))
    undesirable = 1.5 * (1 - _sigmoid(0.1 * (z0 - (-12 + 11))))
    assert math.isclose(out.losses.item(), _docstring_loss("kto"), abs_tol=1e-6)
    assert math.isclose(out.losses.item(), (desirable + undesirable) / 2, rel_tol=1e-6)
    assert torch.allclose(out.chosen_rewards, torch.tensor([0.1])) and torch.allclose(
        out.rejected_rewards, torch.tensor([-0.1])
    )


def test_rdpo_worked_example() -> None:
    out = build_loss("rdpo", {"beta": 0.1, "alpha": 0.05})(
        _stats(
            policy_chosen_logps=-10,
            policy_rejected_logps=-12,
            chosen_tokens=20,
            rejected_tokens=10,
            ref_chosen_logps=-11,
            ref_rejected_logps=-11,
        )
    )
    closed = _softplus(-(0.1 * ((-10 + 11) - (-12 + 11)) + 0.05 * (20 - 10)))  # Eq. 9
    assert math.isclose(out.losses.item(), _docstring_loss("rdpo"), abs_tol=1e-6)
    assert math.isclose(out.losses.item(), closed, rel_tol=1e-6)
    dpo = build_loss("rdpo", {"beta": 0.1, "alpha": 0.0})(
        _stats(
            policy_chosen_logps=-10,
            policy_rejected_logps=-12,
            chosen_tokens=20,
            rejected_tokens=10,
            ref_chosen_logps=-11,
            ref_rejected_logps=-11,
        )
    )
    assert math.isclose(dpo.losses.item(), _softplus(-0.2), rel_tol=1e-6)  # alpha = 0 is DPO


def test_kto_reference_point_is_detached_and_clamped() -> None:
    policy_kl = torch.tensor([-30.0, -31.0], requires_grad=True)  # below the reference: KL estimate < 0
    chosen = torch.tensor([-10.0], requires_grad=True)
    stats = SequenceStats(
        chosen,
        torch.tensor([-12.0]),
        torch.tensor([5]),
        torch.tensor([6]),
        torch.tensor([-11.0]),
        torch.tensor([-11.0]),
        policy_kl_logps=policy_kl,
        ref_kl_logps=torch.tensor([-22.0, -24.0]),
    )
    out = build_loss("kto", {"beta": 0.1})(stats)
    expected = ((1 - _sigmoid(0.1 * 1)) + (1 - _sigmoid(0.1 * 1))) / 2  # z0 clamped to 0
    assert math.isclose(out.losses.item(), expected, rel_tol=1e-6)
    out.losses.sum().backward()
    assert policy_kl.grad is None and chosen.grad is not None


def test_kto_without_kl_pairs_is_an_error() -> None:
    stats = _stats(
        policy_chosen_logps=-1,
        policy_rejected_logps=-1,
        chosen_tokens=1,
        rejected_tokens=1,
        ref_chosen_logps=-1,
        ref_rejected_logps=-1,
    )
    with pytest.raises(RuntimeError, match="needs_kl_pairs"):
        build_loss("kto", {})(stats)


def test_declarations() -> None:
    for name in ("simpo", "cpo", "orpo"):
        loss = build_loss(name, {})
        assert loss.needs_reference is False and loss.needs_kl_pairs is False, name
    assert build_loss("rdpo", {}).needs_reference and not build_loss("rdpo", {}).needs_kl_pairs
    kto = build_loss("kto", {})
    assert kto.needs_reference and kto.needs_kl_pairs
    assert build_loss("simpo", {"beta": 2.5, "gamma_beta_ratio": 0.4}).gamma == pytest.approx(1.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("simpo", "beta", 0.0),
        ("simpo", "gamma_beta_ratio", -0.1),
        ("simpo", "sft_weight", -1.0),
        ("cpo", "beta", -0.1),
        ("cpo", "nll_weight", -0.5),
        ("orpo", "lam", 0.0),
        ("kto", "beta", 0.0),
        ("kto", "lambda_d", 0.0),
        ("kto", "lambda_u", -1.0),
        ("rdpo", "beta", 0.0),
        ("rdpo", "alpha", -0.01),
        ("simpo", "beta", float("nan")),
    ],
)
def test_bad_hyperparameters_name_the_key(name: str, key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"loss\.{key}=.* out of range for Loss"):
        build_loss(name, {key: value})


def test_bad_hyperparameter_fails_at_config_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"loss\.lambda_u="):
        load_spec(tiny_overrides(tmp_path, "loss=kto", "loss.lambda_u=0"))


# ---------------------------------------------------------------- parity with TRL's trainers

ROWS = [
    {"prompt": "review : film music", "chosen": " good film and great music", "rejected": " bad"},
    {"prompt": "review : book", "chosen": " a lovely book", "rejected": " dull dull book with a poor ending"},
    {"prompt": "review : meal chef wine", "chosen": " superb", "rejected": " the wine was cheap"},
    {"prompt": "review : actor", "chosen": " the actor is very clever", "rejected": " weak actor"},
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bench.toyworld.model import ToyLlamaForCausalLM, build_reference_config
    from bench.toyworld.vocab import save_tokenizer

    path = tmp_path_factory.mktemp("trl_parity_model")
    torch.manual_seed(0)
    ToyLlamaForCausalLM(build_reference_config(32, 1, 2, 64, 64)).save_pretrained(path)
    save_tokenizer(path)
    return path


def _trainer(kind: str, model_dir: Path, tmp_path: Path, **config: Any) -> Any:
    """A real TRL trainer on the tiny model and the four pairs, fp32 on CPU."""
    import os

    from datasets import Dataset
    from transformers import AutoTokenizer

    from bench.toyworld.model import ToyLlamaForCausalLM

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if kind == "cpo":
        from trl.experimental.cpo import CPOConfig as Config
        from trl.experimental.cpo import CPOTrainer as Trainer
    elif kind == "orpo":
        from trl.experimental.orpo import ORPOConfig as Config
        from trl.experimental.orpo import ORPOTrainer as Trainer
    else:
        from trl import KTOConfig as Config
        from trl import KTOTrainer as Trainer
    args = Config(
        output_dir=str(tmp_path / kind),
        report_to=[],
        bf16=False,
        use_cpu=True,
        max_length=64,
        per_device_train_batch_size=len(ROWS),
        disable_tqdm=True,
        **config,
    )
    return Trainer(
        model=ToyLlamaForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=Dataset.from_list(ROWS),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )


def _completion_logps(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
):
    """Summed log-probs of the non -100 labels (shifted) and their counts; our own forward, not TRL's."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    targets, logits = labels[:, 1:], logits[:, :-1].float()
    mask = targets != -100
    per_token = torch.gather(logits.log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (per_token * mask).sum(-1), mask.sum(-1)


def _pair_stats(trainer: Any, batch: dict[str, Any]) -> SequenceStats:
    """Our per-sequence statistics of a CPO/ORPO batch (chosen_* / rejected_* keys) under its model."""
    sums, counts = [], []
    for side in ("chosen", "rejected"):
        s, n = _completion_logps(
            trainer.model,
            batch[f"{side}_input_ids"],
            batch[f"{side}_attention_mask"],
            batch[f"{side}_labels"],
        )
        sums.append(s)
        counts.append(n)
    return SequenceStats(sums[0], sums[1], counts[0], counts[1])


def _trl_completion_nll(trainer: Any, batch: dict[str, Any]) -> torch.Tensor:
    """TRL CPOTrainer's NLL term: nn.CrossEntropyLoss (mean over non -100 labels) on the chosen sequences."""
    with torch.no_grad():
        logits = trainer.model(
            batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]
        ).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["chosen_labels"][:, 1:].flatten())


@pytest.mark.parametrize(("beta", "ratio", "sft_weight"), [(2.0, 0.5, 0.0), (2.5, 0.3, 0.4)])
def test_simpo_matches_trl_cpo_trainer_simpo(tiny_model_dir, tmp_path, beta, ratio, sft_weight) -> None:
    # TRL's simpo_gamma is the absolute margin: our gamma_beta_ratio * beta. Its cpo_alpha is our sft_weight.
    trainer = _trainer(
        "cpo",
        tiny_model_dir,
        tmp_path,
        loss_type="simpo",
        beta=beta,
        simpo_gamma=ratio * beta,
        cpo_alpha=sft_weight,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    stats = _pair_stats(trainer, batch)
    ours = build_loss("simpo", {"beta": beta, "gamma_beta_ratio": ratio, "sft_weight": sft_weight})(stats)
    ours_pref = build_loss("simpo", {"beta": beta, "gamma_beta_ratio": ratio})(stats)
    mean_c, mean_r = (
        stats.policy_chosen_logps / stats.chosen_tokens,
        stats.policy_rejected_logps / stats.rejected_tokens,
    )
    trl_losses, trl_chosen, trl_rejected = trainer.cpo_loss(mean_c, mean_r)
    assert (ours_pref.losses - trl_losses).abs().max() < PARITY_TOL
    assert (ours.chosen_rewards - trl_chosen).abs().max() < PARITY_TOL
    assert (ours.rejected_rewards - trl_rejected).abs().max() < PARITY_TOL
    with torch.no_grad():
        trl_total, _ = trainer.get_batch_loss_metrics(trainer.model, batch)
    assert abs(ours.losses.mean().item() - trl_total.item()) < PARITY_TOL


@pytest.mark.parametrize(("beta", "nll_weight"), [(0.1, 1.0), (0.5, 0.3)])
def test_cpo_matches_trl_cpo_trainer_sigmoid(tiny_model_dir, tmp_path, beta, nll_weight) -> None:
    trainer = _trainer("cpo", tiny_model_dir, tmp_path, loss_type="sigmoid", beta=beta, cpo_alpha=nll_weight)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    stats = _pair_stats(trainer, batch)
    ours = build_loss("cpo", {"beta": beta, "nll_weight": nll_weight})(stats)
    ours_pref = build_loss("cpo", {"beta": beta, "nll_weight": 0.0})(stats)
    trl_losses, trl_chosen, _ = trainer.cpo_loss(stats.policy_chosen_logps, stats.policy_rejected_logps)
    assert (ours_pref.losses - trl_losses).abs().max() < PARITY_TOL
    assert (ours.chosen_rewards - trl_chosen).abs().max() < PARITY_TOL
    # The NLL term: ours is the batch token mean of the chosen completions' NLL, as TRL's cross-entropy
    from bench.losses.base import batch_token_mean_nll

    with torch.no_grad():
        trl_nll = trainer.concatenated_forward(trainer.model, batch)[4]
    assert abs(batch_token_mean_nll(stats).mean().item() - trl_nll.item()) < PARITY_TOL
    assert abs(trl_nll.item() - _trl_completion_nll(trainer, batch).item()) < PARITY_TOL
    with torch.no_grad():
        trl_total, _ = trainer.get_batch_loss_metrics(trainer.model, batch)
    assert abs(ours.losses.mean().item() - trl_total.item()) < PARITY_TOL


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_orpo_matches_trl_orpo_trainer(tiny_model_dir, tmp_path, lam) -> None:
    trainer = _trainer("orpo", tiny_model_dir, tmp_path, beta=lam)  # TRL's ORPO beta is the paper's lambda
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    stats = _pair_stats(trainer, batch)
    ours = build_loss("orpo", {"lam": lam})(stats)
    from bench.losses.base import batch_token_mean_nll

    nll = batch_token_mean_nll(stats)
    mean_c, mean_r = (
        stats.policy_chosen_logps / stats.chosen_tokens,
        stats.policy_rejected_logps / stats.rejected_tokens,
    )
    trl_or, *_ = trainer.odds_ratio_loss(mean_c, mean_r)  # lam * log sigmoid(log odds ratio), per example
    assert ((ours.losses - nll) - (-trl_or)).abs().max() < PARITY_TOL
    # NLL: TRL's cross-entropy formula on the chosen completion tokens gives our term ...
    assert abs(nll.mean().item() - _trl_completion_nll(trainer, batch).item()) < PARITY_TOL
    # ... and TRL's ORPO total differs from ours only by also counting the prompt tokens in that NLL. On the
    # toy vocabulary that difference is huge (the prompt words carry the -1e4 "never generated" bias), so it
    # is compared relative to TRL's total, whose float32 ulp is far above 1e-5.
    with torch.no_grad():
        trl_total, _ = trainer.get_batch_loss_metrics(trainer.model, batch)
        trl_nll_with_prompt = trainer.concatenated_forward(trainer.model, batch)[4]
    prompt_part = (trl_nll_with_prompt - _trl_completion_nll(trainer, batch)).item()
    assert prompt_part > 0
    difference = trl_total.item() - ours.losses.mean().item()
    assert abs(difference - prompt_part) < 1e-6 * abs(trl_total.item())


@pytest.mark.parametrize(
    ("beta", "lambda_d", "lambda_u", "kl_shift"), [(0.1, 1.0, 1.5, 2.0), (0.5, 1.33, 1.0, -3.0)]
)
def test_kto_matches_trl_kto_trainer(tiny_model_dir, tmp_path, beta, lambda_d, lambda_u, kl_shift) -> None:
    # KTOTrainer has no standalone loss method in TRL 1.16: its loss lives in `_compute_loss(model, inputs,
    # return_outputs)`, which reads the precomputed `ref_logps` / `ref_KL_logps` from the batch. We give both
    # trainers the same batch with those reference values moved off the policy's (a fresh model is its own
    # reference), so r and z0 are non-zero; kl_shift < 0 makes the KL estimate negative to exercise the clamp.
    trainer = _trainer(
        "kto",
        tiny_model_dir,
        tmp_path,
        beta=beta,
        desirable_weight=lambda_d,
        undesirable_weight=lambda_u,
        precompute_ref_log_probs=True,
    )
    n = len(trainer.train_dataset)  # 2 x pairs: TRL unpairs (chosen -> desirable, rejected -> undesirable)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])
    gen = torch.Generator().manual_seed(0)
    batch["ref_logps"] = batch["ref_logps"] + 2 * torch.randn(n, generator=gen)
    batch["ref_KL_logps"] = batch["ref_KL_logps"] - kl_shift + torch.randn(n, generator=gen)
    with torch.no_grad():
        trl_loss = trainer._compute_loss(trainer.model, batch, False)

    def logps(prefix: str) -> torch.Tensor:
        labels = batch[f"{prefix}input_ids"].masked_fill(batch[f"{prefix}completion_mask"] == 0, -100)
        return _completion_logps(
            trainer.model, batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"], labels
        )[0]

    completion, kl = logps(""), logps("KL_")
    desirable, undesirable = batch["label"].bool(), ~batch["label"].bool()
    assert desirable.sum() == undesirable.sum() == len(ROWS)
    stats = SequenceStats(
        completion[desirable],
        completion[undesirable],
        torch.ones(len(ROWS)),
        torch.ones(len(ROWS)),
        batch["ref_logps"][desirable],
        batch["ref_logps"][undesirable],
        policy_kl_logps=kl,
        ref_kl_logps=batch["ref_KL_logps"],
    )
    ours = build_loss("kto", {"beta": beta, "lambda_d": lambda_d, "lambda_u": lambda_u})(stats)
    assert abs(ours.losses.mean().item() - trl_loss.item()) < PARITY_TOL
    assert (kl - batch["ref_KL_logps"]).mean().item() * math.copysign(1, kl_shift) > 0  # z0 > 0 or clamped


# ---------------------------------------------------------------- the plumbing: no reference, KL pairs


def _train(tiny_root: Path, tmp_path: Path, name: str, *extra: str) -> Any:
    from bench.train.fit import run_train

    spec = load_spec(
        tiny_overrides(
            tiny_root,
            f"loss={name}",
            "train.max_steps=2",
            f"paths.refstats={tmp_path / 'refstats'}",
            f"paths.results={tmp_path / 'results'}",
            f"paths.scratch={tmp_path / 'scratch'}",
            *extra,
        )
    )
    run_train(spec, select(spec), spec.run_dir())
    return spec


@pytest.mark.parametrize("name", ["simpo", "cpo", "orpo"])
def test_reference_free_variants_never_compute_reference_logps(
    name, tiny_root, tmp_path, monkeypatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} asked for reference log-probs")

    monkeypatch.setattr("bench.train.trainer.cached_reference_logps", refuse)
    spec = _train(tiny_root, tmp_path, name)
    refstats = tmp_path / "refstats"
    assert not refstats.exists() or not any(refstats.iterdir()), (
        "reference cache written by a reference-free run"
    )
    info = json.loads((spec.run_dir() / "train_info.json").read_text())["reference_logps"]
    assert "key" not in info and "computed" not in info
    log = [r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)


def test_kto_trains_with_cached_kl_pairs(tiny_root, tmp_path) -> None:
    spec = _train(tiny_root, tmp_path, "kto")
    log = [r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["kl_pairs/logratio"]) for r in log)
    info = json.loads((spec.run_dir() / "train_info.json").read_text())["reference_logps"]
    assert info["kl_pairs"] == info["pairs"] > 1 and info["kl_key"] != info["key"]
    cached = sorted(p.stem for p in (tmp_path / "refstats").glob("*.pt"))
    assert cached == sorted([info["key"], info["kl_key"]])
    # A second run reuses both caches: no reference pass at all.
    again = _train(tiny_root, tmp_path, "kto", "seed=0", "loss.beta=0.2")
    info2 = json.loads((again.run_dir() / "train_info.json").read_text())["reference_logps"]
    assert info2["computed"] is False and info2["kl_computed"] is False


def test_kl_pairs_are_a_fixed_derangement_with_matching_reference_order() -> None:
    from datasets import Dataset

    from bench.train.klpairs import KLPairCollator, add_kl_completions, derangement

    partner = derangement(50)
    assert sorted(partner) == list(range(50)) and all(p != i for i, p in enumerate(partner))
    assert derangement(50) == partner  # fixed: a function of the data only
    with pytest.raises(ConfigError, match="at least 2"):
        derangement(1)
    rows = [
        {"prompt_ids": [4, 5, 60 + i], "chosen_ids": [6 + i, 2], "rejected_ids": [36 + i, 36, 2]}
        for i in range(5)
    ]
    data = add_kl_completions(Dataset.from_list(rows))
    partner = derangement(5)
    for i, row in enumerate(data):
        assert row["kl_chosen_ids"] == rows[partner[i]]["chosen_ids"]
        assert row["kl_rejected_ids"] == rows[partner[i]]["rejected_ids"]

    def base(examples: list[dict[str, Any]]) -> dict[str, Any]:  # stands in for TRL's preference collator
        return {
            "input_ids": [e["prompt_ids"] + e["chosen_ids"] for e in examples]
            + [e["prompt_ids"] + e["rejected_ids"] for e in examples]
        }

    examples = [
        dict(r, ref_kl_chosen_logps=-float(i), ref_kl_rejected_logps=-10.0 - i) for i, r in enumerate(data)
    ]
    batch = KLPairCollator(base)(examples)
    assert batch["kl_input_ids"][0] == rows[0]["prompt_ids"] + rows[partner[0]]["chosen_ids"]
    assert batch["kl_input_ids"][5] == rows[0]["prompt_ids"] + rows[partner[0]]["rejected_ids"]
    assert batch["ref_kl_logps"].tolist() == [0.0, -1.0, -2.0, -3.0, -4.0, -10.0, -11.0, -12.0, -13.0, -14.0]
