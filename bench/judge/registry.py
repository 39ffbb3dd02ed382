"""Which judge a name means: one of ours (annotators/<name>_judge/) or one of AlpacaEval's annotator configs.

Our judges are folders under annotators/ (configs.yaml + prompt template), with a module bench/judge/<name>.py
whose `make_fn_completions(spec, sources)` supplies the judge as a Python callable (and optional `check(spec,
sources)` for preflight). AlpacaEval's are the folders of its `evaluators_configs` (e.g.
weighted_alpaca_eval_gpt4_turbo): they call the API their configs.yaml names. Both registries are folders;
there is no second list. Our names win on a clash (there is none in alpaca_eval 0.6.6).

Nothing here imports alpaca_eval (seconds, and it resets the root logger): its folder is found with importlib.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.core.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from bench.sources import Sources
    from bench.specs import RunSpec

ANNOTATORS_DIR = Path(__file__).parent / "annotators"
ANNOTATOR_SUFFIX = "_judge"  # judge "toy" <-> annotators/toy_judge/


@contextlib.contextmanager
def quiet_alpaca_eval_import() -> Iterator[None]:
    """Import alpaca_eval without its side effects on the process: it sets the root logger to INFO on import
    (annotators/base.py) and warns that pkg_resources is deprecated."""
    root = logging.getLogger()
    level = root.level
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            yield
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class Judge:
    """A resolved judge: its name, the annotator configs.yaml alpaca_eval gets, and whose it is."""

    name: str
    config: Path
    kind: Literal["ours", "alpaca_eval"]


def our_judges() -> list[str]:
    return sorted(
        p.parent.name.removesuffix(ANNOTATOR_SUFFIX)
        for p in ANNOTATORS_DIR.glob(f"*{ANNOTATOR_SUFFIX}/configs.yaml")
    )


@cache
def alpaca_eval_configs_dir() -> Path | None:
    """alpaca_eval's evaluators_configs folder, found without importing the package (None: not installed)."""
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "evaluators_configs"


def alpaca_eval_judges() -> list[str]:
    """AlpacaEval's annotator config names: its evaluators_configs folders that hold a configs.yaml."""
    folder = alpaca_eval_configs_dir()
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.parent.name for p in folder.glob("*/configs.yaml"))


def available_judges() -> list[str]:
    """Our judges, then AlpacaEval's annotator configs (each list sorted)."""
    ours = our_judges()
    return ours + [n for n in alpaca_eval_judges() if n not in ours]


def resolve_judge(name: str) -> Judge:
    """The judge called `name`, or a ConfigError naming ours, AlpacaEval's, and near matches."""
    if name in our_judges():
        return Judge(name, ANNOTATORS_DIR / f"{name}{ANNOTATOR_SUFFIX}" / "configs.yaml", "ours")
    if name in alpaca_eval_judges():
        folder = alpaca_eval_configs_dir()
        assert folder is not None
        return Judge(name, folder / name / "configs.yaml", "alpaca_eval")
    theirs = alpaca_eval_judges()
    hint = did_you_mean(name, our_judges() + theirs)
    examples = [n for n in ("weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_gpt4_turbo_fn") if n in theirs]
    raise ConfigError(
        f"eval.judge={name!r} is not a known judge.{hint} Our available judges: {', '.join(our_judges())} "
        f"(folders {ANNOTATORS_DIR}/<name>{ANNOTATOR_SUFFIX}/); AlpacaEval's annotator configs are accepted "
        f"too, by folder name ({len(theirs)} installed, e.g. {', '.join(examples) or 'none'}; "
        "bench.judge.available_judges() lists them all)"
    )


FnCompletions = Callable[..., dict[str, list[Any]]]


def fn_completions(judge: Judge, spec: RunSpec, sources: Sources) -> FnCompletions | None:
    """Our judge's Python callable (bench/judge/<name>.py), or None (AlpacaEval's configs name a decoder)."""
    if judge.kind != "ours" or importlib.util.find_spec(f"bench.judge.{judge.name}") is None:
        return None
    module = importlib.import_module(f"bench.judge.{judge.name}")
    fn: FnCompletions = module.make_fn_completions(spec, sources)
    return fn


def check_our_judge(judge: Judge, spec: RunSpec, sources: Sources) -> None:
    """Preflight of one of our judges: its module's `check(spec, sources)` if it has one (cheap: no weights
    loaded), and its callable can be built from the config."""
    if importlib.util.find_spec(f"bench.judge.{judge.name}") is None:
        return
    module = importlib.import_module(f"bench.judge.{judge.name}")
    if hasattr(module, "check"):
        module.check(spec, sources)
    module.make_fn_completions(spec, sources)
