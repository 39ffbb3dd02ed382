"""Asking Slurm whether it would take a job, and saying which launcher setting it refused.

sbatch refuses a job with a message about the request, not about our config ("Requested node configuration is
not available", "More processors requested than permitted"). `refusal` turns its message into one line that
names the launcher setting (launcher.mem_gb, launcher.partition, ...), with the partition's own limits from
sinfo where the message alone does not tell which resource was too large. `test_only` runs
`sbatch --test-only` on a job script (`bench sweep --dry-run launcher=slurm`); `unreachable` says why Slurm
cannot be asked here. No submitit here: bench.launch renders the scripts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.specs import LauncherSpec

# sbatch's messages (lower-cased) -> the launcher setting they are about; the first match wins, so the policy
# messages that name several things ("accounting/QOS policy ... time limits") come before the plain ones.
MESSAGES: tuple[tuple[str, str], ...] = (
    (r"qos", "qos"),
    (r"invalid account|account/partition", "account"),
    (r"partition", "partition"),
    (r"gres|generic resource|gpu", "gpus_per_node"),
    (r"time limit", "time_min"),
    (r"processors|cpu", "cpus_per_task"),
    (r"memory", "mem_gb"),
    (r"feature|constraint", "constraint"),
    (r"array", "array_parallelism"),
)
# the settings a too-large request can be about when sbatch says only "node configuration is not available"
RESOURCES = ("cpus_per_task", "mem_gb", "gpus_per_node", "constraint")
NOISE = ("sbatch: error: ", "batch job submission failed: ", "allocation failure: ", "sbatch: ")


@dataclass(frozen=True)
class Node:
    """One node of one partition, as sinfo lists it."""

    partition: str
    default: bool  # the partition a job without --partition goes to
    cpus: int
    mem_mb: int
    gres: str
    features: str
    time_limit: str


def unreachable() -> str | None:
    """None when Slurm can be asked here (its commands on PATH and the controller answering sinfo), else why
    not, in words."""
    missing = [c for c in ("sbatch", "srun", "sacct", "sinfo") if shutil.which(c) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH"
    try:
        out = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=20)
    except (subprocess.SubprocessError, OSError) as err:
        return f"sinfo did not answer ({err})"
    if out.returncode != 0:
        return f"sinfo did not answer ({one_line(out.stderr) or f'exit {out.returncode}'})"
    return None


def nodes() -> list[Node]:
    """Every node of every partition (sinfo), or [] when sinfo cannot be asked: only a hint."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G|%f|%l"], capture_output=True, text=True, timeout=20
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    found = []
    for line in out.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        part, cpus, mem, gres, features, limit = fields
        try:
            found.append(
                Node(part.rstrip("*"), part.endswith("*"), int(cpus), int(mem), gres, features, limit)
            )
        except ValueError:  # a node sinfo cannot describe (down, unknown memory): no limits from it
            continue
    return found


def one_line(text: str) -> str:
    """sbatch's message without its prefixes, its lines joined: 'Invalid partition name specified'."""
    parts: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        changed = True
        while changed:  # prefixes stack: "sbatch: error: Batch job submission failed: ..."
            changed = False
            for prefix in NOISE:
                if line.lower().startswith(prefix):
                    line, changed = line[len(prefix) :].strip(), True
        if line and line not in parts:
            parts.append(line)
    return "; ".join(parts)


def _capacity(launcher: LauncherSpec, partition: list[Node]) -> tuple[str, str] | None:
    """(setting, hint) of the first requested resource no node of the partition has."""
    if not partition:
        return None
    name = partition[0].partition
    most_cpus, most_mem = max(n.cpus for n in partition), max(n.mem_mb for n in partition)
    if int(launcher.cpus_per_task or 0) > most_cpus:
        return "cpus_per_task", f"the largest node of partition {name} has {most_cpus} CPUs"
    if launcher.mem_gb and int(launcher.mem_gb) * 1024 > most_mem:
        return "mem_gb", f"the largest node of partition {name} has {most_mem / 1024:.0f} GB"
    if launcher.gpus_per_node and not any("gpu" in n.gres for n in partition):
        return "gpus_per_node", f"no node of partition {name} has a GPU (no gpu gres in sinfo)"
    if launcher.constraint and not any(str(launcher.constraint) in n.features for n in partition):
        return "constraint", f"node features of partition {name}: {partition[0].features}"
    return None


def _minutes(limit: str) -> str:
    """sinfo's time limit ('5:00', '1-00:00:00', 'infinite') in words: '5 minutes'."""
    days, _, clock = limit.rpartition("-")
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3 or (days and not days.isdigit()):
        return limit
    seconds = [int(p) for p in parts]
    hours, minutes = (seconds[0], seconds[1]) if len(seconds) == 3 else (0, seconds[0])
    total = (int(days or 0) * 24 + hours) * 60 + minutes
    return f"{total} minutes"


def blame(message: str, launcher: LauncherSpec, cluster: list[Node]) -> tuple[str | None, str]:
    """(the launcher setting sbatch's message is about or None, a hint from the partition's limits or '')."""
    wanted = launcher.partition
    partition = [n for n in cluster if (n.partition == wanted if wanted else n.default)]
    capacity = _capacity(launcher, partition)
    lower = message.lower()
    for pattern, setting in MESSAGES:
        if re.search(pattern, lower):
            if capacity and capacity[0] == setting:
                return capacity
            if setting == "time_min" and partition:
                limit = _minutes(partition[0].time_limit)
                return setting, f"partition {partition[0].partition} allows at most {limit}"
            if setting == "partition" and cluster:
                return setting, f"partitions: {', '.join(sorted({n.partition for n in cluster}))}"
            return setting, ""
    for key in launcher.additional_parameters:  # e.g. "invalid reservation" with additional_parameters
        if str(key).lower().replace("_", " ") in lower or str(key).lower() in lower:
            return f"additional_parameters.{key}", ""
    if capacity:  # "Requested node configuration is not available": too large for every node
        return capacity
    return None, ""


def refusal(text: str, launcher: LauncherSpec, runs: int) -> str:
    """The one line that says which setting Slurm refused, and what sbatch said."""
    message = one_line(text) or "sbatch failed without a message"
    setting, hint = blame(message, launcher, nodes())
    what = f"Slurm refuses the job ({runs} run(s)): {message}" + (f" ({hint})" if hint else "")
    if setting is None:
        sent = ", ".join(
            f"launcher.{k}={getattr(launcher, k)}"
            for k in ("partition", "time_min", "cpus_per_task", "mem_gb", "gpus_per_node")
            if getattr(launcher, k) not in (None, 0)
        )
        return f"{what}; the job asked for {sent}"
    value = (
        launcher.additional_parameters[setting.split(".", 1)[1]]
        if setting.startswith("additional_parameters.")
        else getattr(launcher, setting)
    )
    return f"launcher.{setting}={value}: {what}"


def test_only(script: Path) -> tuple[bool, str]:
    """(accepted, sbatch's message) of `sbatch --test-only SCRIPT`: Slurm checks the job, queues nothing."""
    try:
        out = subprocess.run(
            ["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60
        )
    except (subprocess.SubprocessError, OSError) as err:
        return False, str(err)
    return out.returncode == 0, one_line(out.stderr + "\n" + out.stdout)
