"""Rows of other shapes (ranked lists, UltraFeedback's scored responses, unpaired feedback, gold responses)
through the real trainer, on a tiny text model with a chat template: the more completions of a list are
tokenised, collated, scored and cached exactly as pairs are; each shape trains; bad rows of each shape stop
the run before any model loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl
from bench.losses import build_loss
from bench.pipeline import check_variant, run_one
from bench.sources import select
from bench.train.fit import run_train
from bench.train.more import more_stats, trainer_rows
from bench.train.rows import variant_rows
from tests.helpers import local_overrides, make_text_model

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
USER = {"role": "user", "content": "Name a colour."}


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_text_model(tmp_path_factory.mktemp("text_model"))


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def list_rows(ragged: bool = True) -> list[dict[str, Any]]:
    """Chat lists of 4 scored completions (one of 3 per fourth row when ragged), scores out of order."""
    rows = []
    for i, c in enumerate(COLOURS * 2):
        completions = [f"{c.title()}.", "I like trains.", f"Maybe {c}?", "No."]
        scores = [3.0, 1.0, 2.0, 0.0]
        if ragged and i % 4 == 0:
            completions, scores = completions[:3], scores[:3]
        rows.append({"prompt": [USER], "completions": [_assistant(t) for t in completions], "scores": scores})
    return rows


def _overrides(tmp_path: Path, model: Path, data: Path, *extra: str) -> list[str]:
    return local_overrides(tmp_path, model, data, "train.batch_size=4", "train.max_steps=2", *extra)


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _trainer(spec: Any, rows: list[dict[str, Any]], loss: str, params: dict[str, Any]) -> Any:
    """Our VariantTrainer on `rows` (already in the loss's shape), reference statistics precomputed."""
    from datasets import Dataset
    from trl import DPOConfig

    from bench.train.trainer import VariantTrainer

    variant = build_loss(loss, params)
    model, tokenizer = select(spec).model.load(spec.model.path)
    args = DPOConfig(
        output_dir=str(spec.run_dir() / "t"),
        per_device_train_batch_size=4,
        use_cpu=True,
        bf16=False,
        report_to=[],
        disable_tqdm=True,
        precompute_ref_log_probs=True,  # as bench.train.fit: the hook gives reference-free variants none
        activation_checkpointing=False,
    )
    return VariantTrainer(
        model=model,
        ref_model=None,
        variant=variant,
        refstats={"identity": "shapes-test", "cache_dir": str(spec.run_dir() / "cache")},
        args=args,
        train_dataset=Dataset.from_list(trainer_rows(rows, variant.data_shape)),
        processing_class=tokenizer,
    )


def test_more_completions_are_scored_as_pairs_of_the_same_prompt(text_model: Path, tmp_path: Path) -> None:
    """A list's 3rd and 4th completions, through the more-completion plumbing, get exactly the log-probs
    (policy and cached reference) and token counts that the same completions get as an ordinary pair."""
    spec = load_spec(_overrides(tmp_path, text_model, _write(tmp_path / "l.jsonl", list_rows(ragged=False))))
    rows = variant_rows(spec, build_loss("lipo", {}), select(spec).data)  # lipo keeps the scores
    ours = _trainer(spec, rows, "lipo", {})
    as_pairs = [
        {"prompt": r["prompt"], "chosen": r["completions"][2], "rejected": r["completions"][3]} for r in rows
    ]
    dpo = _trainer(spec, as_pairs, "dpo", {})
    dpo.model.load_state_dict(ours.model.state_dict())
    batch = ours.data_collator([dict(ours.train_dataset[i]) for i in range(4)])
    pair_batch = dpo.data_collator([dict(dpo.train_dataset[i]) for i in range(4)])
    with torch.no_grad():
        more = more_stats(ours._sequence_logps, ours.model, batch)
        logps, tokens = dpo._sequence_logps(dpo.model, pair_batch)
    assert more is not None and more.ref_logps is not None and more.scores is not None
    torch.testing.assert_close(more.logps, torch.stack(logps.chunk(2), 1))
    torch.testing.assert_close(more.tokens, torch.stack(tokens.chunk(2), 1).to(more.tokens.dtype))
    ref = torch.stack([pair_batch["ref_chosen_logps"], pair_batch["ref_rejected_logps"]], 1)
    torch.testing.assert_close(more.ref_logps, ref.to(more.ref_logps.dtype))
    assert more.mask.eq(1).all()
    assert more.scores[0].tolist() == [3.0, 2.0, 1.0, 0.0]  # rank order: the file's scores sorted


@pytest.mark.parametrize(("loss", "extra"), [("plackett_luce", []), ("lipo", ["loss.beta=0.5"])])
def test_list_variants_train_on_ragged_lists(
    text_model: Path, tmp_path: Path, loss: str, extra: list[str]
) -> None:
    data = _write(tmp_path / "lists.jsonl", list_rows())
    spec = load_spec(_overrides(tmp_path, text_model, data, f"loss={loss}", *extra))
    run_train(spec, select(spec), spec.run_dir())
    log = [r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 and r["grad_norm"] > 0 for r in log)
    info = read_json(spec.run_dir() / "train_info.json")["reference_logps"]
    # one extra pair of completions per row (the 3rd and 4th, or the 3rd and a masked copy), one cache entry
    assert "more0_key" in info and "more1_key" not in info


def test_ultrafeedback_rows_train_as_lists_and_as_scored_pairs(text_model: Path, tmp_path: Path) -> None:
    raw = [
        {
            "instruction": f"Name colour {i}.",
            "completions": [
                {"response": f"{c.title()}.", "overall_score": 8.5},
                {"response": "Trains.", "overall_score": 2.0},
                {"response": f"Light {c}.", "overall_score": 6.0},
                {"response": "No idea.", "overall_score": 4.0},
            ],
        }
        for i, c in enumerate(COLOURS)
    ]
    data = _write(tmp_path / "uf.jsonl", raw)
    spec = load_spec(_overrides(tmp_path, text_model, data, "loss=odpo"))
    pairs = variant_rows(spec, build_loss("odpo", {}), select(spec).data)
    assert pairs[0]["chosen"] == _assistant("Red.") and pairs[0]["rejected"] == _assistant("Trains.")
    assert (pairs[0]["score_chosen"], pairs[0]["score_rejected"]) == (8.5, 2.0)
    lists = variant_rows(spec, build_loss("lipo", {}), select(spec).data)
    assert lists[0]["scores"] == [8.5, 6.0, 4.0, 2.0]
    spec = load_spec(
        _overrides(tmp_path, text_model, data, "loss=lipo", "dataset.fields.score=overall_score")
    )
    run_train(spec, select(spec), spec.run_dir())
    assert len([r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]) == 2


def test_unpaired_rows_train_and_cannot_feed_a_pairwise_loss(text_model: Path, tmp_path: Path) -> None:
    rows = [
        {"prompt": [USER], "completion": _assistant(t), "label": good}
        for c in COLOURS
        for t, good in ((f"{c.title()}.", True), (f"I like {c} trains.", False))
    ]
    data = _write(tmp_path / "unpaired.jsonl", rows)
    spec = load_spec(_overrides(tmp_path, text_model, data, "loss=kto_unpaired"))
    run_train(spec, select(spec), spec.run_dir())
    log = [r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert len(log) == 2 and all(r["grad_norm"] > 0 for r in log)
    dpo = load_spec(_overrides(tmp_path, text_model, data, "loss=dpo"))
    with pytest.raises(
        ConfigError, match=r"unpaired rows .* cannot make preference pairs.*loss=kto_unpaired"
    ):
        check_variant(dpo, select(dpo))  # preflight's check of the data against the variant


def test_gold_rows_train_tpo_and_pairs_without_gold_are_refused(text_model: Path, tmp_path: Path) -> None:
    rows = [
        {
            "prompt": "Name a colour.",
            "chosen": f"{c.title()}.",
            "rejected": "Trains.",
            "reference": f"{c.title()}!",
        }
        for c in COLOURS
    ]
    data = _write(tmp_path / "gold.jsonl", rows)
    spec = load_spec(_overrides(tmp_path, text_model, data, "loss=tpo", "dataset.fields.gold=reference"))
    run_train(spec, select(spec), spec.run_dir())
    assert len([r for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]) == 2
    no_gold = load_spec(_overrides(tmp_path, text_model, data, "loss=tpo"))  # the column is not mapped
    with pytest.raises(ConfigError, match=r"no gold response in rows 1, 2, .*dataset.fields.gold=<column>"):
        check_variant(no_gold, select(no_gold))


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        ("list", {"prompt": "p", "completions": ["a"]}, r"at least 2 completions, got 1"),
        ("list", {"prompt": "p", "completions": ["a", "a"]}, r"the same completion twice"),
        ("list", {"prompt": "p", "completions": ["a", "b"], "scores": [1]}, r"'scores' must be a list of 2"),
        (
            "list",
            {"prompt": "p", "completions": ["a", "b"], "scores": [1, "x"]},
            r"'scores\[1\]' must be a finite",
        ),
        ("list", {"prompt": "p", "completions": "a b"}, r"non-list field 'completions'"),
        ("ultrafeedback", {"instruction": "", "completions": []}, r"missing or empty 'instruction'"),
        (
            "ultrafeedback",
            {"instruction": "i", "completions": [{"text": "a"}]},
            r"completions\[0\] must be an object",
        ),
        (
            "ultrafeedback",
            {"instruction": "i", "completions": [{"response": "a"}, {"response": "b"}]},
            r"completions\[0\].overall_score must be a finite number",
        ),
        ("unpaired", {"prompt": "p", "completion": "c", "label": "yes"}, r"'label' must be true .* or false"),
        (
            "unpaired",
            {"prompt": "p", "completion": " ", "label": True},
            r"'completion' has an empty completion",
        ),
    ],
)
def test_malformed_rows_of_each_shape_are_reported_with_their_line(
    text_model: Path, tmp_path: Path, fmt: str, row: dict[str, Any], message: str
) -> None:
    good = {
        "list": {"prompt": "p", "completions": ["x", "y"], "scores": [1, 0]},
        "ultrafeedback": {"instruction": "i", "completions": [{"response": "x", "overall_score": 1}]},
        "unpaired": {"prompt": "p", "completion": "c", "label": True},
    }[fmt]
    if fmt == "ultrafeedback":
        good["completions"].append({"response": "y", "overall_score": 0})
    data = _write(tmp_path / "bad.jsonl", [good, good, row])
    spec = load_spec(_overrides(tmp_path, text_model, data, f"dataset.format={fmt}"))
    with pytest.raises(ConfigError, match=rf"1 bad row\(s\) of 3[\s\S]*row 3: [^\n]*{message}"):
        run_one(spec)
    assert not spec.checkpoint_dir().exists()
