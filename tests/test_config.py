"""Composition of every config option, run ids, and configuration errors that fail before compute."""

from __future__ import annotations

import itertools

import pytest
from omegaconf import OmegaConf

from bench.config import GROUPS, build_spec, load_spec, options
from bench.core.errors import ConfigError
from bench.core.keys import OPTIONAL_SECTIONS, RUN, changes, leaves, run_id, signature

# the toy world's models and datasets (conf/*/toy*.yaml): the toy model speaks only their vocabulary
TOY = tuple(sorted({n for g in ("model", "dataset") for n in options(g) if n.startswith("toy")}))
REQUIRED = {  # options with a required (???) key, and a value for it
    ("model", "local"): ["model.path=/models/sft"],
    ("model", "hub"): ["model.path=org/sft-model"],
    ("dataset", "local"): ["dataset.path=/data/prefs.jsonl"],
}


def _fitting(model: str, dataset: str) -> list[str]:
    return [
        f"model={model}",
        f"dataset={dataset}",
        *REQUIRED.get(("model", model), []),
        *REQUIRED.get(("dataset", dataset), []),
    ]


def test_every_option_of_every_group_composes() -> None:
    """Each option of each group composes and validates with the defaults of the others (the toy model only
    with toy datasets: it speaks only their vocabulary)."""
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"
        for name in options(group):
            extra = list(REQUIRED.get((group, name), []))
            if group == "model":
                extra += ["dataset=toy"]
            if group == "dataset" and name not in TOY:
                extra += _fitting("local", name)
            spec = load_spec([f"{group}={name}", *extra])
            assert spec.config["choices"][group] == name


def test_all_model_dataset_combinations_that_fit_compose() -> None:
    for model, dataset in itertools.product(options("model"), options("dataset")):
        if model in TOY and dataset not in TOY:
            with pytest.raises(ConfigError, match="toy world's vocabulary"):
                load_spec(_fitting(model, dataset))
            continue
        spec = load_spec(_fitting(model, dataset))
        assert spec.model.name == model and spec.dataset.name == dataset


def test_run_id_is_stable_readable_and_blind_to_excluded_keys() -> None:
    base = load_spec(["loss.beta=0.5"])
    assert base.run_id == load_spec(["loss.beta=0.5"]).run_id
    assert base.run_id.startswith("dpo-toy-b0.5-lr0.001-s0-")
    blind = load_spec(
        [
            "loss.beta=0.5",
            "study=other",
            "launcher=local",
            "paths.results=/elsewhere",
            "logging.level=DEBUG",
            "eval.generation.batch_size=7",
            "eval.lm_eval.batch_size=3",
            "eval.judge_batch_size=5",
        ]
    )
    assert blind.run_id == base.run_id
    assert load_spec(["loss.beta=1"]).run_id == load_spec(["loss.beta=1.0"]).run_id  # numbers by value
    for change in (
        ["loss.beta=1"],
        ["seed=1"],
        ["train.learning_rate=0.01"],
        ["eval.samples_per_prompt=2"],
        ["dataset.world.judge_lambda=0.1"],
        ["model.toy.hidden=32"],
    ):
        assert load_spec(["loss.beta=0.5", *change]).run_id != base.run_id, change


def test_signature_keeps_exactly_the_leaves_that_change_the_experiment() -> None:
    spec = load_spec([])
    sig = signature(spec.config)
    kept = set(leaves(sig))
    for leaf in leaves(spec.config):
        off = leaf.split(".")[0] in OPTIONAL_SECTIONS  # switched off: no input of any key
        assert (leaf in kept) == (changes(leaf, RUN) and not off), leaf
    assert {"loss", "train", "model"} <= set(sig) and not {"study", "launcher", "paths", "choices"} & set(sig)
    on = load_spec(["onpolicy.enabled=true", "round.index=1"])
    kept_on = set(leaves(signature(on.config)))
    assert {"onpolicy.judge", "onpolicy.rule", "round.index"} <= kept_on
    assert "onpolicy.part_size" not in kept_on


def test_a_run_without_sampled_pairs_or_rounds_keeps_the_id_it_had_before_they_existed() -> None:
    spec = load_spec(["loss.beta=0.5"])
    older = {k: v for k, v in spec.config.items() if k not in OPTIONAL_SECTIONS}
    assert signature(older) == signature(spec.config)
    assert run_id(older, "dpo", "toy") == spec.run_id
    assert build_spec(OmegaConf.create(older)).run_id == spec.run_id  # an old manifest's config still builds


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["loss=dpoo"], r"unknown loss option .dpoo.*Did you mean .dpo.*Available loss options: .*\bdpo\b"),
        (["model=nope"], r"Available model options: .*\blocal, .*\btoy, toy_tiny\b"),
        (["loss.beta=0"], "loss.beta=0.*beta must be > 0"),
        (["loss.beta=-1"], "loss.beta=-1"),
        (["train.learning_rate=0"], "train.learning_rate.*must be > 0"),
        (["train.learning_rate=-0.1"], "train.learning_rate.*must be > 0"),
        (["+loss.betta=1"], "unknown hyperparameter loss.betta.*Did you mean 'beta'"),
        (["train.batch_size=abc"], "train.batch_size.*must be a int"),
        (["+train.lerning_rate=1"], "unknown key 'train.lerning_rate'.*Did you mean 'learning_rate'"),
        (["train.nope=1"], "unknown key 'train.nope' \\(of train=default\\). Valid keys of train: "),
        (["model=toy", "model.toy=null"], "model.toy section"),
    ],
)
def test_bad_config_fails_with_key_and_fix(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_spec(overrides)


def test_missing_required_key_is_named() -> None:
    """A key left at ??? (mandatory) in a YAML fails with its dotted name and how to set it."""
    from omegaconf import OmegaConf

    from bench.config import build_spec, compose

    cfg = compose([])
    OmegaConf.update(cfg, "loss.beta", "???")
    with pytest.raises(ConfigError, match=r"missing required key 'loss.beta'.*set loss.beta="):
        build_spec(cfg)
