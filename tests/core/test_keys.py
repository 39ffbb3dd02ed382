"""Cache keys: every config leaf of every option of every group is classified, and each key changes exactly
when one of its inputs does."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from bench.config import compose, load_spec
from bench.core.keys import (
    CONFIG_INPUTS,
    EVAL_TARGET,
    KEYS,
    PREFLIGHT,
    REFERENCE,
    RUN,
    TOY_WORLD,
    classification,
    config_inputs,
    key_hash,
    leaves,
)
from bench.groups import GROUPS, options

# Options that need a value to compose (a required ??? key); the value does not change the leaves.
REQUIRED = {
    "model": {"hub": ["model.path=org/name"], "local": ["model.path=/m"]},
    "dataset": {"local": ["dataset.path=/d"]},
}


def _every_leaf() -> set[str]:
    found: set[str] = set()
    for group in GROUPS:
        for option in options(group):
            cfg = compose([f"{group}={option}", *REQUIRED.get(group, {}).get(option, [])])
            found |= set(leaves(OmegaConf.to_container(cfg, resolve=False)))  # type: ignore[arg-type]
    return found


def test_every_config_leaf_is_classified_for_every_key() -> None:
    """A new config key fails here until someone decides which cache keys it changes (bench/core/keys.py)."""
    unclassified = sorted(leaf for leaf in _every_leaf() if classification(leaf) is None)
    assert not unclassified, (
        f"classify {unclassified} in bench.core.keys.CONFIG_INPUTS: which of "
        f"{', '.join(k.name for k in KEYS)} does it change?"
    )


def test_the_table_names_only_known_keys_and_rows_that_exist() -> None:
    names = {k.name for k in KEYS}
    assert all(row <= names for row in CONFIG_INPUTS.values())
    every = _every_leaf()
    for row in CONFIG_INPUTS:  # no stale row for a key that was renamed or removed
        assert any(leaf == row or leaf.startswith(row + ".") for leaf in every), row


def test_an_unknown_leaf_counts_as_an_input_of_every_key() -> None:
    config = {"model": {"brand_new": 1}, "study": "x"}
    for key in KEYS:
        assert config_inputs(config, key) == {"model": {"brand_new": 1}}


@pytest.mark.parametrize(
    ("override", "changed", "unchanged"),
    [
        ("loss.beta=2", {RUN, EVAL_TARGET}, {REFERENCE, TOY_WORLD, PREFLIGHT}),
        ("train.learning_rate=0.01", {RUN}, {REFERENCE, TOY_WORLD}),
        ("seed=3", {RUN, REFERENCE, PREFLIGHT}, {TOY_WORLD}),
        ("dataset.world.judge_tau=0.2", {RUN, REFERENCE, TOY_WORLD}, set()),
        ("model.toy.hidden=32", {RUN, REFERENCE, TOY_WORLD}, set()),
        ("eval.generation.temperature=0.7", {RUN, REFERENCE}, {TOY_WORLD}),
        ("eval.generation.batch_size=7", set(), {RUN, REFERENCE, TOY_WORLD, PREFLIGHT}),
        ("train.save_steps=5", set(), {RUN, REFERENCE, TOY_WORLD, PREFLIGHT}),
        ("launcher=local", set(), {RUN, REFERENCE, TOY_WORLD, PREFLIGHT}),
        ("study=other", set(), {RUN, REFERENCE, TOY_WORLD, PREFLIGHT}),
        ("eval.lm_eval.tasks=[toy_mc]", {RUN, REFERENCE, PREFLIGHT}, {TOY_WORLD}),
    ],
)
def test_a_key_changes_exactly_with_its_inputs(override: str, changed: set, unchanged: set) -> None:
    base, other = load_spec([]).config, load_spec([override]).config
    for key in changed:
        assert key_hash(key, base) != key_hash(key, other), (key.name, override)
    for key in unchanged:
        assert key_hash(key, base) == key_hash(key, other), (key.name, override)
