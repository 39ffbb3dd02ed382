"""The error types users are meant to read (what was wrong, where: file, row or key, and what to do), and the
one near-match helper every "unknown name" message uses."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Callable, Iterable


class ConfigError(ValueError):
    """Bad configuration or input, detected before compute."""


class UnavailableError(ConfigError):
    """Something the run needs that this machine lacks but another may have (a Hub model or dataset not in
    the local cache while offline, an API key not set here, a local file of another machine). A submission
    fails on it; `bench sweep --dry-run` lists it as not checked here and validates everything else."""


class Cancelled(BaseException):
    """The run's job was cancelled from outside (scancel): neither the run's fault nor a preemption that
    requeues it. A BaseException, like KeyboardInterrupt, so library code that catches Exception lets it
    through to the runner, which records the run as cancelled."""


# Asked when a stage fails with no Cancelled in its error's chain (bench.slurm_job.CancelWatch registers one):
# the job's helper processes die of the same SIGTERM as the run, so the first error can come from them before
# the run's own handler has decided, or after library code swallowed the Cancelled it raised.
CANCEL_PROBES: list[Callable[[], Cancelled | None]] = []


def cancelled_by(err: BaseException) -> Cancelled | None:
    """The cancellation behind an error, if any: a cancelled job's helper processes (wandb's service, other
    training processes) die with it, and code unwinding from the Cancelled can fail on them in turn."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, Cancelled):
            return seen
        seen = seen.__cause__ or seen.__context__
    for probe in CANCEL_PROBES:
        found = probe()
        if found is not None:
            return found
    return None


NEAR_MATCH_CUTOFF = (
    0.6  # difflib's ratio: 'dpoo' -> 'dpo', 'lerning_rate' -> 'learning_rate', not 'ipo' -> 'kto'
)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x' or 'y'?' for the closest of `choices` (up to three), or '' when none is close."""
    near = difflib.get_close_matches(name, list(choices), n=3, cutoff=NEAR_MATCH_CUTOFF)
    return f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""


class DiskFullError(OSError):
    """A write failed because its filesystem is full (ENOSPC) or over quota (EDQUOT). Nothing half-written is
    left: the harness's writes are atomic and the failing stage is recorded as failed, so rerunning the same
    command once there is space resumes where the run stopped."""

    def __init__(self, path: object, setting: str = "paths.results or paths.scratch") -> None:
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.setting = setting
        self.message = (
            f"disk full (ENOSPC: no space left on device) writing {path}: free space on that filesystem, or "
            f"point {setting} at another one, then rerun the same command (finished stages are kept)"
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[DiskFullError], tuple[object, str]]:
        return DiskFullError, (self.filename, self.setting)  # OSError's own would pass errno as the path
