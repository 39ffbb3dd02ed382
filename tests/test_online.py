"""Online training (OAIF): each batch sampled from the policy as it is, judged, paired, and trained on through
the same trainer and collator as offline pairs."""

from __future__ import annotations

import pytest
import torch

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl
from bench.pipeline import preflight, run_one
from bench.sources import select
from bench.sources.toy import world
from bench.specs import GenerationSpec
from bench.toyworld.process import gold_reward
from bench.train.online import OnlineCollator
from tests.helpers import tiny_overrides

ONLINE = ("onpolicy.enabled=true", "onpolicy.online=true", "onpolicy.judge=gold", "train.max_steps=2")


def test_online_dpo_trains_two_steps_on_pairs_judged_per_batch(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root, *ONLINE))
    run_dir = run_one(spec)
    info = read_json(run_dir / "train_info.json")
    batch = spec.train.batch_size
    # every prompt of a trained batch was sampled and judged (accelerate's loader collates one batch ahead)
    assert info["online"]["judged_prompts"] >= 2 * batch and info["online"]["malformed_verdicts"] == 0
    assert (
        info["online"]["pairs"] == info["online"]["judged_prompts"] - info["online"]["prompts_without_pair"]
    )
    log = [r for r in read_jsonl(run_dir / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2]
    assert log[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # the policy is its reference at step 1
    assert not (run_dir / "sampled.json").exists()  # no sample stage: pairs come per batch


def test_the_online_collator_samples_from_the_policy_and_orders_pairs_by_the_judge(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root))
    model, tok = select(spec).model.load(world(spec) / "reference")
    prompts = [
        tok(" review : plot", add_special_tokens=False)["input_ids"],
        tok(" review : chef")["input_ids"],
    ]
    got: list[list[dict]] = []

    def labeller(lists):  # the gold reward as the judge, best against worst
        got.append(lists)
        scores = [[gold_reward(c, 1.0) for c in item["completions"]] for item in lists]
        pairs = [
            (k, max(range(4), key=s.__getitem__), min(range(4), key=s.__getitem__))
            for k, s in enumerate(scores)
        ]
        return (
            [p for p in pairs if p[1] != p[2]],
            scores,
            {"prompts_without_pair": 0, "malformed_verdicts": 0},
        )

    gen = GenerationSpec("hf", 16, 1.0, 0, 1.0, 8)
    collator = OnlineCollator(lambda rows: {"rows": rows}, lambda: model, tok, labeller, 4, gen)
    torch.manual_seed(0)
    rows = collator([{"prompt_ids": p} for p in prompts])["rows"]
    assert len(got[0]) == 2 and all(len(item["completions"]) == 4 for item in got[0])
    for row in rows:
        assert row["score_chosen"] > row["score_rejected"]
        assert len(row["chosen_ids"]) <= 16 and row["prompt_ids"] in prompts
    assert collator.counts.prompts == 2 and collator.counts.pairs == len(rows)


def test_online_training_refuses_what_it_cannot_plumb(tiny_root) -> None:
    with pytest.raises(
        ConfigError, match=r"onpolicy.online=true and loss: loss=kto_unpaired trains on unpaired"
    ):
        preflight(load_spec(tiny_overrides(tiny_root, *ONLINE, "loss=kto_unpaired")))
    with pytest.raises(ConfigError, match=r"onpolicy.online=true and onpolicy.model: .*onpolicy.model=start"):
        preflight(load_spec(tiny_overrides(tiny_root, *ONLINE, "onpolicy.model=reference")))
