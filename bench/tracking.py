"""wandb: every run's training curves (TRL's own integration), config and final metrics in one wandb run, and
a study's report as a wandb table. Offline unless the user sets WANDB_MODE=online (and WANDB_API_KEY in the
environment, never in a config); `logging.wandb=false` turns it off.

One wandb run per run folder: its id is derived from the run id and the folder, so the training (inside
TRL) and the metrics stage (later, maybe in another process or after a requeue) write to the same run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from bench.core.records import scrub_secrets
from bench.core.space import NEARLY_FULL_BYTES, free_bytes
from bench.specs import RunSpec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def wandb_run_id(spec: RunSpec, run_dir: Path) -> str:
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:8]
    return f"{spec.run_id}-{digest}"[:120]


def _settings(spec: RunSpec) -> dict[str, Any]:
    return {
        "project": spec.logging.wandb_project,
        "entity": spec.logging.wandb_entity,
        "group": spec.study,
    }


def _init(root: Path, **kwargs: Any) -> Any:
    """wandb.init with the environment's mode and folder passed explicitly: wandb reads its environment
    variables once per process, and a worker process runs many runs. Its files go to WANDB_DIR, else to the
    project root (<root>/wandb/), wherever the command started."""
    import wandb

    mode = cast(Literal["online", "offline", "disabled", "shared"], os.environ.get("WANDB_MODE") or "offline")
    # Quiet unless asked (WANDB_SILENT=false): its banners and summary would bury the run's own summary. No
    # job artefact and no requirements.txt (a scan of every installed package's metadata, 0.3 s a run): the
    # manifest records the library versions that matter, and nothing here uses either.
    verbose = os.environ.get("WANDB_SILENT", "true").lower() in ("false", "0", "no")
    settings = wandb.Settings(
        silent=not verbose, quiet=not verbose, disable_job_creation=True, x_save_requirements=False
    )
    _skip_unstaged_launch_inputs(wandb)
    folder = os.environ.get("WANDB_DIR") or str(root)
    run = wandb.init(mode=mode, dir=folder, settings=settings, **kwargs)
    warn_if_full(Path(folder))
    return run


def warn_if_full(folder: Path) -> None:
    """wandb's writer drops what a full disk refuses without raising (its offline files just end early), so
    the space is checked here; the run's own records are written and checked by the harness."""
    free = free_bytes(folder)
    if free is not None and free < NEARLY_FULL_BYTES:
        log.warning(
            "wandb: %s is full (ENOSPC, %d bytes free): its offline files there are incomplete; free space "
            "or set WANDB_DIR to another filesystem (the run's records are not affected)",
            folder,
            free,
        )


def finish_training_run(spec: RunSpec) -> None:
    """Close the training's wandb run so its (offline) folder is complete before the run moves on."""
    import wandb

    wandb.finish()
    warn_if_full(Path(os.environ.get("WANDB_DIR") or str(spec.paths.root)))


# The module wandb keeps launch-job inputs in; anything that stages one imports it first.
_LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"


def _skip_unstaged_launch_inputs(wandb: Any) -> None:
    """Make wandb.init skip applying launch-job inputs when none can have been staged. Every init imports
    wandb's launch package for that (its job agent and public API: 2.5-3 s in a process that has torch and
    transformers loaded, as pydantic reads its models' sources), even with job creation off, to apply inputs
    that only `wandb.sdk.launch` calls in this process stage. Without that module imported there are none, so
    the step is skipped; with it, wandb's own method runs. A wandb without the method is left as it is."""
    run_class = getattr(getattr(wandb, "sdk", None), "wandb_run", None)
    run_class = getattr(run_class, "Run", None)
    original = getattr(run_class, "_detect_and_apply_job_inputs", None)
    if original is None or getattr(original, "_bench_skips_unstaged", False):
        return

    def detect_and_apply_job_inputs(run: Any) -> None:
        if _LAUNCH_INPUTS in sys.modules:
            original(run)

    detect_and_apply_job_inputs._bench_skips_unstaged = True  # type: ignore[attr-defined]
    run_class._detect_and_apply_job_inputs = detect_and_apply_job_inputs  # type: ignore[union-attr]


def start_training_run(spec: RunSpec, run_dir: Path) -> None:
    """Open this run's wandb run before the trainer is built: TRL's integration then logs into it (it only
    creates a run when none is active), resumed after a requeue rather than duplicated."""
    _init(
        spec.paths.root,
        id=wandb_run_id(spec, run_dir),
        resume="allow",
        name=spec.run_id,
        config=scrub_secrets(spec.config),
        job_type="run",
        **_settings(spec),
    )


def log_final_metrics(spec: RunSpec, run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """The run's config and final metrics (all prompts, and each split as '<split>/<metric>') as the wandb
    run's summary. A wandb failure (e.g. online without network) is logged, never fails the run."""
    try:
        run = _init(
            spec.paths.root,
            id=wandb_run_id(spec, run_dir),
            resume="allow",
            name=spec.run_id,
            config=scrub_secrets(spec.config),
            job_type="run",
            **_settings(spec),
        )
        summary = {}
        for row in rows:
            name = f"{row['split']}/{row['metric']}" if row.get("split") else row["metric"]
            if isinstance(row.get("value"), int | float):
                summary[f"final/{name}"] = row["value"]
        run.summary.update(summary)
        run.finish()
        warn_if_full(Path(os.environ.get("WANDB_DIR") or str(spec.paths.root)))
    except Exception as err:  # tracking is a side channel: the records on disk are the results
        log.warning("wandb: could not log the final metrics of %s: %s", spec.run_id, err)


def log_report(
    study: str, runs: pd.DataFrame, images: list[Path], root: Path, project: str = "dpo-bench"
) -> str:
    """The study's tidy table and plots as one wandb run (job type 'report'); returns its folder or URL."""
    import wandb

    run = _init(root, project=project, group=study, name=f"report-{study}", job_type="report")
    table = wandb.Table(dataframe=runs.astype(str))
    run.log({"runs": table, **{p.stem: wandb.Image(str(p)) for p in images}})
    where = str(run.url or run.dir)
    run.finish()
    return where
