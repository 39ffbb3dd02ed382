"""Runs of one study written at once: no record lost or corrupted, and no run computed twice."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys

from bench.config import load_spec
from bench.core.records import Status, atomic_write_json, read_json, try_lock
from bench.pipeline import run_one
from tests.helpers import REPO, tiny_overrides


def _writer(folder: str, worker: int) -> None:
    """Hammer one study: each worker rewrites its own run's status and a shared file 200 times."""
    from pathlib import Path

    run_dir = Path(folder) / f"run{worker}"
    status = Status(run_dir)
    for i in range(200):
        status.start(f"stage{i % 5}")
        status.done(f"stage{i % 5}", 0.01)
        atomic_write_json(Path(folder) / "shared.json", {"worker": worker, "i": i, "pad": "x" * 2000})


def test_eight_processes_writing_one_study_lose_and_corrupt_nothing(tmp_path) -> None:
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), w)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for w in range(8):
        data = read_json(tmp_path / f"run{w}" / "status.json")
        assert set(data["stages"]) == {f"stage{i}" for i in range(5)}
    shared = json.loads((tmp_path / "shared.json").read_text())  # complete JSON, one writer's whole record
    assert shared["i"] == 199 and len(shared["pad"]) == 2000
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_a_run_held_by_another_process_is_not_computed_twice(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root, "study=locked"))
    run_dir = spec.run_dir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom bench.core.records import try_lock\n"
            f"with try_lock(Path({str(run_dir / '.run.lock')!r})) as ok:\n"
            "    print(ok, flush=True)\n    time.sleep(30)\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert run_one(spec) == run_dir
        assert not spec.checkpoint_dir().exists()  # left to the holder: nothing trained here
    finally:
        holder.kill()
        holder.wait()
    with try_lock(run_dir / ".run.lock") as mine:  # released when its holder died
        assert mine
