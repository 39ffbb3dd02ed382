"""Rounds of iterative training: where round r's policy and reference come from.

Round r (round.index, a study's `rounds:` sets it) starts from the policy round r-1 trained (round.after: its
run id in the same study). Its loss's reference is that policy (round.reference=previous, as iterative DPO
and SPPO do) or the model the chain started from (original). Evaluation always measures against the original
reference, so a study's rounds are compared on one scale (KL to the SFT model, win rates against its samples).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bench.core.errors import ConfigError
from bench.core.records import try_lock
from bench.core.runstate import run_state
from bench.specs import RunSpec

log = logging.getLogger(__name__)
WAIT_S = 10.0  # poll interval while the previous round runs in another process (launcher=local workers)


def previous_policy(spec: RunSpec, wait: bool = True) -> Path | None:
    """Round r-1's trained policy (None outside a chain or in its first round). A previous round another
    process is running is waited for (with `wait`); one that failed, was cancelled or has not run stops this
    round before any compute, with what to do."""
    previous = spec.previous_round()
    if previous is None:
        return None
    run_dir, checkpoint = previous
    r = spec.round.index
    announced = False
    while True:
        state, stage, error = run_state(run_dir)
        if state == "done" and (checkpoint / "config.json").is_file():
            return checkpoint
        where = f"round {r} of study {spec.study} continues round {r - 1} (run {spec.round.after})"
        if state == "done":
            raise ConfigError(
                f"{where}, whose policy {checkpoint} is gone (paths.scratch cleaned?): move its folder "
                f"{run_dir} aside and resubmit the study, which retrains it"
            )
        if state in ("failed", "cancelled", "incomplete"):
            during = f" during {stage}" if stage else ""
            raise ConfigError(
                f"{where}, which is {state}{during}: {error or 'see its status.json'}. Fix that and resubmit "
                "the study: it resumes at the first unfinished round"
            )
        running = False
        if run_dir.is_dir():  # its process holds the run lock while it runs
            with try_lock(run_dir / ".run.lock") as free:
                running = not free
        if not (wait and running):
            raise ConfigError(
                f"{where}, which has not finished (state {state}): run the rounds in order (`bench sweep` on "
                "the study submits each round after the one before)"
            )
        if not announced:
            log.info("%s: waiting for it to finish", where)
            announced = True
        time.sleep(WAIT_S)


def start_model(spec: RunSpec, original: Path) -> Path:
    """The weights this run's policy starts from: the previous round's policy, else the original reference."""
    return previous_policy(spec) or original


def start_and_reference(spec: RunSpec, original: Path) -> tuple[Path, Path]:
    """(the weights this run's policy starts from, the loss's reference) given the original reference."""
    start = start_model(spec, original)
    return start, start if spec.round.reference == "previous" else original
