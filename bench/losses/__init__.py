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


def _check_declarations(name: str, cls: type[PreferenceLoss]) -> None:
    """Declarations whose plumbing does not combine, refused when the variant is built (before compute)."""
    clashes = []
    if cls.data_shape != "pairs" and (
        cls.needs_token_logps or cls.token_outputs or cls.live_reference() or cls.needs_kl_pairs
    ):  # the per-token, live-reference and KL-pair plumbing is written for a pair's two completions
        clashes.append(f"data_shape {cls.data_shape!r} with per-token, KL-pair or live-reference needs")
    if cls.needs_position_kl and (cls.needs_token_logps or cls.token_outputs):
        clashes.append("needs_position_kl (full logits, no fused head) with per-token fused-head outputs")
    if cls.live_reference() and cls.needs_kl_pairs:
        clashes.append("a live reference with needs_kl_pairs (KL pairs' reference log-probs are cached)")
    if clashes:
        raise ConfigError(f"bench/losses/{name}.py declares what does not combine: {'; '.join(clashes)}")


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
    _check_declarations(name, cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in params:
        if key not in valid:
            raise ConfigError(
                f"unknown hyperparameter loss.{key} for loss {name!r}.{did_you_mean(key, valid)} "
                f"Valid: {', '.join(valid) or 'none'}."
            )
    return cls(**params)
