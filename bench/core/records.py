"""Run records: atomic writes, manifest.json, status.json, and file locks.

Every file a stage hands on is written to a temporary name in the same folder and renamed into place, so a
run killed mid-write leaves either the old file or the new one, never half of one. A stage's output existing
therefore means the stage finished. A write that runs out of space removes its temporary file and raises
DiskFullError (bench.core.space); status.json keeps a small reserve file beside it while a run works, so the
failure can still be recorded on a full disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.core.errors import DiskFullError
from bench.core.space import is_disk_full

# Libraries whose version changes results; recorded in every manifest.
TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "lm_eval",
    "alpaca_eval",
    "datasets",
    "accelerate",
    "peft",
    "hydra-core",
    "submitit",
    "numpy",
    "pandas",
)
# Config keys whose values must never reach a record (judge and logging credentials): a whole word at the
# end of the key, so `api_key` or `hf_token` is redacted but `max_new_tokens` is not.
SECRET_KEY = re.compile(r"(^|[_.-])(api_?key|key|token|secret|password|passwd|credentials?)$", re.IGNORECASE)

log = logging.getLogger(__name__)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


TEMPORARY = ".*.tmp"  # the names atomic_write_text and atomic_dir write to before the rename


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` in one rename; on a full disk (DiskFullError) nothing of it is left."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be read by the team
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path) from err
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `final` in one rename. A body that runs out
    of space (any library's way of saying so, bench.core.space) raises DiskFullError naming `final`."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise DiskFullError(final) from err
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except Exception as err:  # examined before the partial folder frees its space (see is_disk_full)
        if isinstance(err, DiskFullError) or not is_disk_full(err, final.parent):
            raise
        raise DiskFullError(final) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_temporaries(folder: Path) -> None:
    """Delete what writes killed mid-way (kill -9, a node lost) left under `folder`: temporary files and
    folders that were never renamed into place. Only for a folder whose lock the caller holds."""
    for path in sorted(folder.rglob(TEMPORARY), reverse=True) if folder.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the block: one builder of a shared artefact at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """A non-blocking exclusive lock: yields False when another process holds it (flock is released by the
    kernel when its holder dies, so a killed run never leaves a stale lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    sha = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": None if dirty is None else bool(dirty)}


def scrub_secrets(tree: Any) -> Any:
    """Replace any value whose key looks like a credential, wherever it sits in the tree."""
    if isinstance(tree, dict):
        return {k: "<redacted>" if SECRET_KEY.search(str(k)) else scrub_secrets(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [scrub_secrets(v) for v in tree]
    return tree


def write_manifest(
    run_dir: Path, run_id: str, config: dict[str, Any], extra: dict[str, Any] | None = None
) -> None:
    """manifest.json: the resolved config and where/with what it ran. Keeps the first start time on reruns."""
    path = run_dir / "manifest.json"
    previous = read_json(path) if path.exists() else {}
    manifest = {
        "run_id": run_id,
        "config": scrub_secrets(config),
        "git": git_state(Path(__file__).resolve().parent.parent),
        "versions": package_versions(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "started": previous.get("started", now()),
        "updated": now(),
        **(extra or {}),
    }
    if "finished" in previous and "finished" not in manifest:
        manifest["finished"] = previous["finished"]
    atomic_write_json(path, manifest)


def _process_start_time() -> float | None:
    """When this process started (epoch seconds), from /proc: the part of a run before our code runs."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(int(x.split()[1]) for x in lines if x.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Status:
    """status.json: the run's current stage and state, per-stage timings, and the error of a failed stage."""

    # Space held back while a run works (hold_reserve, first thing an attempt writes, to finish): on a full
    # disk, deleting it lets the failure still be written to status.json (an atomic rewrite needs room for a
    # second copy of the file).
    RESERVE = ".status.reserve"
    RESERVE_BYTES = 64 * 1024

    def __init__(self, run_dir: Path):
        self.path = run_dir / "status.json"
        self.reserve = run_dir / self.RESERVE
        self.data: dict[str, Any] = (
            read_json(self.path) if self.path.exists() else {"state": "pending", "stage": None, "stages": {}}
        )

    def _save(self) -> None:
        self.data["updated"] = now()
        try:
            atomic_write_json(self.path, self.data)
        except DiskFullError:
            if not self.reserve.exists():
                raise
            self.reserve.unlink()
            atomic_write_json(self.path, self.data)

    def hold_reserve(self) -> None:
        """Create the reserve file unless it exists (first thing an attempt writes); on a disk already full,
        go without."""
        if self.reserve.exists():
            return
        try:
            with open(self.reserve, "wb") as fh:
                fh.write(os.urandom(self.RESERVE_BYTES))  # random: a compressing filesystem must store it
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            self.reserve.unlink(missing_ok=True)

    def _record(self) -> None:
        """_save for a failure being reported: a full disk must not replace the error being recorded."""
        try:
            self._save()
        except DiskFullError as err:
            log.warning("could not record the run's state in %s: %s", self.path, err)

    def start(self, stage: str) -> None:
        self.data.update(state="running", stage=stage, error=None)
        self.data["stages"][stage] = {"state": "running", "started": now()}
        self._save()

    def done(self, stage: str, seconds: float, skipped: bool = False) -> None:
        entry = self.data["stages"].get(stage, {})
        if skipped and entry.get("state") == "done":
            return  # keep the timing of the run that did the work
        entry.update(state="skipped" if skipped else "done", seconds=round(seconds, 3), finished=now())
        if not skipped and self.data.get("attempts"):
            entry["attempt"] = len(self.data["attempts"]) - 1
        self.data["stages"][stage] = entry
        self._save()

    def begin_attempt(self, entered: float | None = None) -> int:
        """Record who works on the run now (host, pid, Slurm job and restart count); returns the attempt's
        index, which each stage it completes carries, so a resumed run shows which attempt did what."""
        env = os.environ
        job = env.get("SLURM_JOB_ID")
        if env.get("SLURM_ARRAY_JOB_ID"):
            job = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID')}"
        attempt = {
            "started": now(),
            "t_entered": entered,  # epoch seconds, for the overhead benchmark: run_one called,
            "t_start": time.time(),  # stages begin (after the preflight and the run lock)
            "t_process": _process_start_time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job": job,
            "slurm_restart": int(env.get("SLURM_RESTART_COUNT", "0")),
        }
        self.data.setdefault("attempts", []).append(attempt)
        self._save()
        return len(self.data["attempts"]) - 1

    def interrupt(self, stage: str, reason: str) -> None:
        """Stopped from outside (preemption, time limit, Ctrl-C): not the run's fault; a rerun resumes."""
        self.data.update(state="interrupted", stage=stage, error=reason)
        self.data["stages"].setdefault(stage, {})["state"] = "interrupted"
        self._record()

    def cancel(self, stage: str, reason: str) -> None:
        """Cancelled from outside (scancel): stopped for good, not failed; a resubmission resumes."""
        self.data.update(state="cancelled", stage=stage, error=reason)
        self.data["stages"].setdefault(stage, {})["state"] = "cancelled"
        self._record()

    def fail(self, stage: str | None, error: str) -> None:
        """The run failed, in `stage` or (None) around the stages (e.g. writing its manifest)."""
        self.data.update(state="failed", stage=stage, error=error)
        if stage is not None:
            self.data["stages"].setdefault(stage, {})["state"] = "failed"
        self._record()

    def finish(self) -> None:
        self.data.update(state="done", stage=None, error=None)
        if self.data.get("attempts"):
            self.data["attempts"][-1]["t_end"] = time.time()
        self._save()
        self.reserve.unlink(missing_ok=True)
