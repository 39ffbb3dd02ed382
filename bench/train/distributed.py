"""Several training processes for one run (train.processes > 1): `accelerate launch` inside the run's own
allocation (a Slurm job with all GPUs of its node, or a laptop).

Only the train stage is distributed: the run process starts `accelerate launch ... -m bench.train.fit
RUN_DIR`, every process rebuilds the run from the run folder's manifest, and the evaluation stages then run in
the run process as usual. Without an accelerate config this is DDP through torchrun (NCCL on GPUs, gloo on
CPU); an `accelerate config` YAML (train.accelerate_config) selects FSDP or DeepSpeed.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.specs import RunSpec

log = logging.getLogger(__name__)


def allocated_cpus() -> int:
    """CPUs this job may use: Slurm's allocation when inside one (without cgroups the affinity mask shows the
    whole node), else the process's affinity."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK") or len(os.sched_getaffinity(0)))


def _free_port() -> int:
    """A port for the processes' rendezvous: several runs may share a node, so never a fixed one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(spec: RunSpec, run_dir: Path) -> list[str]:
    t = spec.train
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(t.processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "--mixed_precision",
        "bf16" if t.bf16 else "no",
        "--dynamo_backend",
        "no",
    ]
    # accelerate's --cpu path needs MPI for several processes; its multi-GPU path (torchrun) gives gloo on CPU
    cmd += ["--config_file", t.accelerate_config] if t.accelerate_config else ["--multi_gpu"]
    return [*cmd, "-m", "bench.train.fit", str(run_dir)]


def launch_training(spec: RunSpec, run_dir: Path) -> None:
    """Run the train stage in `train.processes` processes; raises if any of them fails."""
    cmd = launch_command(spec, run_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, allocated_cpus() // spec.train.processes))}
    log.info("training in %d processes: %s", spec.train.processes, " ".join(cmd))
    proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"distributed training ({spec.train.processes} processes) exited with {proc.returncode}; "
            f"its output is in this job's log"
        )
