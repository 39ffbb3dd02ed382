"""What the train stage keeps on disk while it runs: the progress log, intermediate policies for evaluation
over training, and resumable trainer checkpoints, so a preempted or timed-out run continues where it was.

Rank-aware: under `accelerate launch` (train.processes > 1) every process runs the trainer, and only rank 0
writes the run's own files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.records import atomic_dir, atomic_write_text, remove_temporaries
from bench.core.space import append_whole

if TYPE_CHECKING:
    from bench.specs import RunSpec

log = logging.getLogger(__name__)


def is_main_process() -> bool:
    """Rank 0, or the only process (accelerate and torchrun set RANK in every process they start)."""
    return int(os.environ.get("RANK", "0")) == 0


def trainer_dir(spec: RunSpec) -> Path:
    """TRL/transformers checkpoints (weights, optimiser, scheduler, RNG) of an unfinished training."""
    return spec.scratch_dir() / "trainer"


def step_checkpoints_dir(spec: RunSpec) -> Path:
    """Intermediate policies for evaluation over training: <scratch>/<study>/<run_id>/steps/step-NNNNNN."""
    return spec.scratch_dir() / "steps"


def damage(checkpoint: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it reads back whole: its
    trainer_state.json (written last) parses, every safetensors file holds the bytes its header promises, and
    every torch file (optimiser, scheduler, RNG states, training arguments) has an intact zip directory.
    Cheap: headers and directories only, never the tensors (a 7B optimiser state is tens of GB)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        return "trainer_state.json missing or partial (killed while saving)"
    for path in sorted(checkpoint.glob("*.safetensors")):
        try:
            with path.open("rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(size))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size < 8 + size + end:
                return f"{path.name} is truncated ({path.stat().st_size} of {8 + size + end} bytes)"
        except (OSError, ValueError, KeyError, TypeError):
            return f"{path.name} has no readable safetensors header"
    for path in sorted([*checkpoint.glob("*.pt"), *checkpoint.glob("*.pth"), *checkpoint.glob("*.bin")]):
        try:
            with zipfile.ZipFile(path):  # torch.save's format: a zip whose directory sits at the very end
                pass
        except (OSError, zipfile.BadZipFile):
            return f"{path.name} is truncated or corrupt"
    return None


def last_complete_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The newest checkpoint-N that reads back whole (`damage`); damaged ones are skipped (set_aside_damaged
    moves them out of the way), and with no intact one left the stage starts from step 0.

    transformers writes a checkpoint in place, file by file: a job killed while saving leaves a partial
    folder, and a full disk or a bad copy a truncated file; neither must be resumed from. With
    save_total_limit=1 the older complete one is deleted only after the new one is finished."""
    if not folder.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for path in folder.glob("checkpoint-*"):
        try:
            found.append((int(path.name.removeprefix("checkpoint-")), path))
        except ValueError:
            continue
    for step, path in sorted(found, reverse=True):
        if damage(path) is None:
            return path, step
    return None


def set_aside_damaged(folder: Path) -> None:
    """Rename checkpoints that cannot be resumed from to damaged-checkpoint-N (kept, never deleted), with a
    warning: left in place, transformers' rotation (save_total_limit) would keep the damaged newest one and
    delete the good checkpoints saved after the restart. Main process only."""
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        why = damage(path)
        if why is None:
            continue
        aside = path.with_name(f"damaged-{path.name}-{time.strftime('%Y%m%dT%H%M%S')}")
        path.rename(aside)
        log.warning("checkpoint %s cannot be resumed from (%s): set aside as %s", path, why, aside.name)


