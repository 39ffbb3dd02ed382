"""Fixed costs of the train stage: the harness's train stage against bare TRL's DPOTrainer on the same model,
pairs, batch size, steps, sequence lengths, optimiser settings and precomputed reference log-probs
(target: the whole stage within 1.05x of bare TRL).

    python -m bench.benchmarks.train_overhead [--model toy|smollm2] [--repeats 5] [--max-steps N]
                                              [--extra OVERRIDE ...]

  toy      model=toy dataset=toy (the default toy world, train=default: 2000 pairs, batch 32, 3 epochs)
  smollm2  model=smollm2_135m dataset=tiny_chat train=small (32 pairs, batch 4, one epoch; the GGUF is rebuilt
           once into <paths.cache>/models, so pass --cache to reuse a rebuilt one)

Each measurement is a fresh process (`--side harness|bare`), run in turns harness, bare, harness, bare, ...
(ABAB) so that the load of a shared machine falls on both alike; the figures are medians over the repeats,
and the ratio is the median of the per-pair ratios. Both processes import the harness's modules, torch,
transformers, TRL and datasets before the clock starts (as a pipeline process has them); whatever a side
imports after that is its cost ("imports" is the time before the clock, for reference).
  whole     the harness: `run_train` (the train stage's body: data, model, trainer, wandb if on, training,
            publishing the final model, train_info.json and the log); bare: load the model and tokenizer,
            build DPOConfig and DPOTrainer, train, `save_model` and the tokenizer into a folder
  steps     the sum over optimiser steps of on_step_begin -> on_step_end (forward, backward, optimiser step),
            the same callback in both; per step = steps / number of steps
  fixed     whole - steps: everything else (construction, tokenisation, logging, checkpoints, saving)
The one-time reference log-prob pass is excluded from both: the harness's shared cache is filled by a
warm-up run before the timed ones (each timed run reads it, and that read counts), and bare TRL's own pass
(it recomputes in every process: its cache lives in a per-process temporary folder) is timed and subtracted.
Bare TRL uses save_strategy="no" and report_to="none" (what training one model needs); the harness runs as
configured (wandb offline, resumable checkpoints every train.save_steps). docs/environment.md has figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_STARTED = time.perf_counter()  # the imports below load torch, transformers and TRL: timed, outside the clock

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.config import load_spec  # noqa: E402
from bench.sources import select  # noqa: E402
from bench.train.fit import run_train  # noqa: E402
from bench.train.trainer import VariantTrainer  # noqa: E402

MODELS = {
    "toy": ["model=toy", "dataset=toy"],
    "smollm2": ["model=smollm2_135m", "dataset=tiny_chat", "train=small"],
}


def _overrides(args: argparse.Namespace, root: Path, index: int) -> list[str]:
    extra = [f"train.max_steps={args.max_steps}"] if args.max_steps else []
    return [
        *MODELS[args.model],
        *extra,
        *args.extra,
        "study=bench_train_overhead",
        f"paths.cache={args.cache or root / 'cache'}",
        f"paths.refstats={root / 'refstats'}",
        f"paths.results={root / f'results-{index}'}",
        f"paths.scratch={root / f'scratch-{index}'}",
    ]


class _Clock:
    """Step times through a trainer callback, and the time spent in reference log-prob precomputation."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.ref_seconds = 0.0
        self._begin = 0.0

    def install(self) -> None:
        """Patch Trainer.train to add the step callback and time both trainers' reference passes."""
        from transformers import Trainer, TrainerCallback
        from trl import DPOTrainer

        clock = self

        class Steps(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, *a: Any, **kw: Any) -> None:
                clock._begin = time.perf_counter()

            def on_step_end(self, *a: Any, **kw: Any) -> None:
                clock.steps.append(time.perf_counter() - clock._begin)

        train = Trainer.train

        def timed_train(trainer: Any, *a: Any, **kw: Any) -> Any:
            trainer.add_callback(Steps())
            return train(trainer, *a, **kw)

        setattr(Trainer, "train", timed_train)  # noqa: B010  # mypy refuses assigning to a method
        for cls in (DPOTrainer, VariantTrainer):
            precompute = cls._precompute_ref_logps

            def timed_precompute(trainer: Any, *a: Any, _f: Any = precompute, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return _f(trainer, *a, **kw)
                finally:
                    self.ref_seconds += time.perf_counter() - t0

            setattr(cls, "_precompute_ref_logps", timed_precompute)  # noqa: B010  # as above


def _harness(overrides: list[str], clock: _Clock) -> dict[str, Any]:
    spec = load_spec(overrides)
    sources = select(spec)  # the pipeline chooses the sources before any stage runs
    sources.model.reference()  # a GGUF model is rebuilt here on first use, never inside the clock
    t0 = time.perf_counter()
    run_train(spec, sources, spec.run_dir())
    whole = time.perf_counter() - t0
    return {"whole": whole, "ref_read": clock.ref_seconds, "ref_subtracted": 0.0}


def _bare(overrides: list[str], clock: _Clock, out: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    spec = load_spec(overrides)  # only to read the same settings and the same pairs
    sources = select(spec)
    path, t = sources.model.reference(), spec.train
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    args = DPOConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=t.batch_size // t.grad_accum,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        optim=t.optimizer,
        max_length=t.max_length,
        bf16=t.bf16,  # TRL's default is True: on CPU several times slower
        activation_checkpointing=t.gradient_checkpointing,  # TRL's default is on
        beta=float(spec.loss.params.get("beta", 0.1)),
        logging_steps=t.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=spec.seed,
        data_seed=spec.seed,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        precompute_ref_log_probs=True,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(sources.data.training_pairs()),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(out / "final"))
    tokenizer.save_pretrained(str(out / "final"))
    whole = time.perf_counter() - t0 - clock.ref_seconds
    return {"whole": whole, "ref_read": 0.0, "ref_subtracted": clock.ref_seconds}


def _side(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    import datasets  # noqa: F401  # what both sides need, loaded before the clock starts (with the
    import torch  # harness's modules above, as a pipeline process has them)
    from trl import DPOConfig, DPOTrainer  # noqa: F401

    imports = time.perf_counter() - _STARTED
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    root = Path(args.root)
    clock = _Clock()
    clock.install()
    overrides = _overrides(args, root, args.index)
    if args.side == "harness":
        result = _harness(overrides, clock)
    else:
        result = _bare(overrides, clock, root / f"bare-{args.index}")
    steps = sum(clock.steps)
    result.update(imports=imports, steps=steps, n_steps=len(clock.steps))
    print("RESULT " + json.dumps(result), flush=True)


def _measure(
    args: argparse.Namespace, side: str, root: Path, index: int, tree: Path | None = None
) -> dict[str, Any]:
    """One side's figures from a fresh process; `tree`: run in another checkout (python -m imports its
    `bench` first: bench.benchmarks.step_time)."""
    cmd = [sys.executable, "-m", "bench.benchmarks.train_overhead", "--side", side, "--root", str(root)]
    cmd += ["--model", args.model, "--index", str(index), "--max-steps", str(args.max_steps)]
    cmd += ["--cache", args.cache] if args.cache else []
    cmd += [f"--extra={item}" for item in args.extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tree)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{side} run in {tree or Path.cwd()} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    shutil.rmtree(root / f"scratch-{index}", ignore_errors=True)  # checkpoints: hundreds of MB per run
    shutil.rmtree(root / f"bare-{index}", ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="toy")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=0, help="0: the config's own schedule")
    parser.add_argument("--cache", default=None, help="paths.cache (default: a temporary one)")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="a further override for both sides, e.g. --extra loss=ld_dpo (repeatable; bare TRL runs "
        "sigmoid DPO whatever the loss, so compare per-step times of the harness side across variants)",
    )
    parser.add_argument("--side", choices=["harness", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.side:
        _side(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-overhead-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("WANDB_DIR", str(root))
        _measure(args, "harness", root, -1)  # warm-up: fills the reference cache (and builds the world)
        runs: dict[str, list[dict[str, Any]]] = {"harness": [], "bare": []}
        for i in range(args.repeats):
            for side in ("harness", "bare"):
                runs[side].append(_measure(args, side, root, i))
                print(f"  repeat {i} {side:8s} " + json.dumps(runs[side][-1]), flush=True)
    _print(args, runs)


def _print(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> None:
    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def per_step(r: dict[str, Any]) -> float:
        return float(r["steps"] / max(r["n_steps"], 1))

    def fixed(r: dict[str, Any]) -> float:
        return float(r["whole"] - r["steps"])

    steps = runs["harness"][0]["n_steps"]
    print(
        f"train stage, {args.model} ({' '.join(MODELS[args.model])}), {steps} optimiser steps, "
        f"{os.cpu_count()} CPUs; seconds, median of {args.repeats} (harness and bare in turns)"
    )
    print(f"{'':10s} {'whole':>8s} {'steps':>8s} {'per step':>9s} {'fixed':>8s} {'imports':>8s}")
    for side in ("harness", "bare"):
        rows = runs[side]
        print(
            f"{side:10s} {med(side, 'whole'):8.2f} {med(side, 'steps'):8.2f} "
            f"{statistics.median(map(per_step, rows)):9.4f} {statistics.median(map(fixed, rows)):8.2f} "
            f"{med(side, 'imports'):8.2f}"
        )
    pairs = list(zip(runs["harness"], runs["bare"], strict=True))
    ratio = {
        "whole": statistics.median(h["whole"] / b["whole"] for h, b in pairs),
        "per step": statistics.median(per_step(h) / per_step(b) for h, b in pairs),
        "fixed": statistics.median(fixed(h) / max(fixed(b), 1e-9) for h, b in pairs),
    }
    print(
        f"harness/bare (median of paired ratios): whole {ratio['whole']:.3f}x (target <= 1.05x), "
        f"per step {ratio['per step']:.3f}x, fixed {ratio['fixed']:.2f}x"
    )
    extra = statistics.median(fixed(h) - fixed(b) for h, b in pairs)
    print(f"harness's extra fixed cost (its fixed - bare's, median over pairs): {extra:.2f} s")
    excluded, read = med("bare", "ref_subtracted"), med("harness", "ref_read")
    print(
        f"excluded: bare TRL's own reference pass, median {excluded:.2f} s; included: the harness's read "
        f"of its shared cache, median {read:.2f} s"
    )


if __name__ == "__main__":
    main()
