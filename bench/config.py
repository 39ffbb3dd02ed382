"""Compose the Hydra config groups into a typed, validated RunSpec, and name the run.

The config groups under conf/ are the registry: `loss=simpo` works because conf/loss/simpo.yaml exists.
Everything a user can get wrong (an unknown option, a missing key, an impossible value) fails here, before any
compute, with the key and what to do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue

import bench.specs
from bench.core.errors import ConfigError, did_you_mean
from bench.core.project import AUTO, project_root, under_root
from bench.groups import CONF_DIR, GROUPS, LOSS_META_KEYS, options
from bench.losses import build_loss
from bench.sources import select
from bench.sources.formats import FORMATS
from bench.sources.pair_rules import pair_rule
from bench.specs import (
    ATTENTION,
    DTYPES,
    DatasetSpec,
    EvalSpec,
    LauncherSpec,
    LoggingSpec,
    LossSpec,
    ModelSpec,
    OnPolicySpec,
    PathsSpec,
    RoundSpec,
    RunSpec,
    TrainSpec,
)


def _check_group_choices(overrides: list[str]) -> None:
    """Name unknown group options before Hydra does, with the available ones and near matches."""
    for item in overrides:
        key, sep, value = item.lstrip("+~").partition("=")
        if sep and key in GROUPS:
            for choice in value.split(","):
                if choice not in options(key):
                    raise ConfigError(
                        f"unknown {key} option {choice!r} in override '{item}'."
                        f"{did_you_mean(choice, options(key))} "
                        f"Available {key} options: {', '.join(options(key))} (files in {CONF_DIR / key}/)."
                    )


def _hydra_ready() -> None:
    """Initialise Hydra on conf/ once per process (not per compose: that halves the time of expanding a
    study of hundreds of runs). Another owner of Hydra's global state (a @hydra.main app) is replaced."""
    global _HYDRA_OWNED
    state = GlobalHydra.instance()
    if state.is_initialized() and _HYDRA_OWNED:
        return
    state.clear()
    hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base=None)  # stays initialised (no `with`)
    _HYDRA_OWNED = True


_HYDRA_OWNED = False
# Config maps that take keys their YAML does not list: column renames (`dataset.fields.gold=reference`) and
# the toy world's optional knobs (`dataset.world.list_size=4`, checked by bench.toyworld.build.world_params);
# Hydra's struct mode would refuse a new key without a leading "+"
OPEN_MAPS = ("dataset.fields.", "dataset.world.")


