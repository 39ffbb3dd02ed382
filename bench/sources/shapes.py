"""Training rows of other shapes than pairs, and the conversions a variant's `data_shape` asks for.

Normalised rows (bench.sources.formats reads files into them, every bad row reported):

    pairs     {prompt, chosen, rejected}, optionally score_chosen / score_rejected and `gold` (TPO's third,
              gold response, dataset.fields.gold=<column>; TRL's TPO data calls it `reference`)
    list      {prompt, completions: [K >= 2], scores: [K] (optional)}, in rank order, best first: a file's
              list is sorted by its scores (stable), or ranked by its order when it has none
    unpaired  {prompt, completion, label: bool}: TRL's unpaired (KTO) format; label true = desirable

Formats (dataset.format, or detected from the first row):
  list           {prompt, completions, scores?} (plain strings, or TRL's conversational form)
  ultrafeedback  openbmb/UltraFeedback as published: {instruction, completions: [{response, overall_score,
                 ...}]}; the score field is dataset.fields.score (default overall_score)
  unpaired       {prompt, completion, label}

A variant trains on the shape it declares; `to_shape` converts the data's rows to it the same way for every
variant (so a comparison on one dataset differs only in what each variant is able to use):
  list -> pairs      best against worst (SimPO v0.2's and Llama 3's rule); a list whose best and worst scores
                     tie carries no preference and is left out (counted in a warning)
  pairs -> list      K = 2, scores from score_chosen / score_rejected when the rows have them
  pairs -> unpaired  chosen desirable, rejected undesirable: two rows per pair (as TRL's
                     unpair_preference_dataset)
  list -> unpaired   through pairs
  pairs -> gold      every row must carry `gold`
Unpaired data cannot become pairs or lists, and nothing but gold-carrying pairs becomes "gold": ShapeError,
before any compute, with the fix.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from bench.core.errors import ConfigError
from bench.sources.pair_rules import best_worst

log = logging.getLogger(__name__)

Row = dict[str, Any]
SHAPE_FORMATS = ("list", "ultrafeedback", "unpaired")


class ShapeError(ConfigError):
    """The data's rows cannot be given the shape a variant trains on."""


class ShapeRowError(ValueError):
    """One row's problem (bench.sources.formats reports it with the row's number)."""


def row_shape(row: Row) -> str:
    if "completions" in row:
        return "list"
    if "completion" in row and "label" in row:
        return "unpaired"
    return "pairs"


def data_shape(rows: list[Row]) -> str:
    return row_shape(rows[0]) if rows else "pairs"


def _completion(value: Any, field: str) -> Any:
    """A completion: a non-empty string, or one assistant message (a conversation's last message kept)."""
    if isinstance(value, str):
        if not value.strip():
            raise ShapeRowError(f"'{field}' has an empty completion")
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        last = value[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str):
            raise ShapeRowError(f"'{field}' must end with an assistant message {{role, content}}")
        if not last["content"].strip():
            raise ShapeRowError(f"'{field}' has an empty completion")
        return [{"role": "assistant", "content": last["content"]}]
    raise ShapeRowError(f"'{field}' must be a string or a list of messages, got {type(value).__name__}")


def _prompt(value: Any, field: str) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": m.get("role", "user"), "content": m["content"]} for m in value]
    raise ShapeRowError(f"'{field}' must be a non-empty string or list of messages")


def _score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ShapeRowError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _ranked(prompt: Any, completions: list[Any], scores: list[float] | None) -> Row:
    if len(completions) < 2:
        raise ShapeRowError(f"a ranked list needs at least 2 completions, got {len(completions)}")
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    if len(set(texts)) < len(texts):
        raise ShapeRowError("the list has the same completion twice (drop the duplicate)")
    if scores is None:
        return {"prompt": prompt, "completions": completions}
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties keep the file's order
    return {
        "prompt": prompt,
        "completions": [completions[i] for i in order],
        "scores": [scores[i] for i in order],
    }


def list_row(row: Row, fields: dict[str, str]) -> Row:
    name = fields.get("completions", "completions")
    values = row.get(name)
    if not isinstance(values, list):
        raise ShapeRowError(f"missing or non-list field '{name}' (a list of completions)")
    prompt = _prompt(row.get(fields.get("prompt", "prompt")), fields.get("prompt", "prompt"))
    completions = [_completion(v, f"{name}[{i}]") for i, v in enumerate(values)]
    score_name = fields.get("scores", "scores")
    scores = None
    if row.get(score_name) is not None:
        raw = row[score_name]
        if not isinstance(raw, list) or len(raw) != len(values):
            raise ShapeRowError(f"'{score_name}' must be a list of {len(values)} numbers, one per completion")
        scores = [_score(v, f"'{score_name}[{i}]'") for i, v in enumerate(raw)]
    return _ranked(prompt, completions, scores)


