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


class _Composer:
    """Composes a study's runs. Each distinct base (every override but the plain grid values) goes through
    Hydra once; a grid value is then applied the way Hydra applies a value override to an existing key
    (parsed by Hydra's own override parser). A study of hundreds of runs then validates in seconds, not
    minutes, with the same configs (a test compares both ways). Anything else (a config group, +key, ~key,
    a key the extra overrides also set, a key not in the config) takes Hydra's full path."""

    def __init__(self, extra: list[str]) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.parser = OverridesParser.create()
        self.bases: dict[tuple[str, ...], Any] = {}
        self.extra_keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}

    def _value(self, item: str) -> tuple[str, Any] | None:
        from bench.config import GROUPS

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
        import copy

        from omegaconf import OmegaConf

        from bench.config import build_spec, compose

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


def _preflight_key(spec: RunSpec) -> str:
    """What preflight reads: runs that share these share its result (a grid over beta reads the data once)."""
    from bench.config import config_hash

    c = spec.config
    return config_hash(
        {k: c.get(k) for k in ("dataset", "model", "eval", "paths", "seed")}
        | {"accelerate": c["train"].get("accelerate_config")}
    )


def expand(
    path: Path, extra: list[str] | None = None, unavailable: list[str] | None = None
) -> tuple[dict[str, Any], list[PlannedRun]]:
    """(the study file, its runs), every run composed and validated; `extra` overrides apply to all. With
    `unavailable` (a dry run), what only this machine lacks is collected there (bench.run.preflight)."""
    from bench.run import preflight

    data = load_study(path)
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
                    key = _preflight_key(spec)
                    if key not in checked:
                        found: list[str] = []
                        preflight(spec, found if unavailable is not None else None)
                        checked.add(key)
                        if unavailable is not None:
                            unavailable += [m for m in found if m not in unavailable]
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


# Slurm job states after which the job will not run again (sacct's names); anything else is queued or running
SLURM_ENDED = {"CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def slurm_jobs(study_dir: Path) -> dict[str, str]:
    """run id -> Slurm job id of the latest submission that included the run (from study.json)."""
    path = study_dir / "study.json"
    jobs: dict[str, str] = {}
    if path.exists():
        for submission in read_json(path).get("submissions", []):
            jobs.update(submission.get("jobs") or {})
    return jobs


def _array_tasks(job_field: str) -> list[str]:
    """sacct's JobID to task ids: '12_3' -> ['12_3']; a pending range '12_[3-5%2]' -> 12_3, 12_4, 12_5."""
    if "_[" not in job_field:
        return [job_field]
    array, spec = job_field.split("_[", 1)
    tasks: list[str] = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        tasks += [f"{array}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return tasks


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job id (sacct), or {} when Slurm cannot be asked: it is only a hint."""
    import shutil
    import subprocess

    if not job_ids or shutil.which("sacct") is None:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    states: dict[str, str] = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        for task in _array_tasks(job.strip()):
            states[task] = state.split()[0] if state.strip() else ""  # "CANCELLED by 0" -> CANCELLED
    return states


def _process_gone(run_dir: Path) -> bool:
    """True when the run's last attempt was a process on this host that no longer exists."""
    import os
    import socket

    attempts = read_json(run_dir / "status.json").get("attempts") or []
    if not attempts or attempts[-1].get("host") != socket.gethostname() or attempts[-1].get("slurm_job"):
        return False
    try:
        os.kill(int(attempts[-1]["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def shown_state(run_dir: Path, state: str, slurm_state: str) -> str:
    """The run folder's state, corrected by what the folder cannot know: a job Slurm ended (cancelled, node
    failure) or requeued, and a local process that died without recording it."""
    if state in ("done", "failed"):
        return state
    if slurm_state in SLURM_ENDED:
        return slurm_state.lower()
    if state == "interrupted" and slurm_state in ("PENDING", "REQUEUED", "RUNNING"):
        return "requeued"
    if state == "running" and not slurm_state and _process_gone(run_dir):
        return "stopped"
    return state


def status_table(study_dir: Path) -> str:
    """One line per run of a study (its folders, and runs submitted but not started): state, current stage,
    Slurm's job and state, the error of a failed run."""
    jobs = slurm_jobs(study_dir)
    slurm = slurm_states(list(jobs.values()))
    lines = [f"{'run':52s} {'state':11s} {'stage':9s} {'job':22s} error"]
    counts: dict[str, int] = {}
    names = {p.name for p in study_dir.iterdir() if (p / "manifest.json").exists()} | set(jobs)
    for folder in (study_dir / name for name in sorted(names)):
        state, stage, error = run_state(folder)
        job = jobs.get(folder.name, "")
        state = shown_state(folder, state, slurm.get(job, ""))
        counts[state] = counts.get(state, 0) + 1
        job_text = f"{job} {slurm.get(job, '')}".strip()
        lines.append(f"{folder.name:52s} {state:11s} {stage:9s} {job_text:22s} {error}".rstrip())
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs")
    return "\n".join(lines)
