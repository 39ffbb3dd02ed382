"""One run, stage by stage, each skipped when its outputs are complete, so rerunning a finished run does
nothing and an interrupted one resumes at its first unfinished stage.

    sample -> train -> reference -> generate -> judge -> lm_eval -> metrics -> curve

`STAGES` is the one ordered list; adding a stage is one module in bench/stages/ and one line here. The runner
(bench.stages.base.execute) knows nothing stage-specific; this module adds what a run needs around it: the
preflight, the per-run lock, the manifest and status.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.config import build_spec, compose
from bench.core.errors import ConfigError, DiskFullError, UnavailableError
from bench.core.keys import EVAL_TARGET, PREFLIGHT, key_hash
from bench.core.records import Status, read_json, remove_temporaries, try_lock, write_manifest
from bench.judge import check_judge
from bench.judge.sampled import POINTWISE, check_sampling_judge, is_pointwise
from bench.losses import PreferenceLoss, build_loss
from bench.sources import Sources, select
from bench.sources.prompts import check_prompts, evaluation_prompts
from bench.sources.sampled import check_disjoint, prompt_slice, sampler_identity
from bench.specs import RunSpec
from bench.stages import STAGE_NAMES
from bench.stages.base import Context, Stage, execute
from bench.stages.curve import Curve
from bench.stages.generate import Generate
from bench.stages.judge import Judge
from bench.stages.lm_eval import LmEval, check_tasks
from bench.stages.metrics import Metrics
from bench.stages.reference import Reference
from bench.stages.sample import Sample, build_sampled
from bench.stages.train import Train
from bench.train.rows import variant_rows

log = logging.getLogger(__name__)

GENERATE, JUDGE, LM_EVAL, METRICS = Generate(), Judge(), LmEval(), Metrics()
STAGES: tuple[Stage, ...] = (
    Sample(),  # only with onpolicy.enabled: the training pairs sampled and judged first
    Train(),
    Reference(),
    GENERATE,
    JUDGE,
    LM_EVAL,
    METRICS,
    Curve(per_step=(GENERATE, JUDGE, METRICS)),  # lm-eval only on final models
)
EVALUATION: tuple[Stage, ...] = tuple(
    s for s in STAGES if s.name in ("reference", "generate", "judge", "lm_eval", "metrics")
)
if tuple(s.name for s in STAGES) != STAGE_NAMES:  # the light copy the command line shows
    raise RuntimeError(f"bench.stages.STAGE_NAMES {STAGE_NAMES} differs from the pipeline's stages")


def stages_named(names: list[str] | None) -> tuple[Stage, ...]:
    """The stages of STAGES with these names, in pipeline order (all when None)."""
    if names is None:
        return STAGES
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGE_NAMES)}")
    return tuple(s for s in STAGES if s.name in names)


def preflight(spec: RunSpec, unavailable: list[str] | None = None) -> Sources:
    """Checks that need files but no compute: fail before any training on bad data, prompts, models, judges
    or task names. With `unavailable` (a dry run), what only this machine lacks (UnavailableError: a Hub
    dataset or model not cached offline, an API key, another machine's file) is appended there instead of
    raised, and every other check still runs. Returns the run's sources."""
    sources = select(spec)
    checks = (
        sources.data.check,  # every row read and validated now, not after model loading
        lambda: check_prompts(spec),
        sources.model.check,
        lambda: check_judge(spec, sources),
        lambda: check_variant(spec, sources),
        lambda: check_round(spec),
    )
    for check in checks:
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
    check_tasks(spec.eval.lm_eval.tasks, sources.data.lm_eval_tasks(), spec.dataset.name)
    return sources


def check_variant(spec: RunSpec, sources: Sources) -> None:
    """What the variant declares, checked before any compute: the data's shape (bench.sources.shapes: lists,
    unpaired rows, gold responses), per-pair scores (ODPO) on every training pair
    (the toy world scores every pair by its judge, so its world is not built for this check), and a moving
    reference (TR-DPO) only with full fine-tuning (with LoRA the reference is the frozen base: it cannot
    move)."""
    variant = build_loss(spec.loss.module, spec.loss.params)
    if variant.moving_reference and spec.model.lora is not None and spec.model.lora.enabled:
        raise ConfigError(
            f"loss={spec.loss.name} moves its reference during training, which needs a second full model; "
            "with model.lora.enabled=true the reference is the frozen base. Set model.lora.enabled=false, or "
            "choose a loss with a fixed reference"
        )
    if spec.onpolicy.enabled:  # the rows do not exist yet: what they will be is checked instead
        check_onpolicy(spec, sources, variant)
        return
    # the toy world's own rows (scored pairs or lists, never unpaired or gold) are checked without building it
    own_world = sources.data.always_scored and not spec.dataset.train_path
    if own_world and variant.data_shape == "gold":
        raise ConfigError(
            f"loss={spec.loss.name} trains on pairs with a gold response, and dataset={spec.dataset.name} "
            "has none: give dataset.train_path=<JSONL of pairs with a `gold` field>, or a file dataset "
            "(dataset=local dataset.path=<file>) with a gold column"
        )
    if not own_world:  # the data's shape and scores as the variant needs them, before any compute
        variant_rows(spec, variant, sources.data)


def check_onpolicy(spec: RunSpec, sources: Sources, variant: PreferenceLoss) -> None:
    """Sampled training pairs, before any compute: the sampler exists, the judge gives what the rule and the
    variant need, and the prompt slice fits and shares no prompt with evaluation (once the data is prepared:
    a toy world not built yet is checked by the sample stage, after building it)."""
    sampler_identity(spec)  # a saved-folder sampler exists
    check_sampling_judge(spec, sources)
    if variant.data_shape == "gold":
        raise ConfigError(
            f"loss={spec.loss.name} trains on pairs with a gold response, and sampled pairs "
            "(onpolicy.enabled) have none: choose a pairwise variant, or set onpolicy.enabled=false"
        )
    if variant.needs_scores and not is_pointwise(spec):
        raise ConfigError(
            f"loss={spec.loss.name} needs a score for each completion, and "
            f"onpolicy.judge={spec.onpolicy.judge} only compares two: use a pointwise judge "
            f"({', '.join(POINTWISE)}) or a loss without scores"
        )
    if spec.onpolicy.online:
        check_online(spec, variant)
        return
    if sources.data.prepared():  # a toy world not built yet: the sample stage checks once it is
        prompts = prompt_slice(spec, sources.data.dataset_rows())
        check_disjoint(spec, prompts, evaluation_prompts(spec, sources.data))


def check_online(spec: RunSpec, variant: PreferenceLoss) -> None:
    """Online training (bench.train.online) samples from the policy it trains, per batch, in one process, and
    gives pairs scored against a reference it scores per batch."""
    o = spec.onpolicy
    problems = {
        "onpolicy.model": (
            o.model != "start",
            "online pairs come from the policy being trained: onpolicy.model=start",
        ),
        "train.processes": (
            spec.train.processes > 1,
            "online training runs in one process (the judge lives in it): train.processes=1",
        ),
        "loss": (
            variant.data_shape != "pairs" or variant.needs_kl_pairs,
            f"loss={spec.loss.name} trains on {variant.data_shape} rows"
            + (" with KL pairs" if variant.needs_kl_pairs else "")
            + "; online batches are pairs (a pairwise variant without KL pairs)",
        ),
    }
    for key, (bad, fix) in problems.items():
        if bad:
            raise ConfigError(f"onpolicy.online=true and {key}: {fix}")


def check_round(spec: RunSpec) -> None:
    """A round's settings that need more than the config: LoRA's reference is the frozen base, which in a
    round after the first is the previous policy, so the original reference cannot be had with it."""
    lora = spec.model.lora is not None and spec.model.lora.enabled
    if lora and spec.round.after is not None and spec.round.reference == "original":
        raise ConfigError(
            f"round {spec.round.index} trains with LoRA against the original reference, and LoRA's "
            "reference is the frozen base (the previous round's policy): set "
            "round.reference=previous (a study's rounds: reference: previous), or model.lora.enabled=false"
        )


def preflight_once(spec: RunSpec, checked: set[str], unavailable: list[str] | None = None) -> None:
    """preflight(spec) unless a run with the same inputs (its PREFLIGHT key, in `checked`) was checked
    already: a study of hundreds of runs reads its data once. With `unavailable` (a dry run), what only this
    machine lacks is added there, each message once."""
    key = key_hash(PREFLIGHT, spec.config)
    if key in checked:
        return
    found: list[str] = []
    preflight(spec, found if unavailable is not None else None)
    checked.add(key)
    if unavailable is not None:
        unavailable += [m for m in found if m not in unavailable]


def run_one(
    spec: RunSpec,
    stages: tuple[Stage, ...] = STAGES,
    policy: Path | None = None,
    run_dir: Path | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) the given stages of one run; returns the run folder.

    By default the policy is the run's own trained checkpoint; `bench evaluate` passes another `policy`
    (any saved model) and folder, and runs only the evaluation stages."""
    entered = time.time()  # the harness's own time per run is measured from here (bench.benchmarks.overhead)
    run_dir = run_dir or spec.run_dir()
    sources = preflight(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    # One process per run folder: a second submission of the same run (two sweeps at once, a requeue racing
    # its predecessor) leaves it to the holder instead of computing it twice.
    with try_lock(run_dir / ".run.lock") as mine:
        if not mine:
            log.warning("[%s] is running in another process; leaving it there", run_dir.name)
            return run_dir
        ctx = Context(spec, sources, run_dir, policy or spec.checkpoint_dir())
        expected = STAGES if ctx.policy == spec.checkpoint_dir() else EVALUATION
        extra = {
            "study": spec.study,
            "policy": str(ctx.policy),
            "model": sources.model.describe(),
            **(manifest_extra or {}),
        }
        remove_temporaries(run_dir)  # left by writes a killed attempt never finished; the lock is ours
        status = Status(run_dir)
        status.hold_reserve()
        try:
            write_manifest(run_dir, run_dir.name, spec.config, extra)
            status.begin_attempt(entered)
            execute(stages, ctx, status)
            if all(stage.complete(ctx) for stage in expected):
                finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                write_manifest(run_dir, run_dir.name, spec.config, {**extra, "finished": finished})
                status.finish()
        except DiskFullError as err:
            if status.data.get("error") != str(err):  # outside a stage (execute records its own)
                status.fail(None, str(err))
            raise
    return run_dir


def sample_pairs(spec: RunSpec) -> Path:
    """`bench sample`: the sampled dataset folder of a config (onpolicy.*), written when it is not there
    (preflight first; no run folder: the folder is shared by every run with its key)."""
    sources = preflight(spec)
    return build_sampled(Context(spec, sources, spec.run_dir(), spec.checkpoint_dir()))


def target_kind(target: str) -> str:
    """What `bench evaluate TARGET` names: 'run' (a run folder), 'reference', or 'model' (a saved model)."""
    path = Path(target)
    if (path / "manifest.json").exists():
        return "run"
    if target == "reference":
        return "reference"
    if (path / "config.json").exists():
        return "model"
    raise ConfigError(
        f"{target!r} ({path.resolve()}) is neither a run folder (with manifest.json), a model folder (with "
        "config.json) nor 'reference'"
    )


def evaluate_target(target: str, overrides: list[str]) -> Path:
    """`bench evaluate TARGET`: the evaluation stages on a run folder, a saved model, or `reference`.

    A run folder whose config the overrides leave unchanged is evaluated in place (finished stages skip).
    Anything else gets its own folder results/<study>/eval-<label>-<hash>/, named by the experiment's
    signature and the evaluated model, so re-evaluating the same model the same way resumes there."""
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
                f"cannot apply {overrides} to the config of {path.resolve()}: {err}. Only dotted keys of "
                "the stored config can change (e.g. eval.max_prompts=8); for other groups, evaluate the "
                "checkpoint"
            ) from err
        assert isinstance(merged, DictConfig)
        spec = build_spec(merged)
        policy = Path(manifest.get("policy") or spec.checkpoint_dir())
        label = path.name
        if spec.run_id == path.name and not overrides:
            return run_one(spec, EVALUATION, policy=policy, run_dir=path)
    else:
        spec = build_spec(compose(overrides))
        if kind == "reference":
            policy, label = select(spec).model.reference(), "reference"
        else:
            policy, label = path.resolve(), path.name
    key = key_hash(EVAL_TARGET, spec.config, policy=str(policy))
    run_dir = spec.paths.results / spec.study / f"eval-{label}-{key}"
    return run_one(
        spec, EVALUATION, policy=policy, run_dir=run_dir, manifest_extra={"label": f"eval:{label}"}
    )
