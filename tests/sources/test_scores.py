"""Per-pair scores (score_chosen, score_rejected) for variants that declare `needs_scores` (ODPO): read and
checked in every format, required before any compute, invisible to every other variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.losses import build_loss
from bench.pipeline import preflight
from bench.sources.formats import normalise
from bench.sources.rows import validate_rows
from bench.sources.scores import SCORE_KEYS
from bench.train.rows import variant_rows
from tests.helpers import tiny_overrides

PLAIN = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "I like trains."}
CHAT_UF = {  # ultrafeedback_binarized's row shape: conversations and GPT-4 ratings beside them
    "prompt": "Name a colour.",
    "chosen": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
    "rejected": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Trains."}],
    "score_chosen": 8.5,
    "score_rejected": 3,
}


def test_scores_are_kept_in_every_reader_and_remapped_by_dataset_fields() -> None:
    (row,) = normalise([CHAT_UF], "uf.jsonl")
    assert (row["score_chosen"], row["score_rejected"]) == (8.5, 3.0)
    renamed = {**PLAIN, "rating_a": 2, "rating_b": 1}
    (row,) = normalise(
        [renamed], "x.jsonl", fields={"score_chosen": "rating_a", "score_rejected": "rating_b"}
    )
    assert (row["score_chosen"], row["score_rejected"]) == (2.0, 1.0)
    (plain,) = normalise([PLAIN], "x.jsonl")
    assert not set(SCORE_KEYS) & set(plain)  # data without scores stays without
    (train_path_row,) = validate_rows([{**PLAIN, "score_chosen": 1, "score_rejected": 0.5}], "t.jsonl")
    assert train_path_row["score_rejected"] == 0.5


def test_bad_scores_are_reported_per_row_with_the_fix() -> None:
    rows = [
        {**PLAIN, "score_chosen": 1},
        {**PLAIN, "score_chosen": "high", "score_rejected": 1},
        {**PLAIN, "score_chosen": float("nan"), "score_rejected": 1},
        {**PLAIN, "score_chosen": True, "score_rejected": 1},
    ]
    with pytest.raises(ConfigError) as err:
        normalise(rows, "s.jsonl")
    text = str(err.value)
    assert "4 bad row(s) of 4" in text
    assert "row 1: has 'score_chosen' but no 'score_rejected': give both scores or neither" in text
    assert "row 2: 'score_chosen' must be a finite number, got 'high'" in text
    assert "row 3:" in text and "row 4:" in text
    with pytest.raises(ConfigError, match=r"row 1: has 'score_chosen' but no 'score_rejected'"):
        validate_rows([rows[0]], "t.jsonl")


def test_a_scored_loss_on_data_without_scores_fails_in_preflight_naming_the_rows(tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    rows = [{**PLAIN, "score_chosen": 2, "score_rejected": 1}, PLAIN, {**PLAIN, "chosen": "Red."}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = load_spec(tiny_overrides(tmp_path, "loss=odpo", f"dataset.train_path={data}"))
    with pytest.raises(ConfigError) as err:
        preflight(spec)
    assert "loss=odpo needs per-pair scores, and 2 of 3 training pairs" in str(err.value)
    assert "(rows 2, 3)" in str(err.value) and "dataset.fields.score_chosen=<column>" in str(err.value)
    preflight(load_spec(tiny_overrides(tmp_path, "loss=dpo", f"dataset.train_path={data}")))  # dpo needs none


def test_only_a_scored_variant_sees_scores_and_odpo_notes_the_pairs_it_ignores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Rows:  # a DataSource's two methods variant_rows reads
        def __init__(self, rows: list[dict[str, object]]) -> None:
            self.rows = rows

        def training_rows(self) -> list[dict[str, object]]:
            return self.rows

        def add_scores(self, rows: list[dict[str, object]]) -> list[dict[str, object]]:
            return rows

    rows = [
        {**PLAIN, "score_chosen": 2.0, "score_rejected": 1.0},
        {**PLAIN, "score_chosen": 1.0, "score_rejected": 1.0},
    ]
    dpo = load_spec(tiny_overrides(tmp_path, "loss=dpo"))
    assert variant_rows(dpo, build_loss("dpo", {}), Rows(rows)) == [PLAIN, PLAIN]
    odpo = load_spec(tiny_overrides(tmp_path, "loss=odpo"))
    assert variant_rows(odpo, build_loss("odpo", {}), Rows(rows)) == rows
    assert "1 of 2 pairs have score_chosen <= score_rejected: ODPO gives them no loss" in caplog.text
    with pytest.raises(ConfigError, match=r"loss.offset=ratio .* every score must be positive"):
        variant_rows(
            odpo,
            build_loss("odpo", {"offset": "ratio"}),
            Rows([{**PLAIN, "score_chosen": 1.0, "score_rejected": 0.0}]),
        )


def test_the_toy_world_scores_every_pair_by_its_judge(tiny_root: Path) -> None:
    from bench.sources import select
    from bench.toyworld import process

    spec = load_spec(tiny_overrides(tiny_root, "loss=odpo"))
    data = select(spec).data
    assert not set(SCORE_KEYS) & set(data.training_pairs()[0])  # scored only when a variant asks
    rows = data.add_scores(data.training_pairs())
    assert data.always_scored and all(set(SCORE_KEYS) <= set(r) for r in rows)
    lam, hack = data.params.judge_lambda, process.judge_hack(data.params)  # type: ignore[attr-defined]
    assert rows[0]["score_chosen"] == process.judge_score(rows[0]["chosen"], lam, hack)
    # the labels are drawn from these scores: the chosen answer scored higher in most pairs, not all
    higher = sum(r["score_chosen"] > r["score_rejected"] for r in rows) / len(rows)
    assert 0.5 < higher < 1.0
