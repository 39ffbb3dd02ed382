"""One run, stage by stage: train -> generate -> judge -> lm_eval -> metrics, each skipped when its output is
complete, so rerunning a finished run does nothing and an interrupted one resumes at its first
unfinished stage.

Also the Hydra entry point for ad-hoc sweeps: `python -m bench.run -m loss.beta=1,2 seed=0,1`.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.config import RunSpec
from bench.records import Status, read_jsonl, write_manifest

log = logging.getLogger(__name__)

STAGES = ("train", "generate", "judge", "lm_eval", "metrics")


def stage_outputs(spec: RunSpec, run_dir: Path) -> dict[str, list[Path]]:
    """The files whose existence means a stage is complete (all written atomically)."""
    from bench.judge import annotations_path

    return {
        "train": [spec.checkpoint_dir() / "config.json", run_dir / "train_log.jsonl"],
        "generate": [run_dir / "generations.jsonl"],
        "judge": [annotations_path(spec, run_dir)],
        "lm_eval": [run_dir / "lm_eval.json"],
        "metrics": [run_dir / "metrics.jsonl"],
    }


def preflight(spec: RunSpec) -> None:
    """Checks that need files but no compute: fail before any training on bad data or task names."""
    from bench.data.preference import load_jsonl_rows
    from bench.evaluate import check_tasks
    from bench.judge import check_judge

    if spec.dataset.train_path:
        load_jsonl_rows(Path(spec.dataset.train_path))
    check_judge(spec)
    check_tasks(spec.eval.lm_eval.tasks)


def _stage_functions(spec: RunSpec, run_dir: Path) -> dict[str, Callable[[], object]]:
    from bench.evaluate import run_lm_eval
    from bench.generate import reference_generations, run_generate
    from bench.judge import run_judge
    from bench.metrics import run_metrics
    from bench.train import run_train

    def judge() -> object:
        return run_judge(
            spec, run_dir, read_jsonl(run_dir / "generations.jsonl"), read_jsonl(reference_generations(spec))
        )

    return {
        "train": lambda: run_train(spec, run_dir),
        "generate": lambda: (reference_generations(spec), run_generate(spec, run_dir)),
        "judge": judge,
        "lm_eval": lambda: (evaluate_reference(spec), run_lm_eval(spec, run_dir, spec.checkpoint_dir())),
        "metrics": lambda: run_metrics(spec, run_dir, reference_generations(spec)),
    }


def evaluate_reference(spec: RunSpec) -> Path:
    """The reference model's own row: lm-eval and metrics beside its shared samples (once per study)."""
    from bench.evaluate import run_lm_eval
    from bench.generate import reference_generations
    from bench.metrics import reference_metrics
    from bench.models import reference_model_path
    from bench.records import file_lock

    folder = reference_generations(spec).parent
    with file_lock(folder / ".lock"):
        run_lm_eval(spec, folder, reference_model_path(spec))
        reference_metrics(spec, folder)
    return folder


def run_one(spec: RunSpec, stages: tuple[str, ...] = STAGES) -> Path:
    """Run (or resume) the given stages of one run; returns the run folder."""
    run_dir = spec.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    preflight(spec)
    write_manifest(run_dir, spec.run_id, spec.config, {"study": spec.study})
    status = Status(run_dir)
    outputs = stage_outputs(spec, run_dir)
    functions = _stage_functions(spec, run_dir)
    for stage in stages:
        t0 = time.perf_counter()
        if all(p.exists() for p in outputs[stage]):
            status.done(stage, 0.0, skipped=True)
            log.info("[%s] %s: already complete, skipped", spec.run_id, stage)
            continue
        status.start(stage)
        log.info("[%s] %s ...", spec.run_id, stage)
        try:
            functions[stage]()
        except BaseException as err:
            status.fail(stage, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}")
            raise
        status.done(stage, time.perf_counter() - t0)
        log.info("[%s] %s done in %.1f s", spec.run_id, stage, time.perf_counter() - t0)
    if all(p.exists() for s in STAGES for p in outputs[s]):
        status.finish()
        write_manifest(
            run_dir,
            spec.run_id,
            spec.config,
            {"study": spec.study, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        )
    return run_dir


def _hydra_main() -> None:
    """`python -m bench.run [-m] overrides...`: Hydra's own CLI and launchers (e.g. submitit) over run_one."""
    import hydra
    from omegaconf import DictConfig

    from bench.config import CONF_DIR, build_spec

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
    def main(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        choices = HydraConfig.get().runtime.choices
        OmegaConf.set_struct(cfg, False)
        cfg["choices"] = {g: choices[g] for g in ("model", "dataset", "loss", "train", "eval", "launcher")}
        run_one(build_spec(cfg))

    main()


if __name__ == "__main__":
    _hydra_main()
