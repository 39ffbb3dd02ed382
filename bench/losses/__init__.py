"""Preference losses: one module per variant, named like its conf/loss/<name>.yaml.

`build_loss(name, params)` imports bench.losses.<name> and instantiates its `Loss` class with the YAML's
hyperparameters. The config group is the registry: there is no list of variants anywhere else.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from bench.core.errors import ConfigError, did_you_mean

from .base import DATA_SHAPES, ListStats, LossOutput, PreferenceLoss, SequenceStats, TokenStats

__all__ = [
    "DATA_SHAPES",
    "ConfigError",
    "ListStats",
    "LossOutput",
    "PreferenceLoss",
    "SequenceStats",
    "TokenStats",
    "build_loss",
]


def build_loss(name: str, params: dict[str, Any]) -> PreferenceLoss:
    try:
        module = importlib.import_module(f"bench.losses.{name}")
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"loss {name!r} has a conf/loss/{name}.yaml but no bench/losses/{name}.py defining `Loss`"
        ) from err
    cls = getattr(module, "Loss", None)
    if not (isinstance(cls, type) and issubclass(cls, PreferenceLoss)):
        raise ConfigError(f"bench/losses/{name}.py must define `Loss`, a PreferenceLoss dataclass")
    if cls.data_shape not in DATA_SHAPES:
        raise ConfigError(f"bench/losses/{name}.py: data_shape {cls.data_shape!r} is none of {DATA_SHAPES}")
    if cls.data_shape != "pairs" and (cls.needs_token_logps or cls.token_outputs or cls.moving_reference):
        # the per-token and moving-reference plumbing is written for a pair's two completions only
        raise ConfigError(
            f"bench/losses/{name}.py: data_shape {cls.data_shape!r} does not combine with per-token "
            "log-probs or a moving reference"
        )
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in params:
        if key not in valid:
            raise ConfigError(
                f"unknown hyperparameter loss.{key} for loss {name!r}.{did_you_mean(key, valid)} "
                f"Valid: {', '.join(valid) or 'none'}."
            )
    return cls(**params)
