"""Studies: a YAML in sweeps/ that states a question, fixed settings and a grid, expanded into runs.

    study: toy_beta                   # results/<study>/
    question: "..."                   # what the study answers (shown in reports)
    fixed: [dataset=toy, ...]         # overrides shared by every run
    grid: {seed: [0, 1]}              # crossed with every variant's own grid
    variants:                         # per-variant grids: beta means something different per loss
      dpo: {loss.beta: [4, 1]}
      simpo: {loss.beta: [2], loss.gamma_beta_ratio: [0.5]}
    rounds:                           # optional: iterative training, each grid point a chain of rounds
      count: 3                        # round r starts from round r-1's policy (bench.train.rounds)
      prompts_per_round: 256          # round r samples its pairs (onpolicy.*) on prompts [(r-1)n, rn)
      reference: previous             # the loss's reference from round 2 on: previous | original
      partitions: false               # true: sDPO, no sampling; round r trains on part r of the data
      overrides: [train.max_steps=50] # for every run of the chain
    (or a list of such chains, compared in one study; count: 0 is the offline run, no rounds)

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

STUDY_KEYS = {"study", "question", "source", "fixed", "grid", "variants", "rounds"}
ROUND_KEYS = {"count", "prompts_per_round", "reference", "partitions", "overrides"}
SHRUNK_PROMPTS_PER_ROUND = (
    8  # a shrunk study's rounds fit the stand-ins' 64 (tiny world) and 32 (chat) prompts
)


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    overrides: list[str]
    spec: RunSpec
    # the variant, its hyperparameters and every other key the study varies (bench.core.labels)
    label: str = ""
    after: str | None = None  # the run id of the previous round (a study's rounds), which must succeed first


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


def chains(rounds: Any, where: str, shrunk: bool) -> list[list[list[str]]]:
    """Each chain's per-round overrides (round.after is added per grid point, once the previous round's run
    id is known). `rounds` is one mapping or a list of them (chains compared in one study: offline training,
    one on-policy round, three iterative rounds ...); none: one chain of one plain run."""
    if not rounds:
        return [[[]]]
    return [_chain(c, where, shrunk) for c in (rounds if isinstance(rounds, list) else [rounds])]


def _chain(rounds: Any, where: str, shrunk: bool) -> list[list[str]]:
    if not isinstance(rounds, dict) or set(rounds) - ROUND_KEYS:
        raise ConfigError(f"{where}: each entry of rounds must be a mapping of {sorted(ROUND_KEYS)}")
    count, partitions = rounds.get("count"), bool(rounds.get("partitions", False))
    per_round, reference = rounds.get("prompts_per_round"), rounds.get("reference", "previous")
    extra = [str(x) for x in rounds.get("overrides") or []]
    if not isinstance(count, int) or count < 0:
        raise ConfigError(
            f"{where}: rounds.count must be an integer >= 0 (0: the data's own pairs), got {count!r}"
        )
    if count == 0:  # the offline baseline of a comparison: no rounds, no sampling
        return [extra]
    if not partitions and (not isinstance(per_round, int) or per_round < 1):
        raise ConfigError(
            f"{where}: rounds.prompts_per_round must be an integer >= 1 (each round samples its pairs on "
            f"that many fresh prompts), got {per_round!r}; or rounds.partitions: true (sDPO) to train on "
            "the data"
        )
    if shrunk and per_round:
        per_round = min(per_round, SHRUNK_PROMPTS_PER_ROUND)
    out = []
    for r in range(1, count + 1):
        items = [f"round.index={r}", f"round.reference={reference if r > 1 else 'original'}", *extra]
        if partitions:
            items += [f"round.partitions={count}", f"round.partition={r}"]
        else:
            assert isinstance(per_round, int)  # checked above
            start = (r - 1) * per_round
            items += [
                "onpolicy.enabled=true",
                f"onpolicy.prompts_start={start}",
                f"onpolicy.prompts_count={per_round}",
            ]
        out.append(items)
    return out


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
    planned_chains = chains(data.get("rounds"), str(path), shrunk is not None)
    composer = _Composer(extra)
    checked: set[str] = set()
    runs: list[PlannedRun] = []
    seen: dict[str, list[str]] = {}
    for variant, grid in data["variants"].items():
        for point in _points(grid or {}, f"{path}: variants.{variant}"):
            for shared, chain in itertools.product(common, planned_chains):
                previous: str | None = None  # each grid point is a chain of rounds (one run without rounds)
                for in_round in chain:
                    rounds = [*in_round, *([f"round.after={previous}"] if previous else [])]
                    before, after = [*fixed, f"loss={variant}"], [f"study={data['study']}", *extra]
                    overrides = [*before, *shared, *point, *rounds, *after]
                    try:
                        spec = composer.spec(before, [*shared, *point, *rounds], after)
                        if shrunk is not None:
                            small = shrink([*before, *shared, *point], spec)
                            shrunk.extend(small.replaced)
                            overrides = [*small.overrides, *rounds, f"study={data['study']}{SUFFIX}", *extra]
                            spec = build_spec(compose(overrides))
                        preflight_once(spec, checked, unavailable)
                    except ConfigError as err:
                        where = _blame(lines, variant, [*fixed, *shared, *point], str(err))
                        raise ConfigError(f"{path}:{where}: {err}") from err
                    if spec.run_id in seen:
                        raise ConfigError(
                            f"{path}: {' '.join(overrides)} is the same experiment as "
                            f"{' '.join(seen[spec.run_id])} (run id {spec.run_id}): remove one of the grid "
                            "points"
                        )
                    seen[spec.run_id] = overrides
                    runs.append(PlannedRun(variant, overrides, spec, after=previous))
                    previous = spec.run_id
    named = labels([r.spec.config for r in runs], [r.variant for r in runs], include_seed=True)
    if shrunk is not None:
        data = {**data, "study": f"{data['study']}{SUFFIX}"}
    return data, [replace(run, label=name) for run, name in zip(runs, named, strict=True)]
