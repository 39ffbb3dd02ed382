"""The train stage: every variant through TRL's DPOTrainer with one loss hook. The one module importing trl.

TRL keeps all of its loss branches in the private `_compute_loss`; we override it once. TRL still does the
tokenisation, collation, optimiser, schedule, accelerate plumbing and the fused log-prob head; we compute the
per-sequence statistics the same way for every variant and hand them to the variant's loss object. Nothing
here looks at a variant's name: only at what it declares (`needs_reference`, `needs_kl_pairs`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.losses import PreferenceLoss, SequenceStats, build_loss
from bench.records import atomic_write_json

if TYPE_CHECKING:
    from bench.config import RunSpec

log = logging.getLogger(__name__)

# TRL's DPOTrainer is imported lazily (slow); the subclass is built on first use.
_TRAINER_CLASS: type | None = None


def _trainer_class() -> type:
    global _TRAINER_CLASS
    if _TRAINER_CLASS is not None:
        return _TRAINER_CLASS
    from trl import DPOTrainer

    class VariantTrainer(DPOTrainer):  # type: ignore[misc]
        """DPOTrainer whose loss is a bench.losses variant over shared per-sequence statistics."""

        def __init__(self, *args: Any, variant: PreferenceLoss, refstats: dict[str, Any], **kwargs: Any):
            # Set before DPOTrainer.__init__, which prepares the data and precomputes reference statistics
            # through the hooks below.
            self.variant = variant
            self.refstats = refstats
            super().__init__(*args, **kwargs)
            if variant.needs_kl_pairs:  # training batches also carry the rows' KL pairs (bench.klpairs)
                from bench.klpairs import KLPairCollator

                self.data_collator = KLPairCollator(self.data_collator)

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            from bench.tokens import single_bos

            dataset = single_bos(dataset, processing_class)
            if self.variant.needs_kl_pairs:
                from bench.klpairs import add_kl_completions

                dataset = add_kl_completions(dataset)
            return dataset

        def _set_signature_columns_if_needed(self) -> None:
            """Keep the KL-pair columns, which TRL's column filter would drop as unknown."""
            super()._set_signature_columns_if_needed()
            if self.variant.needs_kl_pairs:
                from bench.klpairs import KL_COLUMNS

                columns: list[str] = list(self._signature_columns or [])
                columns += [c for c in KL_COLUMNS if c not in columns]
                self._signature_columns = columns  # type: ignore[assignment]  # typed None in transformers

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            """Reference log-probs of every pair (and of its KL pairs, if the variant needs them) from the
            shared cache (bench.refcache), computed once per reference model, tokenised pairs and truncation
            settings. Reference-free variants get none.

            At this point `self.model` still holds the reference weights (the policy starts from them), so no
            second model is ever loaded for training."""
            if self.variant.needs_reference:
                chosen, rejected = self._cached_reference_logps(dataset, name, batch_size, "")
                dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
                dataset = dataset.add_column("ref_rejected_logps", rejected.tolist())
            if self.variant.needs_kl_pairs:
                from bench.klpairs import kl_view

                chosen, rejected = self._cached_reference_logps(
                    kl_view(dataset), f"{name} KL", batch_size, "kl_"
                )
                dataset = dataset.add_column("ref_kl_chosen_logps", chosen.tolist())
                dataset = dataset.add_column("ref_kl_rejected_logps", rejected.tolist())
            return dataset

        def _cached_reference_logps(
            self, pairs: Any, name: str, batch_size: int, prefix: str
        ) -> tuple[torch.Tensor, torch.Tensor]:
            """Reference (chosen, rejected) log-probs of tokenised pairs; the cache key goes to refstats."""
            from bench.refcache import cached_reference_logps, pairs_key

            args: Any = self.args  # a DPOConfig
            model: Any = self.model  # still the reference weights here
            settings = {"max_length": args.max_length, "truncation": args.truncation_mode}
            key = pairs_key(pairs, self.refstats["identity"], settings)

            def compute() -> tuple[torch.Tensor, torch.Tensor]:
                from torch.utils.data import DataLoader

                loader = DataLoader(
                    pairs, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False
                )
                chosen, rejected = [], []
                model.eval()
                with torch.no_grad():
                    for batch in loader:
                        batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
                        logps, _ = self._sequence_logps(model, batch)
                        c, r = logps.chunk(2)
                        chosen.append(c.float().cpu())
                        rejected.append(r.float().cpu())
                model.train()
                return torch.cat(chosen), torch.cat(rejected)

            chosen, rejected, computed = cached_reference_logps(
                Path(self.refstats["cache_dir"]), key, compute
            )
            self.refstats.update(
                {f"{prefix}key": key, f"{prefix}computed": computed, f"{prefix}pairs": len(chosen)}
            )
            log.info(
                "reference log-probs of %d %s pairs: %s (cache key %s)",
                len(chosen),
                name,
                "computed" if computed else "reused from the shared cache",
                key,
            )
            return chosen, rejected

        def _sequence_logps(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            """Summed completion log-probs (2B,) and scored-token counts (2B,); rows [chosen; rejected]."""
            completion_mask = inputs["completion_mask"]
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            out = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                labels=labels,
                use_cache=False,
                fused_lm_head=True,
            )
            shift_mask = completion_mask[:, 1:]
            per_token = out.log_probs[:, -shift_mask.size(1) :]  # zero off the completion
            return per_token.sum(1), shift_mask.sum(1)

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            mode = "train" if model.training else "eval"
            logps, tokens = self._sequence_logps(model, inputs)
            ref_chosen = ref_rejected = None
            if self.variant.needs_reference:  # precomputed once (see _precompute_ref_logps)
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            kl: dict[str, torch.Tensor] = {}
            if self.variant.needs_kl_pairs:  # the rows' mismatched pairs; a reference point, so no gradient
                with torch.no_grad():
                    kl_inputs = {k[3:]: v for k, v in inputs.items() if k.startswith("kl_")}
                    kl["policy_kl_logps"] = self._sequence_logps(model, kl_inputs)[0]
                kl["ref_kl_logps"] = inputs["ref_kl_logps"]
            chosen_logps, rejected_logps = logps.chunk(2)
            chosen_tokens, rejected_tokens = tokens.chunk(2)
            stats = SequenceStats(
                chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, ref_chosen, ref_rejected, **kl
            )
            result = self.variant(stats)
            loss = result.losses.mean()
            self._log_batch(mode, result.chosen_rewards.detach(), result.rejected_rewards.detach(), stats)
            if return_outputs:
                raise NotImplementedError("evaluation with outputs is not used by dpo-bench")
            return loss

        def _log_batch(
            self, mode: str, chosen: torch.Tensor, rejected: torch.Tensor, stats: SequenceStats
        ) -> None:
            gather = self.accelerator.gather_for_metrics
            metrics = self._metrics[mode]
            metrics["rewards/chosen"].append(gather(chosen).mean().item())
            metrics["rewards/rejected"].append(gather(rejected).mean().item())
            metrics["rewards/accuracies"].append(gather((chosen > rejected).float()).mean().item())
            metrics["rewards/margins"].append(gather(chosen - rejected).mean().item())
            metrics["logps/chosen"].append(gather(stats.policy_chosen_logps.detach()).mean().item())
            metrics["logps/rejected"].append(gather(stats.policy_rejected_logps.detach()).mean().item())
            metrics["tokens/chosen"].append(gather(stats.chosen_tokens.float()).mean().item())
            metrics["tokens/rejected"].append(gather(stats.rejected_tokens.float()).mean().item())
            if stats.policy_kl_logps is not None and stats.ref_kl_logps is not None:
                kl_logratio = (stats.policy_kl_logps - stats.ref_kl_logps).float()
                metrics["kl_pairs/logratio"].append(gather(kl_logratio).mean().item())

    _TRAINER_CLASS = VariantTrainer
    return VariantTrainer