def ultrafeedback_row(row: Row, fields: dict[str, str]) -> Row:
    instruction = row.get(fields.get("instruction", "instruction"))
    if not isinstance(instruction, str) or not instruction.strip():
        raise ShapeRowError("missing or empty 'instruction'")
    values = row.get("completions")
    if not isinstance(values, list):
        raise ShapeRowError("missing or non-list field 'completions'")
    score_name = fields.get("score", "overall_score")
    completions, scores = [], []
    for i, item in enumerate(values):
        if not isinstance(item, dict) or not isinstance(item.get("response"), str):
            raise ShapeRowError(f"completions[{i}] must be an object with a string 'response'")
        completions.append(
            _completion([{"role": "assistant", "content": item["response"]}], f"completions[{i}]")
        )
        scores.append(_score(item.get(score_name), f"completions[{i}].{score_name}"))
    return _ranked([{"role": "user", "content": instruction}], completions, scores)


def unpaired_row(row: Row, fields: dict[str, str]) -> Row:
    label = row.get(fields.get("label", "label"))
    if not isinstance(label, bool):
        raise ShapeRowError(f"'label' must be true (desirable) or false (undesirable), got {label!r}")
    prompt = _prompt(row.get(fields.get("prompt", "prompt")), fields.get("prompt", "prompt"))
    completion = _completion(row.get(fields.get("completion", "completion")), "completion")
    return {"prompt": prompt, "completion": completion, "label": label}


SHAPE_NORMALISERS = {"list": list_row, "ultrafeedback": ultrafeedback_row, "unpaired": unpaired_row}


def detect_shape_format(row: Row) -> str | None:
    completions = row.get("completions")
    if isinstance(completions, list):
        return (
            "ultrafeedback"
            if completions and isinstance(completions[0], dict) and "response" in completions[0]
            else "list"
        )
    if "completion" in row and "label" in row:
        return "unpaired"
    return None


def _pairs_from_lists(rows: list[Row], source: str) -> list[Row]:
    """Each list's best against its worst (bench.sources.pair_rules.best_worst; a list without scores is
    ranked by its order); a list whose best and worst tie makes no pair."""
    out, tied = [], 0
    for row in rows:
        scores = row.get("scores")
        ranks = scores if scores is not None else list(range(len(row["completions"]), 0, -1))
        found = best_worst(ranks)
        if not found:
            tied += 1
            continue
        (c, r) = found[0]
        pair = {"prompt": row["prompt"], "chosen": row["completions"][c], "rejected": row["completions"][r]}
        if scores is not None:
            pair.update(score_chosen=scores[c], score_rejected=scores[r])
        out.append(pair)
    if tied:
        log.warning(
            "%s: %d of %d lists have tied best and worst scores: left out of the pairs",
            source,
            tied,
            len(rows),
        )
    if not out:
        raise ShapeError(f"{source}: every list's best and worst completions tie: no preference pairs")
    return out


def to_shape(rows: list[Row], shape: str, source: str, loss: str = "") -> list[Row]:
    """`rows` (one shape, normalised) as rows of `shape`; ShapeError when they cannot be."""
    have = data_shape(rows)
    who = f"loss={loss} trains on {shape} rows" if loss else f"{shape} rows are needed"
    if have == shape:
        return rows
    if have == "unpaired":
        raise ShapeError(
            f"{source} holds unpaired rows (prompt, completion, label) and {who}: unpaired feedback cannot "
            "make preference pairs. Choose an unpaired loss (e.g. loss=kto_unpaired), or give paired data"
        )
    pairs = _pairs_from_lists(rows, source) if have == "list" else rows
    if shape == "pairs":
        return pairs
    if shape == "unpaired":
        return [
            {"prompt": p["prompt"], "completion": p[side], "label": side == "chosen"}
            for p in pairs
            for side in ("chosen", "rejected")
        ]
    if shape == "list":
        return [
            {"prompt": p["prompt"], "completions": [p["chosen"], p["rejected"]]}
            | ({"scores": [p["score_chosen"], p["score_rejected"]]} if "score_chosen" in p else {})
            for p in pairs
        ]
    if shape == "gold":
        missing = [i + 1 for i, p in enumerate(pairs) if "gold" not in p]
        if missing or have == "list":
            rows_named = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ShapeError(
                f"{who}, a pair plus a gold response, and {source} has no gold response"
                + (f" in rows {rows_named}" if missing and have != "list" else "")
                + ": give every row a `gold` completion (another column name: dataset.fields.gold=<column>; "
                "TRL's TPO data calls it `reference`)"
            )
        return pairs
    raise ShapeError(f"unknown data shape {shape!r}")
