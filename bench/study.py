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

import copy
import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bench.config import GROUPS, build_spec, compose
from bench.core.errors import ConfigError
from bench.core.labels import labels
from bench.pipeline import preflight_once
from bench.shrink import SUFFIX, shrink
from bench.specs import RunSpec

STUDY_KEYS = {"study", "question", "source", "fixed", "grid", "variants"}


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    overrides: list[str]
    spec: RunSpec
    # the variant, its hyperparameters and every other key the study varies (bench.core.labels)
    label: str = ""


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


def _first(grid: dict[str, Any]) -> dict[str, Any]:
    """A grid cut to its first value of every key (a shrunk study's one point)."""
    if not isinstance(grid, dict):
        return grid
    return {k: (v[:1] if isinstance(v, list) else v) for k, v in grid.items()}


def _source_lines(path: Path) -> dict[tuple[str, str], int]:
    """The 1-based line of each key of `grid` and of each variant's grid, of each variant and of each `fixed`
    item, from the YAML's nodes: ("grid", key), ("variants.<v>", key), ("variants", v), ("fixed", item)."""
    out: dict[tuple[str, str], int] = {}
    root = yaml.compose(path.read_text())
    if not isinstance(root, yaml.MappingNode):
        return out
    for key_node, value in root.value:
        section = key_node.value
        if section == "fixed" and isinstance(value, yaml.SequenceNode):
            out |= {("fixed", str(item.value)): item.start_mark.line + 1 for item in value.value}
        elif section == "grid" and isinstance(value, yaml.MappingNode):
            out |= {("grid", k.value): k.start_mark.line + 1 for k, _ in value.value}
        elif section == "variants" and isinstance(value, yaml.MappingNode):
            for variant_node, grid in value.value:
                out[("variants", variant_node.value)] = variant_node.start_mark.line + 1
                if isinstance(grid, yaml.MappingNode):
                    out |= {
                        (f"variants.{variant_node.value}", k.value): k.start_mark.line + 1
                        for k, _ in grid.value
                    }
    return out


def _blame(lines: dict[tuple[str, str], int], variant: str, overrides: list[str], message: str) -> str:
    """'<line>: <override>' of the study file entry a run's error is about: the override whose key the error
    names (grid, variant grid or fixed), else the variant's own line."""
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key and (f"'{key}" in message or f"{key}=" in message):
            line = (
                lines.get((f"variants.{variant}", key))
                or lines.get(("grid", key))
                or lines.get(("fixed", item))
            )
            if line:
                return f"{line}: {item} (variant {variant})"
    return f"{lines.get(('variants', variant), 1)}: variant {variant} ({' '.join(overrides)})"


def load_study(path: Path) -> dict[str, Any]:
    path = path.absolute()  # messages name the study file absolutely

    if not path.exists():
        raise ConfigError(
            f"no study file {path.resolve()}: study files live in sweeps/ (see sweeps/README.md)"
        )
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; a study file has {sorted(STUDY_KEYS)}")
    for key in ("study", "variants"):
        if not data.get(key):
            raise ConfigError(f"{path}: missing required key '{key}'")
    return data


class _Composer:
    """Composes a study's runs. Each distinct base (every override but the plain grid values) goes through
    Hydra once; a grid value is then applied the way Hydra applies a value override to an existing key
    (parsed by Hydra's own override parser). A study of hundreds of runs then validates in seconds, not
    minutes, with the same configs (a test compares both ways). Anything else (a config group, +key, ~key,
    a key the extra overrides also set, a key not in the config) takes Hydra's full path."""

    def __init__(self, extra: list[str]) -> None:
        self.parser = OverridesParser.create()
        self.bases: dict[tuple[str, ...], Any] = {}
        self.extra_keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}

    def _value(self, item: str) -> tuple[str, Any] | None:
        override = self.parser.parse_override(item)
        key = override.key_or_group
        if (
            override.is_sweep_override()
            or override.is_add()
            or override.is_delete()
            or override.is_force_add()
        ):
            return None
        if key in GROUPS or key in self.extra_keys or "@" in key:
            return None
        return key, override.value()

    def spec(self, before: list[str], grid: list[str], after: list[str]) -> RunSpec:
        values: list[tuple[str, Any]] = []
        rest: list[str] = []
        for item in grid:
            parsed = self._value(item)
            if parsed:
                values.append(parsed)
            else:
                rest.append(item)
        base = tuple([*before, *rest, *after])
        if base not in self.bases:
            self.bases[base] = compose(list(base))
        cfg = copy.deepcopy(self.bases[base])
        missing = object()
        if any(OmegaConf.select(cfg, key, default=missing) is missing for key, _ in values):
            return build_spec(compose([*before, *grid, *after]))  # Hydra names the unknown key
        for key, value in values:
            OmegaConf.update(cfg, key, value, merge=False)
        return build_spec(cfg)


def expand(
    path: Path,
    extra: list[str] | None = None,
    unavailable: list[str] | None = None,
    shrunk: list[str] | None = None,
) -> tuple[dict[str, Any], list[PlannedRun]]:
    """(the study file, its runs), every run composed and validated; `extra` overrides apply to all. With
    `unavailable` (a dry run), what only this machine lacks is collected there (bench.pipeline.preflight).
    With `shrunk` (a list), the study is shrunk (bench.shrink): each variant's first grid point on a tiny
    stand-in, in results/<study>_shrunk/; the study overrides it replaced are collected there."""
    path = path.absolute()
    data = load_study(path)
    if shrunk is not None:
        data = {**data, "grid": _first(data.get("grid") or {})}
        data["variants"] = {v: _first(g or {}) for v, g in data["variants"].items()}
    lines = _source_lines(path)
    extra = list(extra or [])
    fixed = [str(x) for x in data.get("fixed") or []]
    common = _points(data.get("grid") or {}, f"{path}: grid")
    composer = _Composer(extra)
    checked: set[str] = set()
    runs: list[PlannedRun] = []
    seen: dict[str, list[str]] = {}
    for variant, grid in data["variants"].items():
        for point in _points(grid or {}, f"{path}: variants.{variant}"):
            for shared in common:
                before, after = [*fixed, f"loss={variant}"], [f"study={data['study']}", *extra]
                overrides = [*before, *shared, *point, *after]
                try:
                    spec = composer.spec(before, [*shared, *point], after)
                    if shrunk is not None:
                        small = shrink([*before, *shared, *point], spec)
                        shrunk.extend(small.replaced)
                        overrides = [*small.overrides, f"study={data['study']}{SUFFIX}", *extra]
                        spec = build_spec(compose(overrides))
                    preflight_once(spec, checked, unavailable)
                except ConfigError as err:
                    where = _blame(lines, variant, [*fixed, *shared, *point], str(err))
                    raise ConfigError(f"{path}:{where}: {err}") from err
                if spec.run_id in seen:
                    raise ConfigError(
                        f"{path}: {' '.join(overrides)} is the same experiment as "
                        f"{' '.join(seen[spec.run_id])} (run id {spec.run_id}): remove one of the grid points"
                    )
                seen[spec.run_id] = overrides
                runs.append(PlannedRun(variant, overrides, spec))
    named = labels([r.spec.config for r in runs], [r.variant for r in runs], include_seed=True)
    if shrunk is not None:
        data = {**data, "study": f"{data['study']}{SUFFIX}"}
    return data, [replace(run, label=name) for run, name in zip(runs, named, strict=True)]
