"""Harness overhead per run: time a run spends outside training, generation and evaluation, on the local and
Slurm launchers (target: under 5 s per run beyond process start).

    python -m bench.benchmarks.overhead [--runs 4] [--launchers local,slurm] [--root DIR]

Submits a toy study (the tiny toy world, DPO over `--runs` betas) with each launcher and reads every run's
status.json. Per run:
  queue     submission -> the process that runs it starts (Slurm scheduling; local worker start)
  start     process start -> the harness is called: interpreter, imports (torch, transformers), unpickling.
            A local worker runs several runs in one process: its later runs pay no start, their time since
            the previous run ended counts as harness
  harness   the harness's own time: config, preflight checks, run lock and manifest before the stages, plus
            the bookkeeping between them (run time minus the sum of stage times)
  stages    the stages' own work (training, generation, judging, lm-eval, metrics)
The Slurm launcher needs a cluster (bench/cluster/local_slurm.sh up); without one it is skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.core.records import read_json

TINY = ["model=toy_tiny", "dataset=toy_tiny", "train=tiny", "eval=tiny"]


def _bench(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "bench.cli", *args], check=True, capture_output=True, text=True)


def _measure(root: Path, launcher: str, runs: int) -> list[dict[str, float]]:
    study = f"overhead_{launcher}"
    paths = [f"paths.cache={root / 'cache'}", f"paths.results={root / 'results'}"]
    paths.append(f"paths.scratch={root / 's'}")
    betas = ", ".join(str(0.5 + i) for i in range(runs))
    study_file = root / f"{study}.yaml"
    variants = f"variants:\n  dpo: {{loss.beta: [{betas}]}}\n"
    study_file.write_text(f"study: {study}\nquestion: harness overhead\n{variants}")
    extra = {
        "local": ["launcher=local", "launcher.workers=2"],
        "slurm": ["launcher=slurm", "launcher.cpus_per_task=1", "launcher.mem_gb=2", "launcher.time_min=10"],
    }[launcher]
    submitted = time.time()
    _bench("sweep", str(study_file), *TINY, *paths, *extra)
    returned = time.time() - submitted
    study_dir = root / "results" / study
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        folders = [p for p in study_dir.iterdir() if (p / "status.json").exists()]
        states = [read_json(p / "status.json")["state"] for p in folders]
        if len(folders) == runs and all(s in ("done", "failed") for s in states):
            break
        time.sleep(1)
    attempts = []
    for folder in folders:
        status: dict[str, Any] = read_json(folder / "status.json")
        stages = sum(s.get("seconds", 0.0) for s in status["stages"].values())
        attempts.append((status["attempts"][-1], stages))
    rows = []
    previous_end: dict[tuple[str, int], float] = {}
    for attempt, stages in sorted(attempts, key=lambda a: a[0]["t_entered"]):
        process = (attempt["host"], attempt["pid"])
        if process in previous_end:  # a later run of a local worker: no process start of its own
            start, before = 0.0, attempt["t_start"] - previous_end[process]
        else:
            start = attempt["t_entered"] - attempt["t_process"]
            before = attempt["t_start"] - attempt["t_entered"]
        previous_end[process] = attempt["t_end"]
        between = attempt["t_end"] - attempt["t_start"] - stages
        rows.append(
            {
                "returned": returned,
                "queue": attempt["t_process"] - submitted,
                "start": start,
                "harness": before + between,
                "stages": stages,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--launchers", default="local,slurm")
    parser.add_argument("--root", default=None, help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-overhead-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    _bench("world", *TINY, f"paths.cache={root / 'cache'}")
    print(f"{args.runs} tiny toy runs per launcher, {os.cpu_count()} CPUs; seconds per run (median, max)")
    print(f"{'launcher':9s} {'submit returns':>15s} {'queue':>12s} {'start':>12s} {'harness':>12s} "
          f"{'stages':>12s}")  # fmt: skip
    for launcher in args.launchers.split(","):
        if launcher == "slurm" and shutil.which("sinfo") is None:
            print("slurm     skipped: no Slurm here (bench/cluster/local_slurm.sh up starts one)")
            continue
        rows = _measure(root, launcher, args.runs)

        def cell(key: str, rows: list[dict[str, float]] = rows) -> str:
            values = [r[key] for r in rows]
            return f"{statistics.median(values):5.2f} ({max(values):5.2f})"

        print(f"{launcher:9s} {rows[0]['returned']:15.2f} {cell('queue'):>12s} {cell('start'):>12s} "
              f"{cell('harness'):>12s} {cell('stages'):>12s}")  # fmt: skip
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