def _open_map(override: str) -> str:
    return "++" + override if override.startswith(OPEN_MAPS) else override


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides; the choice of each group is kept under `choices`."""
    overrides = [_open_map(o) for o in overrides or []]
    _check_group_choices(overrides)
    try:
        _hydra_ready()
        cfg = hydra.compose("config", overrides=overrides, return_hydra_config=True)
    except (ConfigCompositionException, ConfigKeyError) as err:
        cause = err.__cause__ or err
        unknown = _unknown_key(overrides, getattr(cause, "full_key", None), str(cause))
        if unknown:
            raise ConfigError(unknown) from err
        raise ConfigError(f"cannot compose the config with overrides {overrides}: {cause}") from err
    choices = {g: cfg.hydra.runtime.choices[g] for g in GROUPS}
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    cfg["choices"] = choices
    return cfg


def _unknown_key(overrides: list[str], full_key: str | None, message: str) -> str | None:
    """Hydra's "Key 'x' is not in struct" as the harness's error: the key, the option it is not a key of,
    near matches and every valid key there (composed without the offending overrides). None for any other
    composition error."""
    if not full_key or "not in struct" not in message:
        return None
    parent, _, name = full_key.rpartition(".")

    def offending(override: str) -> bool:
        key = override.lstrip("+~").partition("=")[0]
        return key == full_key or key.startswith(f"{full_key}.")

    try:
        base = hydra.compose(
            "config", overrides=[o for o in overrides if not offending(o)], return_hydra_config=True
        )
    except (ConfigCompositionException, ConfigKeyError):  # another bad override: report the first as is
        return None
    choices = base.hydra.runtime.choices
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return None
    meta = LOSS_META_KEYS if parent == "loss" else ()
    keys = sorted(str(k) for k in node if k not in ("hydra", *meta))
    head = parent.split(".")[0]
    where = f" (of {head}={choices[head]})" if head in GROUPS and head in choices else ""
    return (
        f"unknown key '{full_key}'{where}.{did_you_mean(name, keys)} "
        f"Valid keys{f' of {parent}' if parent else ''}: {', '.join(keys)}."
    )


def _typed(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a plain dict, naming the first unknown, missing or mistyped key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown key '{where}.{key}'.{did_you_mean(key, list(fields))} "
                f"Valid keys: {', '.join(fields)}."
            )
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(
                    f"missing required key '{where}.{name}': set it in the YAML or as {where}.{name}=..."
                )
            continue
        kwargs[name] = _coerce(f.type, data[name], f"{where}.{name}")
    return cls(**kwargs)


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(type_name: Any, value: Any, where: str) -> Any:
    text = str(type_name).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"'{where}' is null but must be a {base}")
    if base in _SCALARS:
        want = _SCALARS[base]
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ConfigError(f"'{where}' must be a {base}, got {value!r} ({type(value).__name__})")
        return value
    if base.endswith("Spec"):
        return _typed(getattr(bench.specs, base), value, where)
    return value  # dicts and lists are checked by their consumers


def _check_ranges(spec: RunSpec) -> None:
    t, e = spec.train, spec.eval
    positive = {
        "train.learning_rate": t.learning_rate,
        "train.batch_size": t.batch_size,
        "train.grad_accum": t.grad_accum,
        "train.logging_steps": t.logging_steps,
        "train.max_length": t.max_length,
        "eval.samples_per_prompt": e.samples_per_prompt,
        "eval.generation.max_new_tokens": e.generation.max_new_tokens,
        "eval.generation.temperature": e.generation.temperature,
        "eval.generation.batch_size": e.generation.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"'{key}' must be > 0, got {value}: set {key}=<positive value>")
    if t.max_steps <= 0 and t.epochs <= 0:
        raise ConfigError("set train.epochs > 0 or train.max_steps > 0: the run would train for no step")
    if t.batch_size % t.grad_accum:
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by train.grad_accum={t.grad_accum}"
        )
    if t.processes < 1 or t.save_steps < 0:
        raise ConfigError(
            f"need train.processes >= 1 and train.save_steps >= 0 (got {t.processes}, {t.save_steps})"
        )
    if t.batch_size % (t.grad_accum * t.processes):
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by train.grad_accum x train.processes = "
            f"{t.grad_accum * t.processes}: the global batch must split evenly over the processes"
        )
    if e.generation.backend not in ("auto", "hf", "vllm"):
        raise ConfigError(f"eval.generation.backend={e.generation.backend!r}: use auto, hf or vllm")
    a = e.judge_api
    if a.retries < 0 or a.backoff_s < 0 or a.max_backoff_s < a.backoff_s or a.timeout_s <= 0:
        raise ConfigError(
            "need eval.judge_api.retries >= 0, 0 <= backoff_s <= max_backoff_s and timeout_s > 0 (got "
            f"{a.retries}, {a.backoff_s}, {a.max_backoff_s}, {a.timeout_s})"
        )
    if (a.workers is not None and a.workers < 1) or not 0 <= e.judge_max_malformed <= 1:
        raise ConfigError(
            f"need eval.judge_api.workers >= 1 or null (got {a.workers}) and 0 <= eval.judge_max_malformed "
            f"<= 1 (got {e.judge_max_malformed})"
        )
    if e.every_steps < 0 or e.bootstrap < 0 or not 0 < e.ci_level < 1:
        raise ConfigError("need eval.every_steps >= 0, eval.bootstrap >= 0 and 0 < eval.ci_level < 1")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"'train.warmup_ratio' must be in [0, 1), got {t.warmup_ratio}")
    d = spec.dataset
    if d.format not in FORMATS:
        raise ConfigError(f"dataset.format={d.format!r}: use one of {', '.join(FORMATS)}")
    if d.test_split is not None and d.test_split == d.train_split:
        raise ConfigError(f"dataset.test_split equals dataset.train_split ({d.train_split!r}): never mix")
    if spec.launcher.kind not in LAUNCHERS:
        raise ConfigError(f"launcher.kind={spec.launcher.kind!r}: use one of {', '.join(LAUNCHERS)}")
    if spec.launcher.workers < 1:
        raise ConfigError(f"launcher.workers={spec.launcher.workers} must be >= 1")
    _check_model(spec)


LAUNCHERS = ("inproc", "local", "slurm")
ROUND_REFERENCES = ("original", "previous")


def _check_onpolicy(spec: RunSpec) -> None:
    """onpolicy.* and round.* (the judge's name is checked in preflight, where the judges are known)."""
    o, r = spec.onpolicy, spec.round
    if o.enabled:
        if o.samples < 2:
            raise ConfigError(f"onpolicy.samples={o.samples}: a pair needs at least 2 completions per prompt")
        try:
            pair_rule(o.rule, o.rso_beta, o.rso_samples)  # an unknown rule or bad rso settings
        except ConfigError as err:
            raise ConfigError(f"onpolicy.rule={o.rule}: {err}") from err
        if o.rule == "rso" and o.rso_samples > o.samples:
            raise ConfigError(
                f"onpolicy.rso_samples={o.rso_samples} > onpolicy.samples={o.samples}: RSO accepts at most "
                "the completions it has; lower rso_samples or raise samples"
            )
        if o.prompts_start < 0 or (o.prompts_count is not None and o.prompts_count < 1):
            raise ConfigError(
                f"need onpolicy.prompts_start >= 0 and onpolicy.prompts_count >= 1 or null (got "
                f"{o.prompts_start}, {o.prompts_count})"
            )
        if o.part_size < 1 or o.temperature <= 0 or not 0 < o.top_p <= 1:
            raise ConfigError(
                f"need onpolicy.part_size >= 1, temperature > 0 and 0 < top_p <= 1 (got {o.part_size}, "
                f"{o.temperature}, {o.top_p})"
            )
        if o.max_new_tokens is not None and o.max_new_tokens < 1:
            raise ConfigError(f"onpolicy.max_new_tokens={o.max_new_tokens}: need >= 1 or null")
        if o.model == "start" and r.after is None and r.index > 1:
            raise ConfigError("onpolicy.model=start in round > 1 needs round.after (the previous round)")
    if r.reference not in ROUND_REFERENCES:
        raise ConfigError(f"round.reference={r.reference!r}: use one of {', '.join(ROUND_REFERENCES)}")
    if r.index < 0 or (r.after is not None and r.index < 2):
        raise ConfigError(
            f"round.index={r.index} with round.after={r.after}: a run after another is round 2 or later "
            "(a study's `rounds:` sets both)"
        )
    if r.reference == "previous" and r.after is None and r.index > 1:
        raise ConfigError("round.reference=previous needs round.after (the previous round's run id)")
    if not 1 <= r.partition <= r.partitions:
        raise ConfigError(
            f"round.partition={r.partition} must be in 1..round.partitions={r.partitions} (sDPO's parts)"
        )


def _check_model(spec: RunSpec) -> None:
    """The model keys every source shares; each source checks its own (bench.sources.select)."""
    m = spec.model
    if m.dtype not in DTYPES:
        raise ConfigError(f"model.dtype={m.dtype!r}: use one of {', '.join(DTYPES)}")
    if m.attn_implementation not in ATTENTION:
        raise ConfigError(
            f"model.attn_implementation={m.attn_implementation!r}: use null (transformers' default) or "
            f"one of {', '.join(str(a) for a in ATTENTION[1:])}"
        )
    if m.chat_template not in ("auto", "none"):
        raise ConfigError(f"model.chat_template={m.chat_template!r}: use auto (the tokenizer's) or none")
    if (
        m.lora is not None
        and m.lora.enabled
        and (m.lora.r < 1 or m.lora.alpha < 1 or not 0 <= m.lora.dropout < 1)
    ):
        raise ConfigError(
            f"model.lora: need r >= 1, alpha >= 1 and 0 <= dropout < 1 (got r={m.lora.r}, "
            f"alpha={m.lora.alpha}, dropout={m.lora.dropout})"
        )


def _paths(data: dict[str, Any]) -> PathsSpec:
    """paths.* made absolute against the project root (bench.core.project), so every path a run writes or
    names in a message is absolute, whatever folder the command started in."""
    raw = _typed(_PathsConfig, data, "paths")
    root = project_root(raw.root)
    return PathsSpec(
        root=root,
        results=under_root(raw.results, root),
        cache=under_root(raw.cache, root),
        scratch=under_root(raw.scratch, root),
        refstats=under_root(raw.refstats, root),
    )


@dataclasses.dataclass(frozen=True)
class _PathsConfig:
    """paths.* as written in conf/config.yaml (strings, maybe relative)."""

    results: str
    cache: str
    scratch: str
    refstats: str
    root: str = AUTO  # the default of conf/config.yaml, for the manifests of runs made before paths.root


def build_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed config into a RunSpec (no compute, no file access beyond conf/)."""
    try:
        data: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[assignment]
    except MissingMandatoryValue as err:
        raise ConfigError(
            f"missing required key '{err.full_key}' (marked ??? in conf/): set {err.full_key}=..."
        ) from err
    choices = data["choices"]
    loss_data = dict(data["loss"])
    params = {k: v for k, v in loss_data.items() if k not in LOSS_META_KEYS}
    spec = RunSpec(
        study=_coerce("str", data["study"], "study"),
        seed=_coerce("int", data["seed"], "seed"),
        model=_typed(ModelSpec, {"name": choices["model"], **data["model"]}, "model"),
        dataset=_typed(DatasetSpec, {"name": choices["dataset"], **data["dataset"]}, "dataset"),
        loss=LossSpec(
            name=choices["loss"],
            paper=str(loss_data.get("paper", "")),
            equation=str(loss_data.get("equation", "")),
            params=params,
            implementation=str(loss_data.get("implementation") or ""),
        ),
        train=_typed(TrainSpec, data["train"], "train"),
        eval=_typed(EvalSpec, data["eval"], "eval"),
        launcher=_typed(LauncherSpec, data["launcher"], "launcher"),
        paths=_paths(data["paths"]),
        logging=_typed(LoggingSpec, data["logging"], "logging"),
        config=data,
        # absent from the config of a run made before them: the defaults (off)
        onpolicy=_typed(OnPolicySpec, data.get("onpolicy") or {}, "onpolicy"),
        round=_typed(RoundSpec, data.get("round") or {}, "round"),
    )
    _check_ranges(spec)
    _check_onpolicy(spec)
    build_loss(spec.loss.module, spec.loss.params)  # unknown or out-of-range hyperparameters fail here
    select(spec)  # the data and model sources: their own keys, and whether they fit together
    return spec


def load_spec(overrides: list[str] | None = None) -> RunSpec:
    return build_spec(compose(overrides))
