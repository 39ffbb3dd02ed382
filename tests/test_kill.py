"""`kill -9` of the worker in the middle of every stage leaves a run that resumes to an uninterrupted run's
records: one `bench run` process is killed (SIGKILL to its process group) in train, then its rerun in
reference, the next in generate, and so on to curve; the last rerun finishes. Nothing a killed attempt left
(status "running", its flock, temporary files, a partial train log, trainer checkpoints) stops the next one,
every stage is finished by the attempt after the one killed in it, and the final records equal the reference
run's byte for byte, except the fields that are timings or dates by design (`comparable`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.config import load_spec
from bench.core.records import read_json
from bench.pipeline import run_one
from bench.stages import STAGE_NAMES
from bench.status import shown_state
from bench.train.state import trainer_dir
from tests.helpers import REPO, tiny_overrides

pytestmark = pytest.mark.slow

# every_steps: the curve stage has a step to evaluate; save_steps: the killed training leaves a trainer
# checkpoint to resume from (neither is part of the run id, so every root runs the same experiment)
# onpolicy: the sample stage samples the training pairs first (12 parts of 4 prompts: killed between two)
EXTRA = (
    "study=kill",
    "eval.every_steps=2",
    "train.save_steps=2",
    "onpolicy.enabled=true",
    "onpolicy.prompts_count=48",
    "onpolicy.part_size=4",
)
# Fields that are timings, dates or this machine's paths by design; everything else must match exactly.
TIMING = {
    "seconds",
    "tokens_per_s",
    "attempt_generated_tokens",
    "time_s",
    "preference_date",
    "preference_time_per_example",
}
EXACT = ("generations.jsonl", "metrics.jsonl", "per_prompt.jsonl", "curve.jsonl")  # with every non-JSON file
TRAIN_SUMMARY = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}


def _start(root: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "run", *tiny_overrides(root, *EXTRA)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches every child too
        )


def _status(run_dir: Path) -> dict[str, Any]:
    try:
        return dict(read_json(run_dir / "status.json"))
    except (OSError, ValueError):
        return {}


def _rows(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = log.read_text()[-3000:]
            pytest.fail(f"never saw {what} before the run ended (rc {proc.poll()}):\n{tail}")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def comparable(path: Path, root: Path) -> Any:
    """A record as compared across roots: bytes, or for the records that carry timings (or, from alpaca_eval
    and TRL, dates and the end-of-training summary, whose averages cover only the last attempt's steps) the
    parsed record without them; this root's path replaced by a placeholder."""
    text = path.read_text().replace(str(root), "<root>")
    if path.suffix not in (".json", ".jsonl") or path.name in EXACT:
        return text
    rows = [json.loads(line) for line in text.splitlines()] if path.suffix == ".jsonl" else [json.loads(text)]
    if path.name == "train_info.json":
        rows[0].pop("resumed_from_step")
        rows[0]["reference_logps"].pop("computed")  # the first run on the shared cache computed them
    flat = [r for row in rows for r in (row if isinstance(row, list) else [row])]
    return [{k: v for k, v in r.items() if k not in TIMING | TRAIN_SUMMARY} for r in flat]


def records(root: Path) -> dict[str, Any]:
    study = root / "results" / "kill"
    skip = {"status.json", "manifest.json", ".run.lock", ".lock"}
    found = {str(p.relative_to(study)): comparable(p, root) for p in study.rglob("*") if p.is_file()}
    weights = next((root / "scratch").rglob("checkpoint/model.safetensors"))
    found["checkpoint/model.safetensors"] = weights.read_bytes()
    return {k: v for k, v in found.items() if Path(k).name not in skip}


def _share_world(root: Path, tiny_root: Path) -> None:
    """The session's tiny world, shared; every other cache (sampled pairs, reference log-probs) this root's
    own, so the killed run computes what the uninterrupted one did."""
    (root / "cache").mkdir()
    (root / "cache" / "toyworld").symlink_to(tiny_root / "cache" / "toyworld")


@pytest.fixture(scope="module")
def uninterrupted(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run in one go (in this process, which has torch loaded already)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    _share_world(root, tiny_root)
    spec = load_spec(tiny_overrides(root, *EXTRA))
    assert read_json(run_one(spec) / "status.json")["state"] == "done"
    return root


def test_kill_9_in_every_stage_resumes_to_the_uninterrupted_records(
    uninterrupted: Path, tiny_root: Path, tmp_path: Path
) -> None:
    root, log = tmp_path, tmp_path / "runs.log"
    _share_world(root, tiny_root)
    spec = load_spec(tiny_overrides(root, *EXTRA))
    run_dir = spec.run_dir()
    partial_log = run_dir / "train_log.jsonl.partial"
    step_gens = run_dir / "steps" / "step-000002" / "generations.jsonl"
    parts = root / "cache" / "sampled"
    ready: dict[str, Callable[[dict[str, Any]], bool]] = {
        # some parts sampled and judged, not all: the rerun resumes at the first unfinished one
        "sample": lambda s: len(list(parts.glob("*/parts/part-*.jsonl"))) >= 2,
        # past the trainer checkpoint of step 2, so the rerun resumes from it
        "train": lambda s: _rows(partial_log) >= 3,
        # the reference's samples written, its lm-eval and metrics not yet
        "reference": lambda s: any((root / "results" / "kill" / "_reference").glob("*/generations.jsonl")),
        # half way through evaluating the saved step
        "curve": lambda s: step_gens.exists(),
    }
    killed_in: list[str] = []
    for stage in STAGE_NAMES:
        proc = _start(root, log)

        def running(stage: str = stage) -> bool:
            s = _status(run_dir)
            return s.get("stage") == stage and s.get("state") == "running" and ready.get(stage, bool)(s)

        _kill_when(proc, running, log, f"stage {stage} running")
        status = _status(run_dir)
        assert status["stage"] == stage and status["stages"][stage]["state"] == "running"
        assert shown_state(run_dir, "running", "") == "stopped"  # what `bench status` shows for it
        killed_in.append(stage)
    assert killed_in == list(STAGE_NAMES)
    assert not trainer_dir(spec).exists()  # the resumed training finished and cleaned up

    proc = _start(root, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    status = _status(run_dir)
    assert status["state"] == "done" and len(status["attempts"]) == len(STAGE_NAMES) + 1
    for index, stage in enumerate(STAGE_NAMES):  # each stage finished by the attempt after its kill
        assert status["stages"][stage]["attempt"] == index + 1, (stage, status["stages"][stage])
    assert not [p for p in (root / "results").rglob("*.tmp")]
    assert not (run_dir / "train_log.jsonl.partial").exists()
    ours, theirs = records(root), records(uninterrupted)
    assert sorted(ours) == sorted(theirs)
    for name in sorted(theirs):
        assert ours[name] == theirs[name], name