def keep_log_until(path: Path, step: int) -> None:
    """Cut the partial train log back to rows of steps <= `step` (steps past the checkpoint are redone),
    and to the rows before any unreadable one (a row cut short by a crash). The end-of-training summary row
    goes too: a training resumed from its last checkpoint logs its own."""
    if not path.exists():
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            log.warning("%s: dropping a partial row and any after it", path)
            break
        if row.get("step", 0) <= step and "train_runtime" not in row:
            rows.append(row)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def discard_partial_saves(spec: RunSpec) -> Path | None:
    """After a save ran out of space: delete the checkpoint folders it left half-written (set aside they would
    keep the disk full; the intact older one stays) and the unpublished final model. Returns the folder
    whose save failed, for the error message. Main process only."""
    failed = None
    folder = trainer_dir(spec)
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        if damage(path) is not None:
            shutil.rmtree(path, ignore_errors=True)
            log.warning("removed %s, cut short by the full disk", path)
            failed = path
    staging = spec.checkpoint_dir().with_name(spec.checkpoint_dir().name + ".partial")
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
        failed = failed or staging
    remove_temporaries(step_checkpoints_dir(spec))
    return failed


def log_callback(path: Path) -> Any:
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):  # type: ignore[misc]
        """Append each TRL log row to the partial train log (rank 0) and print a progress line."""

        def __init__(self) -> None:
            self.fd: int | None = None
            self.t0 = time.perf_counter()

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            if not state.is_world_process_zero:
                return
            row = {
                "step": state.global_step,
                "epoch": state.epoch,
                "time_s": round(time.perf_counter() - self.t0, 3),
            }
            row.update(logs or {})
            if self.fd is None:  # a resumed run appends to the rows kept by keep_log_until
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            append_whole(self.fd, (json.dumps(row) + "\n").encode(), path)  # whole rows, even on a full disk
            if "loss" in row:
                log.info(
                    "train step %d/%d loss %.4f margin %.3f acc %.2f",
                    state.global_step,
                    state.max_steps,
                    row["loss"],
                    row.get("rewards/margins", float("nan")),
                    row.get("rewards/accuracies", float("nan")),
                )

        def on_train_end(self, *a: Any, **kw: Any) -> None:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    return JsonlLog()


def step_saver(folder: Path, every: int, tokenizer: Any) -> Any:
    from transformers import TrainerCallback

    class StepSaver(TrainerCallback):  # type: ignore[misc]
        """Save the policy's weights (no optimiser state) every `every` steps, each folder atomically; a step
        already saved by an interrupted earlier attempt is kept."""

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            step = state.global_step
            target = folder / f"step-{step:06d}"
            if not state.is_world_process_zero:
                return
            if step % every or target.exists() or step == state.max_steps:  # the final one is the checkpoint
                return
            with atomic_dir(target) as tmp:
                model.save_pretrained(str(tmp))
                tokenizer.save_pretrained(str(tmp))

    return StepSaver()


def no_final_checkpoint() -> Any:
    from transformers import TrainerCallback

    class NoFinalCheckpoint(TrainerCallback):  # type: ignore[misc]
        """No trainer checkpoint at the last step. transformers' DefaultFlowCallback (which runs before this
        one) saves one there whatever save_steps says: weights, optimiser state, scheduler and RNG, 1.5 GB and
        3-5 s for a 135M model here, minutes for a 7B one. Nothing resumes from a finished training:
        publish_final saves the policy and the stage then deletes the trainer folder. The save_steps
        checkpoints before the last step are untouched, so a stopped run still resumes; one stopped between
        the last step and the publishing redoes the steps since the newest of them."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step >= state.max_steps:
                control.should_save = False

    return NoFinalCheckpoint()


def publish_final(trainer: Any, tokenizer: Any, checkpoint: Path) -> None:
    """Save the trained policy to `checkpoint` in one rename. Every process calls this (FSDP and DeepSpeed
    gather the weights collectively); rank 0 writes and renames."""
    staging = checkpoint.with_name(checkpoint.name + ".partial")
    if trainer.accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)  # left by a run killed while saving
    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # peft (model.lora): save the merged full model, which evaluation,
        if trainer.accelerator.is_main_process:  # lm-eval and vLLM load like any checkpoint
            model.merge_and_unload().save_pretrained(str(staging))
    else:
        trainer.save_model(str(staging))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(staging))
        if checkpoint.exists():
            shutil.rmtree(checkpoint)
        os.replace(staging, checkpoint)
    trainer.accelerator.wait_for_everyone()
