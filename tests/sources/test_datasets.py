"""Preference data in the formats it is published in (plain strings, chat conversations, TRL's form,
HH-RLHF transcripts, orca's system/question), from .jsonl, .json, .parquet and dataset folders, normalised to
one schema; every bad row is reported with its index before anything is trained."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import ConfigError, UnavailableError
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


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    """Rows are numbered as the file numbers its lines (1-based; a .jsonl file's blank lines, read as None,
    are skipped but counted), with what is wrong, the row's own fields and the fix."""
    rows = [
        PLAIN,
        {"prompt": "x", "chosen": "same", "rejected": "same"},  # line 2: identical
        {"prompt": "x", "chosen": "a"},  # 3: missing field
        None,  # 4: a blank line
        {"prompt": "x", "chosen": 3, "rejected": "b"},  # 5: wrong type
        {"prompt": "x", "chosen": "  ", "rejected": "b"},  # 6: empty
        "not an object",  # 7
        {"prompt": "x" * 500, "chosen": "a", "rejected": "b"},  # 8: over-long
    ]
    with pytest.raises(ConfigError) as err:
        normalise(rows, "prefs.jsonl", "plain", max_chars=200)
    text = str(err.value)
    assert "prefs.jsonl (plain format): 6 bad row(s) of 7" in text
    for line, what in [
        (2, "identical"),
        (3, "missing field 'rejected' (the row has prompt, chosen; a column of another name: "
            "dataset.fields.rejected=<column>)"),
        (5, "must be a string, got int"),
        (6, "field 'chosen' is empty"),
        (7, "expected an object"),
        (8, "over-long: 501 characters > dataset.max_chars=200"),
    ]:  # fmt: skip
        assert f"row {line}: {what}" in text or (f"row {line}: " in text and what in text), (line, what)
    assert "row 1:" not in text and "row 4:" not in text
    bad_role = {
        "prompt": [{"role": "human", "content": "Hi"}],
        "chosen": [_answer("a")],
        "rejected": [_answer("b")],
    }
    with pytest.raises(ConfigError, match="message 0 has role 'human': roles are system, user, assistant"):
        normalise([bad_role], "t", "trl")


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


def test_encodings_impostor_files_empty_folders_and_typos_fail_naming_the_file(tmp_path: Path) -> None:
    line = json.dumps(PLAIN) + "\n"
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line.encode())  # a byte-order mark is fine
    assert read_file(tmp_path / "bom.jsonl") == [PLAIN]
    (tmp_path / "latin1.jsonl").write_bytes(line.encode() + '{"prompt": "café"}\n'.encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1.jsonl: line 2 is not UTF-8 \(byte b'\\xe9' at offset \d+\)"
    ):
        read_file(tmp_path / "latin1.jsonl")
    (tmp_path / "fake.parquet").write_text(line)
    with pytest.raises(ConfigError, match=r"fake.parquet: not a readable parquet file .*name it .jsonl"):
        read_file(tmp_path / "fake.parquet")
    empty, readme = tmp_path / "empty", tmp_path / "readme_only"
    empty.mkdir()
    readme.mkdir()
    (readme / "README.md").write_text("# my data\n")
    with pytest.raises(ConfigError, match=r"empty has no data files \(found: nothing\)"):
        read_split(str(empty), "train")
    with pytest.raises(ConfigError, match=r"readme_only has no data files \(found: README.md\)"):
        read_split(str(readme), "train")
    # a path whose folder is here but the file is not: a typo, not another machine's file
    with pytest.raises(ConfigError, match=r"no 'bon.jsonl' in .* Did you mean 'bom.jsonl'"):
        read_file(tmp_path / "bon.jsonl")
    with pytest.raises(UnavailableError, match="does not exist"):
        read_file(tmp_path / "elsewhere" / "prefs.jsonl")
    with pytest.raises(ConfigError, match=r"no 'empy' in"):
        read_split(str(tmp_path / "empy"), "train")
