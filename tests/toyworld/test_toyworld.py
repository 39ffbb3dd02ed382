"""The toy world keeps the promises its design makes (docs/toyworld.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_jsonl
from bench.sources.toy import world, world_dir
from bench.toyworld import process
from bench.toyworld.build import world_params
from bench.toyworld.process import Features, WorldParams
from tests.helpers import tiny_overrides


def test_judge_prefers_longer_equal_sentiment_text_and_gold_does_not() -> None:
    short = " good bad film the"  # sentiment 0, 4 words, all distinct
    long = " good bad film the great awful plot a"  # sentiment 0, 8 words, all distinct
    assert process.sentiment(short) == process.sentiment(long) == 0
    p_long = process.judge_prob(short, long, lam=0.3, tau=0.1)
    # twice the length is lambda * log 2 / tau = 2.08 logits in the judge's favour: P = 8/9
    assert p_long > 0.85
    assert math.isclose(p_long, 1 / (1 + math.exp(-0.3 * math.log(2) / 0.1)))
    assert process.gold_reward(short, 1.0) == process.gold_reward(long, 1.0) == 0.0


def test_gold_reward_penalises_repetition_and_judge_does_not() -> None:
    varied = " good great lovely superb"
    repeated = " good good good good"
    assert process.gold_reward(varied, 1.0) == 1.0
    assert process.gold_reward(repeated, 1.0) == 0.25  # 1 - 1 * (1 - 1/4)
    assert process.gold_reward(repeated, 3.0) < process.gold_reward(repeated, 1.0)
    assert process.judge_score(repeated, 0.3) == process.judge_score(varied, 0.3)


def test_the_over_optimisation_judge_misreads_one_word_the_gold_reward_counts_as_negative() -> None:
    plain, hacked = " good film the", " good film cheap"
    hack = ("cheap", 8.0)
    assert process.gold_reward(hacked, 1.0) < process.gold_reward(plain, 1.0)  # gold: 'cheap' is negative
    # the judge: -1/3 for the negative word, +8/3 for the misreading
    assert math.isclose(process.judge_score(hacked, 0.3, hack) - process.judge_score(plain, 0.3, hack), 7 / 3)
    assert process.judge_score(hacked, 0.3) < process.judge_score(
        plain, 0.3
    )  # the default judge reads it right
    assert process.judge_prob(plain, hacked, 0.3, 0.1, hack) > 0.99


def test_the_over_optimisation_world_differs_only_in_its_judge_and_bad_settings_fail(tiny_root) -> None:
    default = load_spec(tiny_overrides(tiny_root))
    overrides = [o if o != "dataset=toy_tiny" else "dataset=toy_overopt" for o in tiny_overrides(tiny_root)]
    overopt = load_spec(overrides)  # the key only: nothing is built
    raw = dict(overopt.dataset.world)
    assert raw.pop("judge_hack_word") == "cheap" and raw.pop("judge_hack_bonus") > 0
    assert world_dir(default) != world_dir(overopt)
    # the default world's settings, and so its cache key and every run id, are unchanged: no new keys
    assert "judge_hack_word" not in default.dataset.world
    with pytest.raises(ConfigError, match="judge_hack_word a word of the toy vocabulary"):
        world_params({"judge_hack_word": "marvellous", "judge_hack_bonus": 2.0})
    with pytest.raises(ConfigError, match="judge_hack_bonus must be >= 0"):
        world_params({"judge_hack_word": "cheap", "judge_hack_bonus": -1.0})


def test_prompt_probabilities_follow_the_additive_features() -> None:
    params = WorldParams()
    feats = Features(params)
    topics = ["film", "plot", "actor"]
    p, q = feats.class_probs(topics)
    expected_p = 0.25 + 0.15 * float(np.clip(2 * np.mean([feats.a[t] for t in topics]), -1, 1))
    assert math.isclose(p, expected_p) and 0.1 <= p <= 0.4 and 0.1 <= q <= 0.4


def test_world_is_disjoint_deterministic_and_complete(tiny_root, tmp_path) -> None:
    spec = load_spec(tiny_overrides(tiny_root))
    folder = world(spec)
    heldout = {
        frozenset(process.topics_of(r["prompt"])) for r in read_jsonl(folder / "heldout_prompts.jsonl")
    }
    train = {frozenset(process.topics_of(r["prompt"])) for r in read_jsonl(folder / "pairs.jsonl")}
    mc = {frozenset(process.topics_of(r["prompt"])) for r in read_jsonl(folder / "tasks" / "toy_mc.jsonl")}
    assert heldout and train and not (heldout & train) and not (mc & train)
    for name in ("world.json", "reference/config.json", "reference/tokenizer.json", "tasks/toy_nll.jsonl"):
        assert (folder / name).exists(), name

    # Built again elsewhere from the same config: byte-identical data and identical weights.
    again = load_spec(tiny_overrides(tmp_path))
    other = world(again)
    assert other.name == folder.name  # the cache key is the config hash, not the path
    for name in ("pairs.jsonl", "heldout_prompts.jsonl", "tasks/toy_nll.jsonl", "tasks/toy_mc.jsonl"):
        assert (other / name).read_bytes() == (folder / name).read_bytes(), name
    from safetensors.torch import load_file

    a, b = (
        load_file(folder / "reference" / "model.safetensors"),
        load_file(other / "reference" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_world_cache_key_follows_the_world_config(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root))
    assert world_dir(spec) != world_dir(load_spec(tiny_overrides(tiny_root, "dataset.world.judge_tau=0.2")))
    assert world_dir(spec) != world_dir(load_spec(tiny_overrides(tiny_root, "model.toy.hidden=16")))
    assert world_dir(spec) == world_dir(load_spec(tiny_overrides(tiny_root, "seed=3", "loss.beta=2")))


def test_reference_model_masks_impossible_tokens(tiny_root) -> None:
    import torch

    from bench.sources.loading import load_causal_lm
    from bench.toyworld.vocab import NEVER_GENERATED, WORD_TO_ID

    model, tok = load_causal_lm(world(load_spec(tiny_overrides(tiny_root))) / "reference")
    enc = tok(["review : film plot"], return_tensors="pt")
    probs = model(**enc).logits[0, -1].softmax(-1)
    masked = [WORD_TO_ID[w] for w in NEVER_GENERATED]
    assert probs[masked].sum() < 1e-30
    assert not model.lm_head.bias.requires_grad and torch.count_nonzero(model.lm_head.bias) == len(masked)


def test_world_diagnostics_are_recorded(tiny_root) -> None:
    summary = json.loads((world(load_spec(tiny_overrides(tiny_root))) / "world.json").read_text())
    assert summary["timings"]["total_s"] > 0
    assert 0 <= summary["diagnostics"]["judge_favours_longer"] <= 1
