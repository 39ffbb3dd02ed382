"""A study's state from its folders: each run's status.json (the truth), with Slurm's job state beside it as a
hint, for `bench status` and `bench sweep --wait`. Reads files only (and asks sacct)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from bench.core.records import read_json, read_jsonl
from bench.core.runstate import run_state

__all__ = [
    "pending_reasons",
    "run_state",
    "run_summary",
    "shown_state",
    "slurm_jobs",
    "slurm_states",
    "status_table",
]


# Slurm job states after which the job will not run again (sacct's names); anything else is queued or running
SLURM_ENDED = {"CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def slurm_jobs(study_dir: Path) -> dict[str, str]:
    """run id -> Slurm job id of the latest submission that included the run (from study.json)."""
    path = study_dir / "study.json"
    jobs: dict[str, str] = {}
    if path.exists():
        for submission in read_json(path).get("submissions", []):
            jobs.update(submission.get("jobs") or {})
    return jobs


def _array_tasks(job_field: str) -> list[str]:
    """sacct's JobID to task ids: '12_3' -> ['12_3']; a pending range '12_[3-5%2]' -> 12_3, 12_4, 12_5."""
    if "_[" not in job_field:
        return [job_field]
    array, spec = job_field.split("_[", 1)
    tasks: list[str] = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        tasks += [f"{array}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return tasks


def _ask(command: list[str]) -> str | None:
    """A Slurm query's output; None when Slurm cannot be asked (not installed, down, too slow)."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job id (sacct), or {} when Slurm cannot be asked: it is only a hint."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = _ask(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)])
    if out is None:
        return {}
    states: dict[str, str] = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        for task in _array_tasks(job.strip()):
            states[task] = state.split()[0] if state.strip() else ""  # "CANCELLED by 0" -> CANCELLED
    return states


def pending_reasons(job_ids: list[str]) -> dict[str, str]:
    """Why Slurm has not started each pending job yet (squeue's reason: Resources, Priority, Dependency,
    PartitionDown, BeginTime, ...), by job id; {} when Slurm cannot be asked. Only jobs still in the queue."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    # -r: one line per array task, so a pending range '12_[3-5%2]' is 12_3, ...
    out = _ask(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%i|%r", "-j", ",".join(arrays)])
    if out is None:
        return {}
    reasons = {}
    for line in out.splitlines():
        job, _, reason = line.partition("|")
        if reason.strip() and reason.strip() != "None":
            reasons[job.strip()] = reason.strip()
    return reasons


def _process_gone(run_dir: Path) -> bool:
    """True when the run's last attempt was a process on this host that no longer exists."""
    attempts = read_json(run_dir / "status.json").get("attempts") or []
    if not attempts or attempts[-1].get("host") != socket.gethostname() or attempts[-1].get("slurm_job"):
        return False
    try:
        os.kill(int(attempts[-1]["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def shown_state(run_dir: Path, state: str, slurm_state: str) -> str:
    """The run folder's state, corrected by what the folder cannot know: a job Slurm ended (cancelled, node
    failure) or requeued, and a local process that died without recording it."""
    if state in ("done", "failed"):
        return state
    if slurm_state in SLURM_ENDED:
        return slurm_state.lower()
    if state == "interrupted" and slurm_state in ("PENDING", "REQUEUED", "RUNNING"):
        return "requeued"
    if state == "cancelled" and slurm_state in ("PENDING", "RUNNING"):
        return "resubmitted"  # the latest job of the run is a resubmission's, not the cancelled one
    if state == "running" and not slurm_state and _process_gone(run_dir):
        return "stopped"
    return state


def previous_rounds(study_dir: Path) -> dict[str, str]:
    """run id -> the run id of its previous round, from the study's record (a study's rounds)."""
    path = study_dir / "study.json"
    runs = read_json(path).get("runs", []) if path.exists() else []
    return {r["run_id"]: r["after"] for r in runs if r.get("after")}


def status_table(study_dir: Path) -> str:
    """One line per run of a study (its folders, and runs submitted but not started): state, current stage,
    Slurm's job and state, the error of a failed run."""
    jobs = slurm_jobs(study_dir)
    slurm = slurm_states(list(jobs.values()))
    waiting = pending_reasons([j for j in jobs.values() if slurm.get(j) in ("PENDING", "")])
    lines = [f"{'run':52s} {'state':11s} {'stage':9s} {'job':22s} error"]
    counts: dict[str, int] = {}
    names = {p.name for p in study_dir.iterdir() if (p / "manifest.json").exists()} | set(jobs)
    rows: dict[str, tuple[str, str, str]] = {}
    for name in sorted(names):
        state, stage, error = run_state(study_dir / name)
        rows[name] = (shown_state(study_dir / name, state, slurm.get(jobs.get(name, ""), "")), stage, error)
    previous = previous_rounds(study_dir)

    def state_of(name: str) -> str:
        return rows[name][0] if name in rows else run_state(study_dir / name)[0]

    def stopped_round(name: str) -> tuple[str, str] | None:
        """(the earliest round of the run's chain that failed or was cancelled, its state) when none after it
        ran: Slurm cancels a failed round's successors, which then never start."""
        before = previous.get(name)
        if before is None or state_of(before) not in ("failed", "cancelled", "pending"):
            return None
        return stopped_round(before) or (
            (before, state_of(before)) if state_of(before) != "pending" else None
        )

    for name, (state, stage, error) in rows.items():
        folder, job = study_dir / name, jobs.get(name, "")
        cause = stopped_round(name) if state in ("pending", "cancelled") else None
        if cause is not None:
            which = "previous" if cause[0] == previous[name] else "earlier"
            state, error = (
                "blocked",
                f"its {which} round {cause[0]} is {cause[1]}: fix that and resubmit the study",
            )
        counts[state] = counts.get(state, 0) + 1
        job_text = f"{job} {slurm.get(job, '')}".strip()
        if job in waiting:  # Slurm's reason it has not started the job (Resources, Priority, ...)
            job_text += f" ({waiting[job]})"
        lines.append(f"{folder.name:52s} {state:11s} {stage:9s} {job_text:22s} {error}".rstrip())
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs")
    return "\n".join(lines)


HEADLINE = ("win_rate", "lc_win_rate", "gold_win_rate", "kl_seq", "length_ratio")


def run_summary(run_dir: Path, seconds: float | None = None) -> str:
    """What a finished run says on the console: its headline metrics on all evaluation prompts, each with its
    95% interval over prompts where one was computed, the run folder, and the next command."""
    metrics = run_dir / "metrics.jsonl"
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    if not metrics.exists():
        return f"run {run_dir.name} stopped{took} before its metrics: bench status shows its stage and error"
    rows = {r["metric"]: r for r in read_jsonl(metrics) if not r.get("split")}
    parts = []
    for name in HEADLINE:
        row = rows.get(name)
        if row is None or not isinstance(row.get("value"), int | float):
            continue
        interval = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if "ci_low" in row else ""
        parts.append(f"{name} {row['value']:.3f}{interval}")
    study = run_dir.parent.name
    return (
        f"run {run_dir.name} finished{took}: {', '.join(parts)} (95% intervals over prompts)\n"
        f"  records: {run_dir}\n"
        f"  next: bench report {study}   (tables and plots over the study's runs)"
    )
