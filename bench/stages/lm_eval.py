"""The lm_eval stage: lm-eval-harness tasks on a checkpoint -> lm_eval.json (raw results, versions, configs).

This is the one module that imports lm_eval (lazily: its import costs seconds). Our own tasks ship as YAML in
bench/tasks/, with their documents beside them (bench/tasks/data/) or from the run's data source (the toy
world writes toy_nll and toy_mc); the YAML is loaded with lm-eval's own loader (`!function` then resolves next
to the YAML), pointed at the JSONL, and handed to lm-eval as a config dict. Any other task name (arc_easy,
...) goes to lm-eval unchanged and needs the hub.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.chat import adds_bos
from bench.core.errors import ConfigError
from bench.core.records import atomic_write_json, read_json
from bench.sources import DataSource, ModelSource, Sources
from bench.specs import RunSpec
from bench.stages.base import Context, Stage

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
TOY_PREFIX = "toy_"
OUTPUT_NAME = "lm_eval.json"
# lm-eval's own defaults, pinned: evaluation draws the same documents and few-shot examples for every run
# (whatever its training seed), so runs are compared on identical items.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}


def shipped_tasks() -> list[str]:
    """Names of the task YAMLs that ship in bench/tasks/ (their file stems)."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_task_yaml(name: str) -> dict[str, Any]:
    """A shipped task's config dict, read with lm-eval's loader so `!function utils.x` becomes a callable."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval >= 0.4.10
    except ImportError:  # older layout
        from lm_eval.utils import load_yaml_config

        return dict(load_yaml_config(yaml_path=str(TASKS_DIR / f"{name}.yaml"), mode="full"))
    return dict(load_yaml(TASKS_DIR / f"{name}.yaml", resolve_func=True))


def _with_data(cfg: dict[str, Any], data: Path) -> dict[str, Any]:
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {"test": str(data)}}
    return cfg


def _own_data(name: str) -> Path:
    """Where a shipped task keeps its documents when they ship with it (bench/tasks/data/)."""
    return TASKS_DIR / "data" / f"{name}.jsonl"


def shipped_task_config(name: str, data: Path | None = None) -> dict[str, Any]:
    """A shipped task's YAML pointed at its documents: `data` (from the run's data source) or its own file."""
    path = data or _own_data(name)
    if not path.exists():
        raise ConfigError(f"the documents of lm-eval task {name!r} are missing: {path}")
    return _with_data(load_task_yaml(name), path)


def check_tasks(names: list[str], data_tasks: dict[str, Path], dataset: str) -> None:
    """Before anything is built: a name that looks like one of ours (toy_*) must be shipped, and a shipped
    task whose documents come from the data (not from bench/tasks/data/) needs a data source that provides
    them.

    Other names are lm-eval's: checking them would mean indexing every built-in task, and lm-eval names an
    unknown one itself.
    """
    shipped = shipped_tasks()
    for name in names:
        if name.startswith(TOY_PREFIX) and name not in shipped:
            raise ConfigError(
                f"unknown toy task {name!r} in eval.lm_eval.tasks; shipped toy tasks: {', '.join(shipped)} "
                f"(YAML files in {TASKS_DIR})"
            )
        if name in shipped and name not in data_tasks and not _own_data(name).exists():
            portable = [t for t in shipped if _own_data(t).exists()]
            raise ConfigError(
                f"eval.lm_eval.tasks has the toy task {name!r}, whose documents come from the toy world, but "
                f"dataset={dataset} is not the toy world (it provides none): use lm-eval tasks such as "
                f"{', '.join(portable)} (shipped) or ifeval, arc_easy (built in; the hub or a local copy)"
            )


def resolve_tasks(spec: RunSpec, data: DataSource) -> list[str | dict[str, Any]]:
    """The task list for lm-eval: config dicts for shipped tasks, names for everything else."""
    names = list(spec.eval.lm_eval.tasks)
    data_tasks = data.lm_eval_tasks()
    check_tasks(names, data_tasks, spec.dataset.name)
    shipped = shipped_tasks()
    return [shipped_task_config(n, data_tasks.get(n)) if n in shipped else n for n in names]


@contextlib.contextmanager
def _keep_global_rng() -> Iterator[None]:
    """simple_evaluate reseeds Python, numpy and torch globally; restore them so later stages in the same
    process (launcher=inproc) draw what they would have drawn without this stage."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _func_name(fn: Any) -> str:
    # Functions loaded by `!function` get a module named by their file path; keep the file's stem only,
    # which is how the YAML names them (utils.process_results).
    module = str(getattr(fn, "__module__", "") or "").rsplit("/", 1)[-1]
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}" if module else str(name)


