"""Run records: atomic writes, manifest.json, status.json, and file locks.

Every file a stage hands on is written to a temporary name in the same folder and renamed into place, so a
run killed mid-write leaves either the old file or the new one, never half of one. A stage's output existing
therefore means the stage finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
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


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be read by the team
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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
    """Yield a temporary sibling folder; on success it replaces `final` in one rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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

    def __init__(self, run_dir: Path):
        self.path = run_dir / "status.json"
        self.data: dict[str, Any] = (
            read_json(self.path) if self.path.exists() else {"state": "pending", "stage": None, "stages": {}}
        )

    def _save(self) -> None:
        self.data["updated"] = now()
        atomic_write_json(self.path, self.data)

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
        self._save()

    def cancel(self, stage: str, reason: str) -> None:
        """Cancelled from outside (scancel): stopped for good, not failed; a resubmission resumes."""
        self.data.update(state="cancelled", stage=stage, error=reason)
        self.data["stages"].setdefault(stage, {})["state"] = "cancelled"
        self._save()

    def fail(self, stage: str, error: str) -> None:
        self.data.update(state="failed", stage=stage, error=error)
        self.data["stages"].setdefault(stage, {})["state"] = "failed"
        self._save()

    def finish(self) -> None:
        self.data.update(state="done", stage=None, error=None)
        if self.data.get("attempts"):
            self.data["attempts"][-1]["t_end"] = time.time()
        self._save()
