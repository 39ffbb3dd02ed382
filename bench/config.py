"""Compose the Hydra config groups into a typed, validated RunSpec, and name the run.

The config groups under conf/ are the registry: `loss=simpo` works because conf/loss/simpo.yaml exists.
Everything a user can get wrong (an unknown option, a missing key, an impossible value) fails here, before any
compute, with the key and what to do.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.specs import (  # noqa: F401  (re-exported: the spec types are part of this module's API)
    DatasetSpec,
    EvalSpec,
    GenerationSpec,
    LmEvalSpec,
    LoraSpec,
    LossSpec,
    ModelSpec,
    RunSpec,
    ToyModelSpec,
    TrainSpec,
)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("model", "dataset", "loss", "train", "eval", "launcher")

# Keys that do not change the experiment and so are left out of the run id (dotted prefixes). Inference batch
# sizes change only how work is chunked; launcher, paths and logging only where and how it runs.
RUN_ID_EXCLUDE = (
    "study",
    "launcher",
    "paths",
    "logging",
    "eval.generation.batch_size",
    "eval.lm_eval.batch_size",
    "eval.judge_batch_size",
    # resources and resumability: the global batch is fixed, so only how the work is spread changes
    "train.save_steps",
    "train.processes",
    "train.accelerate_config",
)
# Documentation keys of a loss YAML: not hyperparameters.
LOSS_META_KEYS = ("paper", "equation")


def options(group: str) -> list[str]:
    """The options of a config group: the YAML file stems under conf/<group>/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _suggest(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""


def _check_group_choices(overrides: list[str]) -> None:
    """Name unknown group options before Hydra does, with the available ones and near matches."""
    for item in overrides:
        key, sep, value = item.lstrip("+~").partition("=")
        if sep and key in GROUPS:
            for choice in value.split(","):
                if choice not in options(key):
                    raise ConfigError(
                        f"unknown {key} option {choice!r} in override '{item}'."
                        f"{_suggest(choice, options(key))} "
                        f"Available {key} options: {', '.join(options(key))} (files in conf/{key}/)."
                    )


def _hydra_ready() -> None:
    """Initialise Hydra on conf/ once per process (not per compose: that halves the time of expanding a
    study of hundreds of runs). Another owner of Hydra's global state (a @hydra.main app) is replaced."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    global _HYDRA_OWNED
    hydra = GlobalHydra.instance()
    if hydra.is_initialized() and _HYDRA_OWNED:
        return
    hydra.clear()
    initialize_config_dir(config_dir=str(CONF_DIR), version_base=None)  # stays initialised (no `with`)
    _HYDRA_OWNED = True


_HYDRA_OWNED = False


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides; the choice of each group is kept under `choices`."""
    from hydra import compose as hydra_compose
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import ConfigKeyError

    overrides = list(overrides or [])
    _check_group_choices(overrides)
    try:
        _hydra_ready()
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    except (ConfigCompositionException, ConfigKeyError) as err:
        cause = err.__cause__ or err
        raise ConfigError(f"cannot compose the config with overrides {overrides}: {cause}") from err
    choices = {g: cfg.hydra.runtime.choices[g] for g in GROUPS}
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    cfg["choices"] = choices
    return cfg


def _typed(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a plain dict, naming the first unknown, missing or mistyped key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown key '{where}.{key}'.{_suggest(key, list(fields))} Valid keys: {', '.join(fields)}."
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
        import bench.specs

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
    if e.every_steps < 0 or e.bootstrap < 0 or not 0 < e.ci_level < 1:
        raise ConfigError("need eval.every_steps >= 0, eval.bootstrap >= 0 and 0 < eval.ci_level < 1")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"'train.warmup_ratio' must be in [0, 1), got {t.warmup_ratio}")
    d = spec.dataset
    from bench.data.formats import FORMATS

    if d.source not in ("toyworld", "file", "hf"):
        raise ConfigError(f"dataset.source={d.source!r}: use toyworld, file or hf")
    if d.source in ("file", "hf") and not d.path:
        raise ConfigError(f"dataset={d.name} reads its rows from dataset.path: set dataset.path=...")
    if d.format not in FORMATS:
        raise ConfigError(f"dataset.format={d.format!r}: use one of {', '.join(FORMATS)}")
    if d.test_split is not None and d.test_split == d.train_split:
        raise ConfigError(f"dataset.test_split equals dataset.train_split ({d.train_split!r}): never mix")
    _check_model(spec)


MODEL_SOURCES = ("toyworld", "path", "hub", "gguf")
ATTENTION = (None, "eager", "sdpa", "flash_attention_2", "flex_attention")
DTYPES = ("float32", "bfloat16", "float16")


def _check_model(spec: RunSpec) -> None:
    m = spec.model
    if m.source not in MODEL_SOURCES:
        raise ConfigError(f"model.source={m.source!r}: use one of {', '.join(MODEL_SOURCES)}")
    if m.source == "toyworld" and spec.dataset.source != "toyworld":
        raise ConfigError("model=toy speaks only the toy world's vocabulary: use it with dataset=toy")
    if m.source == "toyworld" and m.toy is None:
        raise ConfigError("model.source=toyworld needs a model.toy section (see conf/model/toy.yaml)")
    if m.source in ("path", "hub") and not m.path:
        what = "a local checkpoint folder" if m.source == "path" else "a Hub id such as org/name"
        raise ConfigError(f"model={m.name} (source {m.source}) needs model.path: {what}")
    if m.source == "gguf" and not {"package", "file"} <= set(m.gguf):
        raise ConfigError(f"model={m.name} (source gguf) needs model.gguf.package and model.gguf.file")
    if m.revision is not None and m.source != "hub":
        raise ConfigError(
            f"model.revision is only meaningful for Hub models (model.source=hub), not {m.source}"
        )
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


def build_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed config into a RunSpec (no compute, no file access beyond conf/)."""
    from omegaconf.errors import MissingMandatoryValue

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
        ),
        train=_typed(TrainSpec, data["train"], "train"),
        eval=_typed(EvalSpec, data["eval"], "eval"),
        launcher=data["launcher"],
        paths=data["paths"],
        logging=data["logging"],
        config=data,
    )
    _check_ranges(spec)
    from bench.losses import build_loss

    build_loss(spec.loss.name, spec.loss.params)  # unknown or out-of-range hyperparameters fail here
    return spec


def load_spec(overrides: list[str] | None = None) -> RunSpec:
    return build_spec(compose(overrides))


def _drop(tree: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if head in tree:
        if rest and isinstance(tree[head], dict):
            _drop(tree[head], rest)
        elif not rest:
            del tree[head]


def _canonical(tree: Any) -> Any:
    """Numbers by value, not by spelling: beta=1 and beta=1.0 are one experiment and get one run id."""
    if isinstance(tree, dict):
        return {k: _canonical(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_canonical(v) for v in tree]
    if isinstance(tree, float) and tree.is_integer():
        return int(tree)
    return tree


def signature(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the resolved config that defines the experiment (what the run id hashes)."""
    tree = _canonical(json.loads(json.dumps(config)))
    tree.pop("choices", None)
    for key in RUN_ID_EXCLUDE:
        _drop(tree, key)
    return tree


def config_hash(tree: Any, length: int = 8) -> str:
    blob = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_id(config: dict[str, Any], loss_name: str, dataset_name: str) -> str:
    """Readable prefix (variant, data, beta, lr, seed) + 8 hex of the experiment's signature."""
    sig = signature(config)
    parts = [loss_name, dataset_name]
    if "beta" in sig["loss"]:
        parts.append(f"b{_short(sig['loss']['beta'])}")
    parts += [f"lr{_short(sig['train']['learning_rate'])}", f"s{sig['seed']}", config_hash(sig)]
    return "-".join(parts)
