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
from bench.records import Status, read_jsonl, try_lock, write_manifest

log = logging.getLogger(__name__)

STAGES = ("train", "generate", "judge", "lm_eval", "metrics", "curve")
EVAL_STAGES = ("generate", "judge", "lm_eval", "metrics")  # what evaluating an existing model runs


def stage_outputs(spec: RunSpec, run_dir: Path) -> dict[str, list[Path]]:
    """The files whose existence means a stage is complete (all written atomically)."""
    from bench.curve import curve_output
    from bench.judge import annotations_path

    return {
        "train": [spec.checkpoint_dir() / "config.json", run_dir / "train_log.jsonl"],
        "generate": [run_dir / "generations.jsonl"],
        "judge": [annotations_path(spec, run_dir)],
        "lm_eval": [run_dir / "lm_eval.json"],
        "metrics": [run_dir / "metrics.jsonl"],
        "curve": curve_output(spec, run_dir),  # empty (complete) when eval.every_steps is 0
    }


def preflight(spec: RunSpec, unavailable: list[str] | None = None) -> None:
    """Checks that need files but no compute: fail before any training on bad data, prompts, models, judges
    or task names. With `unavailable` (a dry run), what only this machine lacks (UnavailableError: a Hub
    dataset or model not cached offline, an API key, another machine's file) is appended there instead of
    raised, and every other check still runs."""
    from bench.data.preference import load_jsonl_rows
    from bench.errors import ConfigError, UnavailableError
    from bench.evaluate import check_tasks
    from bench.judge import check_judge
    from bench.models import check_model
    from bench.prompts import check_prompts

    def data() -> None:  # read and validate every row now, not after model loading
        if spec.dataset.train_path:
            load_jsonl_rows(Path(spec.dataset.train_path))
        elif spec.dataset.source in ("file", "hf"):
            from bench.data.preference import training_rows

            training_rows(spec)

    for check in (data, lambda: check_prompts(spec), lambda: check_model(spec), lambda: check_judge(spec)):
        try:
            check()
        except UnavailableError as err:
            if unavailable is None:
                raise
            unavailable.append(str(err))
    if spec.train.accelerate_config and not Path(spec.train.accelerate_config).exists():
        raise ConfigError(
            f"train.accelerate_config={spec.train.accelerate_config}: no such file (an `accelerate config` "
            "YAML for DDP, FSDP or DeepSpeed; null for plain DDP)"
        )
    check_tasks(spec.eval.lm_eval.tasks, toy=spec.dataset.source == "toyworld")


def _stage_functions(spec: RunSpec, run_dir: Path, policy: Path) -> dict[str, Callable[[], object]]:
    from bench.curve import run_curve
    from bench.evaluate import run_lm_eval
    from bench.generate import reference_generations, run_generate
    from bench.judge import run_judge
    from bench.metrics import run_metrics
    from bench.train import run_train

    def judge() -> object:
        return run_judge(
            spec, run_dir, read_jsonl(run_dir / "generations.jsonl"), read_jsonl(reference_generations(spec))
        )

    def metrics() -> object:
        """Metrics of the samples, judgments and lm-eval, plus the off-policy log-ratios on the training
        pairs (a secondary KL diagnostic that needs both models, so it is computed here, once)."""
        from bench.chat import uses_chat_template
        from bench.data.preference import training_rows
        from bench.kl import offpolicy_logratios
        from bench.models import load_model, reference_model_path

        if (run_dir / "metrics.jsonl").exists():
            return run_dir / "metrics.jsonl"
        pol, tok = load_model(spec, policy)
        ref, _ = load_model(spec, reference_model_path(spec))
        chat = uses_chat_template(tok, spec.model.chat_template)
        stats = offpolicy_logratios(pol, ref, tok, training_rows(spec), seed=spec.seed, chat=chat)
        out = run_metrics(spec, run_dir, reference_generations(spec), offpolicy=stats)
        if spec.logging.get("wandb"):
            from bench.tracking import log_final_metrics

            log_final_metrics(spec, run_dir, read_jsonl(out))
        return out

    return {
        "train": lambda: run_train(spec, run_dir),
        "generate": lambda: (reference_generations(spec), run_generate(spec, run_dir, policy)),
        "judge": judge,
        "lm_eval": lambda: (evaluate_reference(spec), run_lm_eval(spec, run_dir, policy)),
        "metrics": metrics,
        "curve": lambda: run_curve(spec, run_dir),
    }


def evaluate_reference(spec: RunSpec) -> Path:
    """The reference model's own row: lm-eval and metrics beside its shared samples (once per study). Judged
    against eval.reference_outputs when that is set (the SFT row of an AlpacaEval table); against itself its
    win rates are 1/2 by definition."""
    from bench.evaluate import run_lm_eval
    from bench.generate import reference_generations
    from bench.judge import run_judge
    from bench.metrics import reference_metrics
    from bench.models import reference_model_path
    from bench.records import file_lock

    samples = reference_generations(spec)
    folder = samples.parent
    with file_lock(folder / ".lock"):
        if spec.eval.reference_outputs:
            rows = read_jsonl(samples)
            run_judge(spec, folder, rows, rows)
        run_lm_eval(spec, folder, reference_model_path(spec))
        reference_metrics(spec, folder)
    return folder


