"""A study's run folders as tidy pandas frames: one row per finished run, its per-prompt values, its
evaluations over training and its training log. Unfinished and failed runs are listed, never dropped
silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.keys import config_hash, signature
from bench.core.labels import hyperparameters, labels, short_names, varied
from bench.core.records import read_json, read_jsonl
from bench.core.runstate import run_state


@dataclass
class Study:
    name: str
    runs: pd.DataFrame  # a row per finished run: config, '<metric>' (all prompts), '<split>/<metric>'
    per_prompt: pd.DataFrame  # run_id, seed, prompt_id, split, one column per per-prompt metric
    # the same at each step evaluated over training (steps/step-N/per_prompt.jsonl), with a `step` column
    step_prompts: pd.DataFrame
    reference: dict[str, Any]  # the reference model's metrics (all prompts and splits)
    curves: pd.DataFrame  # run_id, step, metric, value (evaluation over training, with step 0 = reference)
    train_logs: pd.DataFrame  # run_id, step and TRL's logged values
    notes: list[str] = field(default_factory=list)  # runs not in the table, and why
    source: str | None = None  # the published comparison the study reproduces (study.json)
    question: str | None = None  # what the study asks (study.json)
    # columns of `runs` holding hyperparameters: every loss field of every variant, then every other key the
    # study varies (the seed aside); `runs["configuration"]` names each configuration by them
    hyperparameters: list[str] = field(default_factory=list)

    @property
    def shown_hyperparameters(self) -> list[str]:
        """The hyperparameter columns tables and plots show: the study's, and lr (always in a row)."""
        return [*self.hyperparameters, *(["lr"] if "lr" not in self.hyperparameters else [])]

    def with_reference(self) -> pd.DataFrame:
        """The runs and, when the study has one, the reference model's row (variant 'reference')."""
        if not self.reference:
            return self.runs
        return pd.concat([self.runs, pd.DataFrame([self.reference])], ignore_index=True)


def metric_columns(folder: Path) -> dict[str, Any]:
    """metrics.jsonl as columns: '<metric>' for all prompts, '<split>/<metric>' per split, '<..>_se'."""
    out: dict[str, Any] = {}
    for row in read_jsonl(folder / "metrics.jsonl"):
        name = f"{row['split']}/{row['metric']}" if row.get("split") else row["metric"]
        out[name] = row["value"]
        if row.get("stderr") is not None:
            out[f"{name}_se"] = row["stderr"]
        for side in ("ci_low", "ci_high"):
            if row.get(side) is not None:
                out[f"{name}_{side}"] = row[side]
    return out


def _config_key(cfg: dict[str, Any]) -> str:
    """What groups the seeds of one configuration: the run's experiment signature without its seed."""
    sig = signature(cfg)
    sig.pop("seed", None)
    return config_hash(sig)


def variant_name(manifest: dict[str, Any]) -> str:
    """What the report compares: the loss, or for a round of a chain the loss and its round ('dpo/round2'),
    so the report's tables, frontier and paired comparisons follow a chain round by round beside the offline
    runs; 'dpo/onpolicy' for sampled pairs outside rounds, 'dpo/online' for online training. Evaluations of
    existing models (bench evaluate) carry a label."""
    cfg = manifest["config"]
    if manifest.get("label"):
        return str(manifest["label"])
    name = str(cfg["choices"]["loss"])
    index = (cfg.get("round") or {}).get("index", 0)
    if index:
        return f"{name}/round{index}"
    onpolicy = cfg.get("onpolicy") or {}
    if onpolicy.get("enabled"):
        return f"{name}/online" if onpolicy.get("online") else f"{name}/onpolicy"
    return name


def _run_row(folder: Path) -> dict[str, Any]:
    manifest = read_json(folder / "manifest.json")
    cfg = manifest["config"]
    return {
        "_config": cfg,
        "variant": variant_name(manifest),
        "beta": cfg["loss"].get("beta"),
        "lr": cfg["train"]["learning_rate"],
        "seed": cfg["seed"],
        "dataset": cfg["choices"]["dataset"],
        "config_key": _config_key(cfg),
        "after": (cfg.get("round") or {}).get("after"),  # the previous round's run id (a chain of rounds)
        "run_id": folder.name,
        **metric_columns(folder),
    }


def _why_missing(folder: Path) -> str:
    state, stage, error = run_state(folder)
    where = f" at stage {stage}" if stage else ""
    return f"{folder.name}: {state}{where}" + (f": {error}" if error else "")


def collect_study(study_dir: Path) -> Study:
    rows, notes, prompts, step_prompts, curves, logs = [], [], [], [], [], []
    for folder in sorted(p for p in study_dir.iterdir() if (p / "manifest.json").exists()):
        if run_state(folder)[0] != "done":
            notes.append(_why_missing(folder))
            continue
        row = _run_row(folder)
        rows.append(row)
        for r in read_jsonl(folder / "per_prompt.jsonl") if (folder / "per_prompt.jsonl").exists() else []:
            prompts.append({"run_id": row["run_id"], "seed": row["seed"], **r})
        for path in sorted(folder.glob("steps/step-*/per_prompt.jsonl")):
            step = int(path.parent.name.removeprefix("step-"))
            step_prompts += [{"run_id": row["run_id"], "step": step, **r} for r in read_jsonl(path)]
        if (folder / "curve.jsonl").exists():
            curves += [{"run_id": row["run_id"], **r} for r in read_jsonl(folder / "curve.jsonl")]
        if (folder / "train_log.jsonl").exists():
            logs += [{"run_id": row["run_id"], **r} for r in read_jsonl(folder / "train_log.jsonl")]
    reference: dict[str, Any] = {}
    for folder in sorted((study_dir / "_reference").glob("*/metrics.jsonl")):
        reference = {"variant": "reference", "run_id": f"_reference/{folder.parent.name}"}
        reference |= metric_columns(folder.parent)
    columns = _name_configurations(rows)
    runs = pd.DataFrame(rows)
    if not runs.empty:
        runs = runs.sort_values(["variant", "beta", "lr", "seed"], na_position="first", kind="stable")
    manifest = read_json(study_dir / "study.json") if (study_dir / "study.json").exists() else {}
    return Study(
        name=study_dir.name,
        runs=runs.reset_index(drop=True),
        per_prompt=pd.DataFrame(prompts),
        step_prompts=pd.DataFrame(step_prompts),
        reference=reference,
        curves=pd.DataFrame(curves),
        train_logs=pd.DataFrame(logs),
        notes=notes,
        source=manifest.get("source"),
        question=manifest.get("question"),
        hyperparameters=columns,
    )


def _name_configurations(rows: list[dict[str, Any]]) -> list[str]:
    """Add to each run's row its hyperparameter columns and its configuration's label (bench.core.labels);
    return the hyperparameter column names in order. Consumes the rows' `_config`."""
    configs = [row.pop("_config") for row in rows]
    others = varied(configs)
    values = [hyperparameters(c, others) for c in configs]
    dotted = list(dict.fromkeys(k for v in values for k in v))
    names = short_names(dotted)
    named = labels(configs, [row["variant"] for row in rows])
    for row, value, label in zip(rows, values, named, strict=True):
        row.update({names[k]: v for k, v in value.items()})
        row["configuration"] = label
    return [names[k] for k in dotted]


def collect(study_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(one row per finished run plus the reference's row, notes on unfinished or failed runs)."""
    study = collect_study(study_dir)
    return study.with_reference(), study.notes
