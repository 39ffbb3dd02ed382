"""Preference data in the formats it is published in (plain strings, chat conversations, TRL's form,
HH-RLHF transcripts, orca's system/question), from .jsonl, .json, .parquet and dataset folders, normalised to
one schema; every bad row is reported with its index before anything is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import ConfigError
from bench.sources.formats import detect_format, normalise
from bench.sources.readers import read_file, read_split

USER = {"role": "user", "content": "Name a colour."}
SYS = {"role": "system", "content": "Be brief."}


def _answer(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


PLAIN = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I like trains."}
CHAT = {
    "prompt": "Name a colour.",
    "chosen": [USER, _answer("Blue.")],
    "rejected": [USER, _answer("Trains.")],
}
TRL = {"prompt": [SYS, USER], "chosen": [_answer("Blue.")], "rejected": [_answer("Trains.")]}
HH = {
    "chosen": "\n\nHuman: Name a colour.\n\nAssistant: Blue.",
    "rejected": "\n\nHuman: Name a colour.\n\nAssistant: I like trains.",
}
SYSTEM = {"system": "Be brief.", "question": "Name a colour.", "chosen": "Blue.", "rejected": "Trains."}


@pytest.mark.parametrize(
    ("row", "fmt"), [(PLAIN, "plain"), (CHAT, "chat"), (TRL, "trl"), (HH, "hh"), (SYSTEM, "system")]
)
def test_every_format_is_detected_and_normalised(row, fmt) -> None:  # type: ignore[no-untyped-def]
    assert detect_format(row, {}) == fmt
    (out,) = normalise([row], "test", "auto")
    assert set(out) == {"prompt", "chosen", "rejected"}
    if fmt == "plain":
        assert out == PLAIN
        return
    assert out["prompt"][-1] == USER and out["chosen"] == [_answer("Blue.")]
    assert out["rejected"][0]["role"] == "assistant"
    if fmt in ("trl", "system"):
        assert out["prompt"][0] == SYS


def test_field_renames() -> None:
    row = {"instruction": "Name a colour.", "good": "Blue.", "bad": "I like trains."}
    fields = {"prompt": "instruction", "chosen": "good", "rejected": "bad"}
    assert normalise([row], "t", "plain", fields) == [PLAIN]


def test_every_bad_row_is_reported_with_its_index() -> None:
    rows = [
        PLAIN,
        {"prompt": "x", "chosen": "same", "rejected": "same"},  # 1: identical
        {"prompt": "x", "chosen": "a"},  # 2: missing field
        {"prompt": "x", "chosen": 3, "rejected": "b"},  # 3: wrong type
        {"prompt": "x", "chosen": "  ", "rejected": "b"},  # 4: empty
        "not an object",  # 5
        {"prompt": "x" * 500, "chosen": "a", "rejected": "b"},  # 6: over-long
    ]
    with pytest.raises(ConfigError) as err:
        normalise(rows, "prefs.jsonl", "plain", max_chars=200)
    text = str(err.value)
    assert "prefs.jsonl (plain format): 6 bad row(s) of 7" in text
    for index, what in [
        (1, "identical"),
        (2, "missing field 'rejected'"),
        (3, "must be a string, got int"),
        (4, "field 'chosen' is empty"),
        (5, "expected an object"),
        (6, "over-long: 501 characters > dataset.max_chars=200"),
    ]:
        assert f"row {index}: " in text and what in text, (index, what)
    assert "row 0:" not in text


def test_chat_rows_that_answer_different_prompts_are_refused() -> None:
    other = {"role": "user", "content": "Name a fruit."}
    row = {"chosen": [USER, _answer("Blue.")], "rejected": [other, _answer("Apple.")]}
    with pytest.raises(ConfigError, match="differ before their last turn"):
        normalise([row], "t", "chat")
    with pytest.raises(ConfigError, match="must end with the assistant's answer"):
        normalise([{"chosen": [USER], "rejected": [USER, _answer("x")]}], "t", "chat")
    with pytest.raises(ConfigError, match="not an HH transcript"):
        normalise([{"chosen": "Blue", "rejected": "\n\nHuman: a\n\nAssistant: b"}], "t", "hh")


def test_files_in_every_container(tmp_path: Path) -> None:
    rows = [PLAIN, {**PLAIN, "chosen": "Red."}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "a.json").write_text(json.dumps({"data": rows}))
    pd.DataFrame([CHAT, CHAT]).to_parquet(tmp_path / "c.parquet")
    assert read_file(tmp_path / "a.jsonl") == rows == read_file(tmp_path / "a.json")
    (chat,) = normalise(read_file(tmp_path / "c.parquet")[:1], "c.parquet")  # lists of dicts survive arrow
    assert chat["prompt"] == [USER]
    (tmp_path / "bad.jsonl").write_text(json.dumps(PLAIN) + "\n{oops\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl: line 2 is not valid JSON"):
        read_file(tmp_path / "bad.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        read_file(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"unknown file type '\.csv'"):
        (tmp_path / "x.csv").write_text("a")
        read_file(tmp_path / "x.csv")


def test_a_dataset_folder_reads_like_a_hub_dataset_one_split_at_a_time(tmp_path: Path) -> None:
    """`datasets.load_dataset` on a local folder: the code path of Hub ids, without the network."""
    folder = tmp_path / "prefs"
    folder.mkdir()
    (folder / "train_prefs.jsonl").write_text(json.dumps(CHAT) + "\n")
    test_row = {**CHAT, "chosen": [USER, _answer("Green.")]}
    (folder / "test_prefs.jsonl").write_text(json.dumps(test_row) + "\n")
    train = normalise(read_split(str(folder), "train_prefs"), "prefs", "chat")
    test = normalise(read_split(str(folder), "test_prefs"), "prefs", "chat")
    assert train[0]["chosen"] == [_answer("Blue.")] and test[0]["chosen"] == [_answer("Green.")]
    hub_like = tmp_path / "hub_like"  # no split-named files: `datasets` infers train/test from file names
    hub_like.mkdir()
    (hub_like / "train-00000.jsonl").write_text(json.dumps(CHAT) + "\n")
    (hub_like / "test-00000.jsonl").write_text(json.dumps(test_row) + "\n")
    assert normalise(read_split(str(hub_like), "test"), "hub_like")[0]["chosen"] == [_answer("Green.")]
    with pytest.raises(ConfigError, match=r"dataset\.train_split"):
        read_split(str(hub_like), "validation")