def run_one(
    spec: RunSpec,
    stages: tuple[str, ...] = STAGES,
    policy: Path | None = None,
    run_dir: Path | None = None,
    manifest_extra: dict[str, object] | None = None,
) -> Path:
    """Run (or resume) the given stages of one run; returns the run folder.

    By default the policy is the run's own trained checkpoint; `bench evaluate` passes another `policy`
    (any saved model) and folder, and runs only the evaluation stages."""
    entered = time.time()  # the harness's own time per run is measured from here (bench.benchmarks.overhead)
    run_dir = run_dir or spec.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    preflight(spec)
    # One process per run folder: a second submission of the same run (two sweeps at once, a requeue racing
    # its predecessor) leaves it to the holder instead of computing it twice.
    with try_lock(run_dir / ".run.lock") as mine:
        if not mine:
            log.warning("[%s] is running in another process; leaving it there", run_dir.name)
            return run_dir
        return _run_stages(spec, stages, policy, run_dir, manifest_extra, entered)


def _run_stages(
    spec: RunSpec,
    stages: tuple[str, ...],
    policy: Path | None,
    run_dir: Path,
    manifest_extra: dict[str, object] | None,
    entered: float,
) -> Path:
    policy = policy or spec.checkpoint_dir()
    expected = STAGES if policy == spec.checkpoint_dir() else EVAL_STAGES
    from bench.models import describe_model

    extra = {
        "study": spec.study,
        "policy": str(policy),
        "model": describe_model(spec),
        **(manifest_extra or {}),
    }
    write_manifest(run_dir, run_dir.name, spec.config, extra)
    status = Status(run_dir)
    status.begin_attempt(entered)
    outputs = stage_outputs(spec, run_dir)
    functions = _stage_functions(spec, run_dir, policy)
    for stage in stages:
        t0 = time.perf_counter()
        if all(p.exists() for p in outputs[stage]):
            status.done(stage, 0.0, skipped=True)
            log.info("[%s] %s: already complete, skipped", run_dir.name, stage)
            continue
        status.start(stage)
        log.info("[%s] %s ...", run_dir.name, stage)
        try:
            functions[stage]()
        except (KeyboardInterrupt, SystemExit) as err:  # preemption / time limit (submitit exits), Ctrl-C
            status.interrupt(stage, f"{type(err).__name__}: stopped during {stage}; a rerun resumes")
            raise
        except BaseException as err:
            status.fail(stage, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}")
            raise
        status.done(stage, time.perf_counter() - t0)
        log.info("[%s] %s done in %.1f s", run_dir.name, stage, time.perf_counter() - t0)
    if all(p.exists() for s in expected for p in outputs[s]):
        status.finish()
        write_manifest(
            run_dir, run_dir.name, spec.config, {**extra, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        )
    return run_dir


def target_kind(target: str) -> str:
    """What `bench evaluate TARGET` names: 'run' (a run folder), 'reference', or 'model' (a saved model)."""
    from bench.errors import ConfigError

    path = Path(target)
    if (path / "manifest.json").exists():
        return "run"
    if target == "reference":
        return "reference"
    if (path / "config.json").exists():
        return "model"
    raise ConfigError(
        f"{target!r} is neither a run folder (with manifest.json), a model folder (with config.json) "
        "nor 'reference'"
    )


def evaluate_target(target: str, overrides: list[str]) -> Path:
    """`bench evaluate TARGET`: the evaluation stages on a run folder, a saved model, or `reference`.

    A run folder whose config the overrides leave unchanged is evaluated in place (finished stages skip).
    Anything else gets its own folder results/<study>/eval-<label>-<hash>/, named by the experiment's
    signature and the evaluated model, so re-evaluating the same model the same way resumes there."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from bench.config import build_spec, compose, config_hash, signature
    from bench.errors import ConfigError
    from bench.models import reference_model_path
    from bench.records import read_json

    path = Path(target)
    kind = target_kind(target)
    if kind == "run":
        manifest = read_json(path / "manifest.json")
        cfg = OmegaConf.create(manifest["config"])
        OmegaConf.set_struct(cfg, True)  # an override may change a value, never invent a key
        try:
            merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
        except OmegaConfBaseException as err:
            raise ConfigError(
                f"cannot apply {overrides} to the config of {path}: {err}. Only dotted keys of the stored "
                "config can change (e.g. eval.max_prompts=8); for other groups, evaluate the checkpoint"
            ) from err
        assert isinstance(merged, DictConfig)
        spec = build_spec(merged)
        policy = Path(manifest.get("policy") or spec.checkpoint_dir())
        label = path.name
        if spec.run_id == path.name and not overrides:
            return run_one(spec, EVAL_STAGES, policy=policy, run_dir=path)
    else:
        spec = build_spec(compose(overrides))
        if kind == "reference":
            policy, label = reference_model_path(spec), "reference"
        else:
            policy, label = path.resolve(), path.name
    key = config_hash({"signature": signature(spec.config), "policy": str(policy)})
    run_dir = Path(spec.paths["results"]) / spec.study / f"eval-{label}-{key}"
    return run_one(
        spec, EVAL_STAGES, policy=policy, run_dir=run_dir, manifest_extra={"label": f"eval:{label}"}
    )


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