def run_train(spec: RunSpec, run_dir: Path) -> Path:
    """Train the policy; write the checkpoint (paths.scratch) and run_dir/train_log.jsonl. Skips if done;
    resumes from the last complete trainer checkpoint if an earlier attempt was stopped (preemption, time
    limit, crash). With train.processes > 1 the training runs in that many processes (bench.distributed)."""
    checkpoint = spec.checkpoint_dir()
    if (checkpoint / "config.json").exists() and (run_dir / "train_log.jsonl").exists():
        return checkpoint
    run_dir.mkdir(parents=True, exist_ok=True)
    if spec.train.processes > 1 and "RANK" not in os.environ:  # the run process: start the trainers
        from bench.distributed import launch_training

        launch_training(spec, run_dir)
        return checkpoint
    return _train_here(spec, run_dir)


def _train_here(spec: RunSpec, run_dir: Path) -> Path:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig

    from bench.data.preference import training_rows
    from bench.errors import ConfigError
    from bench.models import load_model, reference_model_path
    from bench.refcache import model_identity
    from bench.train_state import (
        is_main_process,
        keep_log_until,
        last_complete_checkpoint,
        log_callback,
        publish_final,
        step_checkpoints_dir,
        step_saver,
        trainer_dir,
    )

    checkpoint = spec.checkpoint_dir()
    partial_log = run_dir / "train_log.jsonl.partial"  # renamed once the checkpoint is in place
    t0 = time.perf_counter()
    t = spec.train
    if t.bf16 and not torch.cuda.is_available():
        raise ConfigError(
            "train.bf16=true on a machine without a GPU: on CPU bf16 autocast is 3.5-9x slower and changes "
            "the learning dynamics (shared/notes/ENVIRONMENT.md); set train.bf16=false, or run on a GPU node"
        )
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    resume = last_complete_checkpoint(trainer_dir(spec))
    if is_main_process():
        keep_log_until(partial_log, resume[1] if resume else 0)
    variant = build_loss(spec.loss.name, spec.loss.params)
    rows = training_rows(spec)
    ref_path = reference_model_path(spec)
    policy, tokenizer = load_model(spec, ref_path)
    policy.train()
    refstats: dict[str, Any] = {
        # the weights and the precision they run in: fp32 and bf16 reference log-probs differ
        "identity": model_identity(ref_path)
        + ("" if spec.model.dtype == "float32" else f"-{spec.model.dtype}"),
        "cache_dir": spec.paths["refstats"],
    }
    if spec.logging.get("wandb") and is_main_process():
        from bench.tracking import start_training_run

        start_training_run(spec, run_dir)
    args = DPOConfig(
        output_dir=str(trainer_dir(spec)),
        per_device_train_batch_size=t.batch_size // (t.grad_accum * t.processes),
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the steps
        weight_decay=t.weight_decay,
        optim=t.optimizer,
        max_length=t.max_length,
        bf16=t.bf16,
        # transformers 5 name; TRL defaults its deprecated alias gradient_checkpointing to True
        activation_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps,
        # Resumable checkpoints (weights, optimiser, scheduler, RNG); only the newest is kept.
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 1,
        save_total_limit=1,
        report_to=["wandb"] if spec.logging.get("wandb") else [],  # WANDB_MODE=offline unless set
        run_name=spec.run_id,
        seed=spec.seed,
        data_seed=spec.seed,
        disable_tqdm=True,
        dataset_num_proc=None,
        use_cpu=not torch.cuda.is_available(),
        # Reference log-probs come from the shared cache before training, so no reference model is kept
        # in memory and no reference forward runs per step (TRL then passes them in each batch).
        precompute_ref_log_probs=True,
    )
    callbacks = [log_callback(partial_log)]
    if spec.eval.every_steps:
        callbacks.append(step_saver(step_checkpoints_dir(spec), spec.eval.every_steps, tokenizer))
    trainer = _trainer_class()(
        model=policy,
        ref_model=None,
        peft_config=_lora_config(spec),
        variant=variant,
        refstats=refstats,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # our callback logs progress lines; no raw dict printing
    if resume:
        log.info("resuming training of %s from step %d (%s)", spec.loss.name, resume[1], resume[0].name)
    else:
        log.info("training %s on %d pairs", spec.loss.name, len(rows))
    trainer.train(resume_from_checkpoint=str(resume[0]) if resume else None)
    if spec.logging.get("wandb"):  # close the run so its (offline) folder is complete before we move on
        import wandb

        wandb.finish()
    publish_final(trainer, tokenizer, checkpoint)
    if is_main_process():
        info = {
            "reference_model": str(ref_path),  # the resolved folder (a Hub snapshot names its commit)
            "reference_logps": refstats,
            "seconds": time.perf_counter() - t0,
            "resumed_from_step": resume[1] if resume else None,
            "processes": t.processes,
        }
        atomic_write_json(run_dir / "train_info.json", info)
        partial_log.replace(run_dir / "train_log.jsonl")
        shutil.rmtree(trainer_dir(spec), ignore_errors=True)
    return checkpoint


def _lora_config(spec: RunSpec) -> Any:
    """peft's LoraConfig from model.lora, or None (full fine-tuning). With LoRA the reference is the frozen
    base (the adapters start at zero, so the precomputed reference log-probs are the base model's)."""
    lora = spec.model.lora
    if lora is None or not lora.enabled:
        return None
    from peft import LoraConfig

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def _worker_main(run_dir: str) -> None:
    """`python -m bench.train RUN_DIR`: one of the processes `accelerate launch` starts (bench.distributed);
    the run is rebuilt from its folder's manifest, so every process trains exactly the run the caller has."""
    from omegaconf import OmegaConf

    from bench.config import build_spec
    from bench.records import read_json

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main = int(os.environ.get("RANK", "0")) == 0
    logging.getLogger("bench").setLevel(logging.INFO if main else logging.WARNING)
    spec = build_spec(OmegaConf.create(read_json(Path(run_dir) / "manifest.json")["config"]))
    _train_here(spec, Path(run_dir))


if __name__ == "__main__":
    import sys

    _worker_main(sys.argv[1])
