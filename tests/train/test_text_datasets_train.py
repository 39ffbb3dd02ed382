"""Training on preference files in chat and plain formats with a tiny random text model saved here (with a
chat template): the same TRL plumbing as the toy world, the chat template applied by TRL; bad rows stop the
run before any model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl
from bench.pipeline import run_one
from bench.sources import select
from bench.train.fit import run_train
from tests.helpers import local_overrides, make_text_model

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer Llama with a byte-level BPE tokenizer and a chat template (tests.helpers.make_text_model)."""
    return make_text_model(tmp_path_factory.mktemp("text_model"))


def _rows(kind: str) -> list[dict[str, object]]:
    user = {"role": "user", "content": "Name a colour."}
    rows: list[dict[str, object]] = []
    for c in COLOURS * 2:
        if kind == "chat":
            rows.append({"chosen": [user, {"role": "assistant", "content": f"{c.title()}."}],
                         "rejected": [user, {"role": "assistant", "content": "I like trains."}]})  # fmt: skip
        else:
            rows.append({"prompt": "Name a colour.", "chosen": f"{c.title()}.", "rejected": "I like trains."})
    return rows


def _overrides(tmp_path: Path, model: Path, data: Path, *extra: str) -> list[str]:
    return local_overrides(tmp_path, model, data, *extra)


@pytest.mark.parametrize("kind", ["chat", "plain"])
def test_trains_on_a_local_preference_file(text_model: Path, tmp_path: Path, kind: str) -> None:
    data = tmp_path / f"prefs.{'jsonl' if kind == 'chat' else 'json'}"
    rows = _rows(kind)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) if kind == "chat" else json.dumps(rows))
    spec = load_spec(_overrides(tmp_path, text_model, data, "train.batch_size=4", "loss.beta=0.5"))
    run_train(spec, select(spec), spec.run_dir())
    losses = [r["loss"] for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)
    assert (spec.checkpoint_dir() / "config.json").exists()
    assert read_json(spec.run_dir() / "train_info.json")["reference_logps"]["pairs"] == len(rows)


def test_bad_rows_stop_the_run_before_any_model_is_loaded(text_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    rows = _rows("chat")
    rows[3] = {"chosen": rows[3]["chosen"], "rejected": rows[3]["chosen"]}  # identical
    del rows[5]["rejected"]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = load_spec(_overrides(tmp_path, text_model, data))
    # numbered as the file's lines: rows[3] is line 4
    with pytest.raises(ConfigError, match=r"2 bad row\(s\) of 16[\s\S]*row 4: [\s\S]*row 6: missing field"):
        run_one(spec)
    assert not spec.checkpoint_dir().exists() and not (spec.run_dir() / "status.json").exists()


def test_pairs_longer_than_max_length_are_counted_and_refused_above_a_tenth(
    text_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TRL drops pairs whose prompt fills train.max_length and cuts the completions of the rest, silently:
    the count is a warning, and above 10% of the pairs an error before training."""
    rows = _rows("plain")
    long = "Red, " * 40 + "and blue."
    data = tmp_path / "prefs.json"
    data.write_text(json.dumps([{**r, "chosen": long} if i < 1 else r for i, r in enumerate(rows)]))
    spec = load_spec(_overrides(tmp_path, text_model, data, "train.max_length=48"))
    with caplog.at_level("WARNING"):
        run_train(spec, select(spec), spec.run_dir())
    assert "1 of 16 training pairs (6.2%) are longer than train.max_length=48 tokens" in caplog.text
    data.write_text(json.dumps([{**r, "chosen": long} if i < 4 else r for i, r in enumerate(rows)]))
    spec = load_spec(_overrides(tmp_path / "again", text_model, data, "train.max_length=48"))
    with pytest.raises(ConfigError, match=r"4 of 16 training pairs \(25.0%\) .*raise train.max_length"):
        run_train(spec, select(spec), spec.run_dir())