def jsonable(tree: Any) -> Any:
    """A JSON-serialisable copy: callables become their names, other foreign objects their str()."""
    if isinstance(tree, dict):
        return {str(k): jsonable(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple | set):
        return [jsonable(v) for v in tree]
    if tree is None or isinstance(tree, bool | int | str):
        return tree
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else str(tree)  # NaN/inf are not JSON
    if callable(tree):
        return _func_name(tree)
    if hasattr(tree, "item"):  # numpy / torch scalars
        return jsonable(tree.item())
    return str(tree)


def _configs(raw: dict[str, Any], requested: list[str | dict[str, Any]]) -> dict[str, Any]:
    """lm-eval dumps callables in configs as their source code; for our tasks, record the YAML's name."""
    configs = jsonable(raw)
    for cfg in requested:
        if isinstance(cfg, dict) and cfg["task"] in configs:
            for key, value in cfg.items():
                if callable(value):
                    configs[cfg["task"]][key] = _func_name(value)
    return configs


def _make_lm(model_source: ModelSource, model_path: Path, batch_size: int) -> Any:
    from lm_eval.models.huggingface import HFLM

    model, tok = model_source.load(model_path)
    if torch.cuda.is_available():
        model = model.to("cuda")  # HFLM leaves a passed-in model where it is
    # backend="causal": our toy_llama type is not in transformers' causal-LM name table (that would only cost
    # a warning). add_bos_token mirrors what the tokenizer does by default, made explicit so lm-eval's
    # per-model-type guesses cannot change it: False for the toy (the model never saw a BOS in training),
    # True for Llama-style tokenizers.
    return HFLM(
        pretrained=model, tokenizer=tok, batch_size=batch_size, backend="causal", add_bos_token=adds_bos(tok)
    )


def run_lm_eval(spec: RunSpec, sources: Sources, run_dir: Path, model_path: Path) -> Path:
    """Evaluate the model at `model_path` on spec.eval.lm_eval.tasks; write run_dir/lm_eval.json."""
    out = Path(run_dir) / OUTPUT_NAME
    cfg = spec.eval.lm_eval
    tasks = resolve_tasks(spec, sources.data)  # fails on a bad toy name before the slow import
    t0 = time.perf_counter()
    if not tasks:  # lm-eval switched off for this study: record that, so the stage counts as done
        atomic_write_json(out, {"results": {}, "versions": {}, "n-shot": {}, "configs": {}, "tasks": []})
        return out
    import lm_eval
    from lm_eval.tasks import TaskManager

    # Toy tasks arrive as complete dicts and need no index; built-in names need lm-eval's (about 16 s).
    manager = TaskManager(include_defaults=any(isinstance(t, str) for t in tasks))
    lm = _make_lm(sources.model, Path(model_path), cfg.batch_size)
    with _keep_global_rng():
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            task_manager=manager,
            limit=cfg.limit,
            num_fewshot=cfg.num_fewshot,
            # Instruct models are scored on the prompts they would see; the toy model has no template.
            apply_chat_template=cfg.apply_chat_template,
            log_samples=False,
            **SEEDS,
        )
    if results is None:  # only on non-zero ranks of a distributed run, which this stage never starts
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    record = {
        "results": jsonable(results["results"]),
        "groups": jsonable(results.get("groups", {})),
        "versions": jsonable(results["versions"]),
        "n-shot": jsonable(results["n-shot"]),
        "n-samples": jsonable(results.get("n-samples", {})),
        "higher_is_better": jsonable(results.get("higher_is_better", {})),
        "configs": _configs(results["configs"], tasks),
        "lm_eval_version": metadata.version("lm_eval"),
        "tasks": list(cfg.tasks),
        "limit": cfg.limit,
        "num_fewshot": cfg.num_fewshot,
        "apply_chat_template": cfg.apply_chat_template,
        "seeds": SEEDS,
        "model_path": str(model_path),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    atomic_write_json(out, record)
    return out


def _number(value: Any) -> float | None:
    """lm-eval writes "N/A" where it has no stderr; anything non-numeric becomes None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def lm_eval_rows(path: Path) -> list[dict[str, Any]]:
    """Flatten lm_eval.json to one row per (task, metric, filter): value, stderr and the task's version."""
    data = read_json(Path(path))
    versions = data.get("versions", {})
    rows = []
    for task, metrics in data["results"].items():
        for key, value in metrics.items():
            metric, sep, filt = key.partition(",")
            if not sep or metric.endswith("_stderr"):  # "name", "alias", "sample_len" and the stderr twins
                continue
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "filter": filt,
                    "value": _number(value),
                    "stderr": _number(metrics.get(f"{metric}_stderr,{filt}")),
                    "version": versions.get(task),
                }
            )
    return rows


class LmEval(Stage):
    """lm_eval.json: lm-eval's results on the evaluated model (raw, with versions and task configs)."""

    name = "lm_eval"

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.run_dir / OUTPUT_NAME]

    def run(self, ctx: Context) -> None:
        run_lm_eval(ctx.spec, ctx.sources, ctx.run_dir, ctx.policy)
