"""Inside a Slurm job: telling a cancellation (scancel) from a preemption or a requeue.

Slurm sends SIGTERM to every process of a job it ends: on `scancel`, on preemption, at the time limit and when
submitit requeues the job itself. submitit ignores SIGTERM (its requeue signal comes separately), so the run
went on after a plain scancel until it touched a helper process that had died of the same signal (wandb's
service), and was recorded as that error. Here a SIGTERM whose job Slurm is ending for a cancellation raises
`Cancelled`, which the runner records as such; every other SIGTERM is ignored, as submitit does.

The same SIGTERM kills the job's helper processes, so an error from one of them (wandb's service:
ConnectionResetError) can reach the runner first: when the controller still reported the job RUNNING to the
handler (it was asked under load, or before it had recorded the cancellation), or when library code swallowed
the `Cancelled`. The watch therefore remembers its SIGTERMs, and a stage that fails after one asks it again
(`late_cancellation`, registered in bench.core.errors.CANCEL_PROBES) before recording a failure.

What ended the job: slurmstepd writes "*** JOB <id> ON <node> CANCELLED AT <time> ***" to the job's stderr
before it signals, with " DUE TO TIME LIMIT", " DUE TO PREEMPTION", " DUE TO JOB REQUEUE" or " DUE TO NODE
FAILURE" when it was not a cancellation; the controller's JobState says whether the job is ending at all
(RUNNING when only signalled, e.g. `scancel --signal=TERM`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.core.errors import CANCEL_PROBES, Cancelled

log = logging.getLogger(__name__)


def job_state(job: str) -> str:
    """The job's state in the controller, '' when it cannot be asked. scontrol's JobState: squeue reports a
    job whose processes still run as COMPLETING, whatever ended it."""
    try:
        out = subprocess.run(
            ["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=10
        )
    except (subprocess.SubprocessError, OSError):
        return ""
    found = re.search(r"\bJobState=(\S+)", out.stdout)
    return found.group(1) if found else ""


def ending(text: str) -> str | None:
    """slurmstepd's last '*** JOB <id> ON <node> CANCELLED AT <time>[ DUE TO ...] ***' line in `text` (a job
    task's own stderr): 'cancelled' for a plain cancellation, else its reason in lower case ('due to time
    limit'), None when there is none. The id is not matched: an array task's may be written either way."""
    lines = re.findall(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+(.*?) \*\*\*", text)
    if not lines:
        return None
    return lines[-1].strip().lower() or "cancelled"


class CancelWatch:
    """Installed as the SIGTERM handler of a Slurm job's process (bench.launch.RunJob)."""

    def __init__(self, stderr: Path) -> None:
        self.job = os.environ.get("SLURM_JOB_ID", "")
        self.stderr = stderr
        # only what slurmstepd writes from now on: an earlier attempt of the same job (a requeue) wrote there
        self.offset = stderr.stat().st_size if stderr.exists() else 0
        self.signalled = False  # a SIGTERM arrived, whatever the handler made of it
        self.raised: Cancelled | None = None

    def install(self) -> None:
        if self.job:
            signal.signal(signal.SIGTERM, self.on_sigterm)
            CANCEL_PROBES.append(self.late_cancellation)

    def _new_text(self) -> str:
        try:
            with self.stderr.open("rb") as f:
                f.seek(self.offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def why(self) -> str | None:
        """'cancelled', another reason the job is ending, or None while Slurm keeps it running."""
        state = job_state(self.job)
        if state.startswith("RUNNING") or state.startswith("SUSPENDED"):
            return None  # only signalled (a preemption's first signal, scancel --signal=TERM)
        for _ in range(10):  # slurmstepd writes its line before signalling; the file system may lag a little
            reason = ending(self._new_text())
            if reason:
                return reason
            time.sleep(0.2)
        return "cancelled" if state.startswith("CANCELLED") else None

    def _cancelled(self) -> Cancelled:
        self.raised = Cancelled(f"Slurm job {self.job} was cancelled (scancel)")
        return self.raised

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.signalled = True
        reason = self.why()
        if reason == "cancelled":
            raise self._cancelled()
        log.warning("SIGTERM (%s): left to Slurm and submitit", reason or "the job keeps running")

    def late_cancellation(self, tries: int = 10, wait_s: float = 1.0) -> Cancelled | None:
        """Asked when a stage fails: the cancellation this job is ending for, if a SIGTERM came. The
        controller has recorded a cancellation by now, or does within `tries` x `wait_s` (Slurm's KillWait,
        30 s by default, leaves that long before SIGKILL)."""
        if self.raised is not None:
            return self.raised
        if not self.signalled:
            return None
        for _ in range(tries):
            reason = self.why()
            if reason == "cancelled":
                return self._cancelled()
            if reason is not None:  # a time limit, preemption or requeue: submitit's to handle
                return None
            time.sleep(wait_s)
        return None
