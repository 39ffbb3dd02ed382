"""Training one policy: the run's pairs, reference model and loss variant into the one TRL subclass
(bench.train.trainer), with the run's optimiser settings, resumable checkpoints and progress log
(bench.train.state); in several processes when train.processes > 1 (bench.train.distributed).

Also `python -m bench.train.fit RUN_DIR`: one of the processes `accelerate launch` starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from bench.config import build_spec
from bench.core.errors import ConfigError, DiskFullError
from bench.core.records import atomic_write_json, read_json, remove_temporaries
from bench.core.space import disk_full_error
from bench.losses import build_loss
from bench.sources import Sources, select
from bench.specs import RunSpec
from bench.tracking import finish_training_run, start_training_run
from bench.train import moving_ref
from bench.train.distributed import launch_training
from bench.train.more import trainer_rows
from bench.train.online import Labeller, OnlineCollator, OnlineCounts
from bench.train.refcache import model_identity
from bench.train.rounds import start_and_reference
from bench.train.rows import variant_rows
from bench.train.state import (
    discard_partial_saves,
    is_main_process,
    keep_log_until,
    last_complete_checkpoint,
    log_callback,
    no_final_checkpoint,
    publish_final,
    set_aside_damaged,
    step_checkpoints_dir,
    step_saver,
    trainer_dir,
)
from bench.train.trainer import VariantTrainer

log = logging.getLogger(__name__)


def run_train(
    spec: RunSpec, sources: Sources, run_dir: Path, online: tuple[Labeller, Any] | None = None
) -> Path:
    """Train the policy; write the checkpoint (paths.scratch) and run_dir/train_log.jsonl. Skips if done;
    resumes from the last complete trainer checkpoint if an earlier attempt was stopped (preemption, time
    limit, crash). With train.processes > 1 the training runs in that many processes
    (bench.train.distributed). `online`: (labeller, decoding) of online training (bench.train.online)."""
    checkpoint = spec.checkpoint_dir()
    if (checkpoint / "config.json").exists() and (run_dir / "train_log.jsonl").exists():
        return checkpoint
    run_dir.mkdir(parents=True, exist_ok=True)
    if spec.train.processes > 1 and "RANK" not in os.environ:  # the run process: start the trainers
        launch_training(spec, run_dir)
        return checkpoint
    return _train_here(spec, sources, run_dir, online)


def _train_here(
    spec: RunSpec, sources: Sources, run_dir: Path, online: tuple[Labeller, Any] | None = None
) -> Path:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig

    checkpoint = spec.checkpoint_dir()
    partial_log = run_dir / "train_log.jsonl.partial"  # renamed once the checkpoint is in place
    t0 = time.perf_counter()
    t = spec.train
    if t.bf16 and not torch.cuda.is_available():
        raise ConfigError(
            "train.bf16=true on a machine without a GPU: on CPU bf16 autocast is 3.5-9x slower and changes "
            "the learning dynamics (docs/environment.md, TRL on CPU); set train.bf16=false, or run "
            "on a GPU node"
        )
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    if is_main_process():
        set_aside_damaged(trainer_dir(spec))
        remove_temporaries(step_checkpoints_dir(spec))  # a killed attempt's unfinished step saves
    variant = build_loss(spec.loss.module, spec.loss.params)
    resume = last_complete_checkpoint(trainer_dir(spec))
    kept = [moving_ref.FILE] + ([moving_ref.BEMA_FILE] if variant.reference_averaging() is not None else [])
    if resume and variant.moving_reference and not all((resume[0] / f).exists() for f in kept):
        # killed between transformers' checkpoint and the reference's save (the older checkpoint is gone)
        log.warning("%s lacks the moving reference: training restarts from step 0", resume[0])
        resume = None
    if is_main_process():
        keep_log_until(partial_log, resume[1] if resume else 0)
    rows = variant_rows(spec, variant, sources.data)
    # a round of a chain starts from the previous round's policy, against it or the original reference
    start, ref_path = start_and_reference(spec, sources.model.reference())
    policy, tokenizer = sources.model.load(start)
    policy.train()
    refstats: dict[str, Any] = {
        # the weights and the precision they run in: fp32 and bf16 reference log-probs differ
        "identity": model_identity(ref_path)
        + ("" if spec.model.dtype == "float32" else f"-{spec.model.dtype}"),
        "cache_dir": str(spec.paths.refstats),
    }
    if spec.logging.wandb and is_main_process():
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
        # Resumable checkpoints (weights, optimiser, scheduler, RNG); only the newest is kept, and none at the
        # last step (no_final_checkpoint: publish_final saves the policy).
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 1,
        save_total_limit=1,
        report_to=["wandb"] if spec.logging.wandb else [],  # WANDB_MODE=offline unless set
        run_name=spec.run_id,
        seed=spec.seed,
        data_seed=spec.seed,
        disable_tqdm=True,
        dataset_num_proc=None,
        use_cpu=not torch.cuda.is_available(),
        # Reference log-probs come from the shared cache before training, so no reference model is kept
        # in memory and no reference forward runs per step (TRL then passes them in each batch); a reference
        # that moves (bench.train.moving_ref) or whose whole distribution is needed (bench.train.position_kl)
        # is the exception.
        # (online pairs do not exist before their batch: the reference is scored on each, bench.train.online)
        precompute_ref_log_probs=not (variant.live_reference() or online),
    )
    callbacks = [log_callback(partial_log), no_final_checkpoint()]
    if spec.eval.every_steps:
        callbacks.append(step_saver(step_checkpoints_dir(spec), spec.eval.every_steps, tokenizer))
    # A reference that is not the starting policy scores the pairs itself (VariantTrainer._reference_pass).
    separate = variant.live_reference() or ref_path != start or online is not None
    moving = sources.model.load(ref_path)[0].eval() if separate else None
    trainer = VariantTrainer(
        model=policy,
        ref_model=moving,
        peft_config=_lora_config(spec),
        variant=variant,
        refstats=refstats,
        live_reference=online is not None,
        args=args,
        train_dataset=Dataset.from_list(trainer_rows(rows, variant.data_shape)),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    counts = OnlineCounts()
    if online is not None:  # each batch sampled from the policy as it is, judged, then collated as offline
        trainer.data_collator = OnlineCollator(
            trainer.data_collator,
            lambda: trainer.accelerator.unwrap_model(trainer.model),
            tokenizer,
            online[0],
            spec.onpolicy.samples,
            online[1],
            counts,
        )
    trainer.remove_callback(PrinterCallback)  # our callback logs progress lines; no raw dict printing
    if variant.moving_reference:
        trainer.add_callback(
            moving_ref.moving_reference_callback(trainer, variant, resume[0] if resume else None)
        )
    if resume:
        log.info("resuming training of %s from step %d (%s)", spec.loss.name, resume[1], resume[0].name)
    else:
        log.info("training %s on %d %s rows", spec.loss.name, len(rows), variant.data_shape)
    try:
        trainer.train(resume_from_checkpoint=str(resume[0]) if resume else None)
        if spec.logging.wandb:
            finish_training_run(spec)
        publish_final(trainer, tokenizer, checkpoint)
    except Exception as err:
        # torch.save and safetensors word a full disk their own ways (bench.core.space); the half-written
        # save is deleted so that freeing space is all a rerun needs, and it resumes from the intact one.
        full = disk_full_error(err, trainer_dir(spec), "paths.scratch")
        if full is None:
            raise
        failed = discard_partial_saves(spec) if is_main_process() else None
        if failed is not None and full.filename == str(trainer_dir(spec)):
            full = DiskFullError(failed, "paths.scratch")
        raise full from err
    if is_main_process():
        info = {
            "reference_model": str(ref_path),  # the resolved folder (a Hub snapshot names its commit)
            "start_model": str(start),  # the previous round's policy in a chain, else the reference
            "reference_logps": refstats,
            "seconds": time.perf_counter() - t0,
            "resumed_from_step": resume[1] if resume else None,
            "processes": t.processes,
            **({"online": counts.record()} if online is not None else {}),
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
    """`python -m bench.train.fit RUN_DIR`: one of the processes `accelerate launch` starts
    (bench.train.distributed); the run is rebuilt from its folder's manifest, so every process trains exactly
    the run the caller has."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main = int(os.environ.get("RANK", "0")) == 0
    logging.getLogger("bench").setLevel(logging.INFO if main else logging.WARNING)
    spec = build_spec(OmegaConf.create(read_json(Path(run_dir) / "manifest.json")["config"]))
    _train_here(spec, select(spec), Path(run_dir))


if __name__ == "__main__":
    _worker_main(sys.argv[1])
