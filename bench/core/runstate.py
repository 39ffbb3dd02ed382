"""A run folder's state, the one definition `bench sweep`, `bench status`, the launcher and the report share.

status.json says what the runner last recorded; the records say what is there. A run is done only when its
status says so and its final records exist: a run whose metrics.jsonl was deleted (or whose curve.jsonl is
missing while it evaluates over training) is "incomplete" everywhere, so resubmitting it reruns the stages
whose outputs are missing (bench.stages.base.execute skips the complete ones) and the report does not silently
drop it.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.records import read_json

FINAL = "metrics.jsonl"  # the metrics stage's output: written last, atomically, by every finished run
CURVE = "curve.jsonl"  # the curve stage's, when the run evaluates over training (eval.every_steps > 0)


def missing_records(run_dir: Path) -> list[str]:
    """The final records a finished run must have and this folder lacks."""
    needed = [FINAL]
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        every = ((read_json(manifest).get("config") or {}).get("eval") or {}).get("every_steps") or 0
        needed += [CURVE] if every > 0 else []
    return [name for name in needed if not (run_dir / name).exists()]


def run_state(run_dir: Path) -> tuple[str, str, str]:
    """(state, stage, first line of the error) of a run folder: 'pending' when it has no status and no
    records, 'done' only with every final record present ('incomplete' otherwise). A folder with records but
    no status.json (made by hand, or an older layout) is done when its records are all there."""
    if not (run_dir / "status.json").exists():
        return (
            ("done", "", "")
            if (run_dir / FINAL).exists() and not missing_records(run_dir)
            else ("pending", "", "")
        )
    status = read_json(run_dir / "status.json")
    error = (status.get("error") or "").strip().splitlines()
    state = status.get("state", "pending")
    if state == "done":
        missing = missing_records(run_dir)
        if missing:
            return "incomplete", "", f"{', '.join(missing)} missing: resubmit the run to recompute it"
    return state, status.get("stage") or "", error[0] if error else ""
