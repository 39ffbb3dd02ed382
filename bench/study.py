"""Studies: a YAML in sweeps/ that states a question, fixed settings and a grid, expanded into runs.

    study: toy_beta                   # results/<study>/
    question: "..."                   # what the study answers (shown in reports)
    fixed: [dataset=toy, ...]         # overrides shared by every run
    grid: {seed: [0, 1]}              # crossed with every variant's own grid
    variants:                         # per-variant grids: beta means something different per loss
      dpo: {loss.beta: [4, 1]}
      simpo: {loss.beta: [2], loss.gamma_beta_ratio: [0.5]}

Expansion validates every run (config, hyperparameters, bad data) before anything runs, and refuses two grid
points that would be the same experiment (the same run id).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError
from bench.records import read_json

if TYPE_CHECKING:
    from bench.config import RunSpec

STUDY_KEYS = {"study", "question", "source", "fixed", "grid", "variants"}


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    overrides: list[str]
    spec: RunSpec


def _value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _points(grid: dict[str, Any], where: str) -> list[list[str]]:
    """The cross product of a {key: [values]} grid as override lists, in the file's key order."""
    if not isinstance(grid, dict):
        raise ConfigError(f"{where} must be a mapping of key: [values]")
    keys = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    if any(not v for v in values):
        raise ConfigError(f"{where}: every key needs at least one value")
    return [
        [f"{k}={_value(x)}" for k, x in zip(keys, combo, strict=True)] for combo in itertools.product(*values)
    ]


def load_study(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        raise ConfigError(f"no study file {path}: study files live in sweeps/ (see sweeps/README.md)")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; a study file has {sorted(STUDY_KEYS)}")
    for key in ("study", "variants"):
        if not data.get(key):
            raise ConfigError(f"{path}: missing required key '{key}'")
    return data


def expand(path: Path, extra: list[str] | None = None) -> tuple[dict[str, Any], list[PlannedRun]]:
    """(the study file, its runs), every run composed and validated; `extra` overrides apply to all."""
    from bench.config import load_spec
    from bench.run import preflight

    data = load_study(path)
    fixed = [str(x) for x in data.get("fixed") or []]
    common = _points(data.get("grid") or {}, f"{path}: grid")
    runs: list[PlannedRun] = []
    seen: dict[str, list[str]] = {}
    for variant, grid in data["variants"].items():
        for point in _points(grid or {}, f"{path}: variants.{variant}"):
            for shared in common:
                overrides = [
                    *fixed,
                    f"loss={variant}",
                    *shared,
                    *point,
                    f"study={data['study']}",
                    *(extra or []),
                ]
                try:
                    spec = load_spec(overrides)
                    preflight(spec)
                except ConfigError as err:
                    raise ConfigError(f"{path}: run {' '.join(overrides)}: {err}") from err
                if spec.run_id in seen:
                    raise ConfigError(
                        f"{path}: {' '.join(overrides)} is the same experiment as "
                        f"{' '.join(seen[spec.run_id])} (run id {spec.run_id}): remove one of the grid points"
                    )
                seen[spec.run_id] = overrides
                runs.append(PlannedRun(variant, overrides, spec))
    return data, runs


def run_state(run_dir: Path) -> tuple[str, str, str]:
    """(state, stage, first line of the error) of a run folder; 'pending' when it has none yet."""
    if not (run_dir / "status.json").exists():
        return "pending", "", ""
    status = read_json(run_dir / "status.json")
    error = (status.get("error") or "").strip().splitlines()
    return status.get("state", "pending"), status.get("stage") or "", error[0] if error else ""


def status_table(study_dir: Path) -> str:
    """One line per run folder of a study: state, current stage, the error of a failed run."""
    lines = [f"{'run':52s} {'state':9s} {'stage':9s} error"]
    counts: dict[str, int] = {}
    for folder in sorted(p for p in study_dir.iterdir() if (p / "manifest.json").exists()):
        state, stage, error = run_state(folder)
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"{folder.name:52s} {state:9s} {stage:9s} {error}".rstrip())
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs")
    return "\n".join(lines)
