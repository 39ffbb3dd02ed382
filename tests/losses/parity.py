"""TRL parity harness: one tiny policy/reference pair, a few toy preference rows, one collated batch.

The same batch goes through TRL's own loss branches (`DPOTrainer._compute_loss`, a private method that holds
all of them) and through our variants, whose per-sequence statistics come from bench.train.trainer's code
path (`_sequence_logps`), so a parity test compares the losses and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.losses import SequenceStats
from bench.train.trainer import VariantTrainer

# Toy-vocabulary rows; chosen/rejected lengths differ, so per-token and per-sequence normalisations disagree.
ROWS = [
    {"prompt": "review : film plot", "chosen": " good film was great", "rejected": " bad plot"},
    {
        "prompt": "review : meal chef wine",
        "chosen": " the dish was lovely",
        "rejected": " awful wine and cold bread",
    },
    {
        "prompt": "review : book author",
        "chosen": " a witty book",
        "rejected": " the prose was dull and flat and slow",
    },
    {
        "prompt": "review : music cast",
        "chosen": " the cast was superb and the music moving",
        "rejected": " noisy",
    },
    {
        "prompt": "review : scene camera",
        "chosen": " vivid scene",
        "rejected": " clumsy camera and grim lighting",
    },
    {
        "prompt": "review : sauce service",
        "chosen": " fresh sauce and warm service",
        "rejected": " the service was slow",
    },
]
NOISE = 0.05  # std of the weight perturbation that makes policy != reference (log-ratios of ~0.1-1 nats)


@dataclass(frozen=True)
class Harness:
    root: Path  # holds policy/ and reference/ (model + tokenizer)
    batch: dict[str, torch.Tensor]  # one TRL-collated batch of all ROWS: [chosen rows; rejected rows]
    stats: SequenceStats  # the same batch's statistics as bench.train.fit computes them


def build(root: Path) -> Harness:
    """Save a random toy reference and a perturbed policy under root; collate ROWS once; compute stats."""
    from bench.toyworld.model import ToyLlamaForCausalLM, build_reference_config
    from bench.toyworld.vocab import save_tokenizer

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    config = build_reference_config(32, 1, 2, 64, 64)
    reference, policy = ToyLlamaForCausalLM(config), ToyLlamaForCausalLM(config)
    policy.load_state_dict(reference.state_dict())
    with torch.no_grad():
        for p in policy.parameters():  # the masking bias is a buffer and stays put
            p.add_(NOISE * torch.randn(p.shape, generator=generator))
    for name, model in (("reference", reference), ("policy", policy)):
        model.save_pretrained(str(root / name))
        save_tokenizer(root / name)
    trainer = trl_trainer(root, loss_type=["sigmoid"])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    return Harness(root, batch, sequence_stats(trainer, batch))


def trl_trainer(root: Path, **config: Any) -> Any:
    """A DPOTrainer on ROWS with a fresh policy and an explicit, different reference; CPU, fp32."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    import bench.toyworld.model  # noqa: F401  (registers the toy_llama model type)

    args = DPOConfig(
        output_dir=str(root / "trl"),
        per_device_train_batch_size=len(ROWS),
        bf16=False,
        activation_checkpointing=False,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        **config,
    )
    return DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(root / "policy")),
        ref_model=AutoModelForCausalLM.from_pretrained(str(root / "reference")),
        args=args,
        train_dataset=Dataset.from_list(ROWS),
        processing_class=AutoTokenizer.from_pretrained(str(root / "reference")),
    )


def trl_loss(root: Path, batch: dict[str, torch.Tensor], **config: Any) -> float:
    """TRL's batch loss for a DPOConfig (loss_type, beta, label_smoothing, ...) on the given batch."""
    trainer = trl_trainer(root, **config)
    with torch.no_grad():
        return float(trainer._compute_loss(trainer.model, batch, False))


def sequence_stats(trainer: Any, batch: dict[str, torch.Tensor]) -> SequenceStats:
    """Policy and reference statistics of the batch through bench.train.trainer's own `_sequence_logps`."""
    sequence_logps = VariantTrainer._sequence_logps
    with torch.no_grad():
        logps, tokens = sequence_logps(trainer.model, batch)
        ref_logps, _ = sequence_logps(trainer.ref_model, batch)
    chosen, rejected = logps.chunk(2)
    chosen_tokens, rejected_tokens = tokens.chunk(2)
    ref_chosen, ref_rejected = ref_logps.chunk(2)
    return SequenceStats(chosen, rejected, chosen_tokens, rejected_tokens, ref_chosen, ref_rejected)


# DPOConfig settings every parity trainer shares: CPU, fp32, no logging integrations or progress bars
CPU = dict(bf16=False, activation_checkpointing=False, use_cpu=True, report_to=[], disable_tqdm=True)
# ... and those of the parity tests that train a few steps (one batch of all ROWS per step)
TRAINING: dict[str, Any] = dict(
    per_device_train_batch_size=len(ROWS),
    max_steps=4,
    learning_rate=5e-3,
    logging_steps=1,
    save_strategy="no",
    seed=0,
    precompute_ref_log_probs=False,
    beta=0.5,
    **CPU,
)


def fresh_models(root: Path, rows: list[dict[str, Any]] = ROWS) -> dict[str, Any]:
    """Trainer keyword arguments: the policy, the reference (eval mode), `rows` and the tokenizer, fresh."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import bench.toyworld.model  # noqa: F401  (registers the toy_llama model type)

    return {
        "model": AutoModelForCausalLM.from_pretrained(str(root / "policy")),
        "ref_model": AutoModelForCausalLM.from_pretrained(str(root / "reference")).eval(),
        "train_dataset": Dataset.from_list(rows),
        "processing_class": AutoTokenizer.from_pretrained(str(root / "reference")),
    }


def our_trainer(
    root: Path, cache: Path, rows: list[dict[str, Any]], name: str, params: dict[str, Any]
) -> Any:
    """Our VariantTrainer on `rows` (TRL-laid rows), one batch of all of them: reference log-probs from the
    reference weights (cached under `cache`), then the policy's weights loaded, as if training had moved it
    there."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig

    from bench.losses import build_loss

    models = fresh_models(root, rows)
    policy = models.pop("model")
    trainer = VariantTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(root / "reference")),
        ref_model=None,
        variant=build_loss(name, params),
        refstats={"identity": "parity-reference", "cache_dir": str(cache)},
        # precomputed as bench.train.fit does: the hook gives reference-free variants none
        args=DPOConfig(
            output_dir=str(root / "ours"),
            per_device_train_batch_size=len(rows),
            precompute_ref_log_probs=True,
            **CPU,
        ),
        train_dataset=models["train_dataset"],
        processing_class=models["processing_class"],
    )
    trainer.model.load_state_dict(policy.state_dict())
    return trainer


def our_loss(trainer: Any) -> float:
    """Our trainer's loss on one batch of its whole training set."""
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dict(dataset[i]) for i in range(len(dataset))])
    with torch.no_grad():
        return float(trainer._compute_loss(trainer.model, batch, False))


def train_steps(trainer: Any) -> tuple[list[float], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Train; (the logged losses, the policy's and the reference's weights after)."""
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    policy = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    reference = {k: v.detach().clone() for k, v in trainer.ref_model.state_dict().items()}
    return losses, policy, reference
