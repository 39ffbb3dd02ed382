"""Preference rows: every malformed row is reported with its row number before any compute."""

from __future__ import annotations

import json

import pytest

from bench.core.errors import ConfigError
from bench.sources.rows import load_jsonl_rows
from bench.toyworld.files import labelled_pairs


def _write(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_good_rows_load(tmp_path) -> None:
    f = tmp_path / "ok.jsonl"
    _write(f, [{"prompt": "review : film", "chosen": " good", "rejected": " bad", "extra": 1}])
    assert load_jsonl_rows(f) == [{"prompt": "review : film", "chosen": " good", "rejected": " bad"}]


def test_every_bad_row_is_named(tmp_path) -> None:
    f = tmp_path / "bad.jsonl"
    _write(
        f,
        [
            {"prompt": "review : film", "chosen": " good", "rejected": " bad"},
            {"prompt": "review : film", "chosen": "", "rejected": " bad"},
            {"prompt": "review : film", "rejected": " bad"},
            {"prompt": "review : film", "chosen": 3, "rejected": " bad"},
            {"prompt": "review : film", "chosen": " same", "rejected": " same"},
            [1, 2],
        ],
    )
    with pytest.raises(ConfigError) as err:
        load_jsonl_rows(f)
    text = str(err.value)
    assert str(f) in text and "5 malformed" in text and "fix or remove" in text
    for expected in (
        "row 2: field 'chosen' is empty",
        "row 3: missing field 'chosen'",
        "row 4: field 'chosen' must be a string",
        "row 5: 'chosen' and 'rejected' are identical",
        "row 6: expected a JSON object",
    ):
        assert expected in text
    assert "row 1" not in text


def test_invalid_json_names_the_line(tmp_path) -> None:
    f = tmp_path / "broken.jsonl"
    _write(f, [{"prompt": "p", "chosen": " a", "rejected": " b"}, '{"prompt": "p", "chosen": '])
    with pytest.raises(ConfigError, match=r"broken.jsonl: line 2 is not valid JSON"):
        load_jsonl_rows(f)


def test_empty_and_missing_files(tmp_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="no preference rows"):
        load_jsonl_rows(empty)
    with pytest.raises(ConfigError, match=r"does not exist: check dataset\.train_path"):
        load_jsonl_rows(tmp_path / "nope.jsonl")


def test_toy_labels_depend_on_the_seed_and_follow_the_judge(tmp_path) -> None:
    pairs = [
        {
            "prompt": "review : film",
            "completion_a": f" good x{i}",
            "completion_b": f" bad y{i}",
            "judge_p_a": 0.8,
        }
        for i in range(400)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    a = labelled_pairs(tmp_path, seed=0)
    assert a == labelled_pairs(tmp_path, seed=0)
    assert a != labelled_pairs(tmp_path, seed=1)
    share_a = sum(r["chosen"].startswith(" good") for r in a) / len(a)
    assert 0.74 < share_a < 0.86
