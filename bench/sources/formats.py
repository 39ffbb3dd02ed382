"""Preference datasets in the formats they are published in, normalised to one schema, every bad row reported.

The schema every variant trains on (the same rows, so a comparison differs only in the loss):

    {"prompt": str | list[message], "chosen": str | list[message], "rejected": str | list[message]}

with plain strings for plain-text data, and TRL's conversational form for chat data: `prompt` the
conversation up to the answer (system and user turns), `chosen` and `rejected` one assistant message each.
TRL applies the model's chat template to conversational rows itself.

Formats (dataset.format):
  plain   {prompt, chosen, rejected} strings (field names remappable with dataset.fields)
  chat    full conversations, as ultrafeedback_binarized and the SimPO on-policy sets publish them:
          chosen/rejected are message lists ending in the assistant's answer; the shared turns before it are
          the prompt (a string `prompt` column, when present, must be the last user turn)
  trl     TRL's conversational form (prompt is a message list, chosen/rejected one assistant message)
  hh      Anthropic HH-RLHF: two transcripts "\\n\\nHuman: ... \\n\\nAssistant: ..." that differ only in the
          last assistant turn
  system  orca_dpo_pairs: {system, question, chosen, rejected} strings
  list, ultrafeedback, unpaired: rows of other shapes (ranked lists, unpaired feedback): bench.sources.shapes
  auto    decided per file from the first row's fields and types

A pair row may also carry a gold response (TPO), `gold` or dataset.fields.gold=<column>, in the form of its
chosen completion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from bench.core.errors import ConfigError
from bench.sources.scores import ScoreError, read_scores
from bench.sources.shapes import SHAPE_FORMATS, SHAPE_NORMALISERS, ShapeRowError, detect_shape_format

Row = dict[str, Any]
FORMATS = ("auto", "plain", "chat", "trl", "hh", "system", *SHAPE_FORMATS)
ROLES = ("system", "user", "assistant")
MAX_REPORTED = 20


class RowError(ValueError):
    """One row's problem, in words that say what to fix."""


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"field '{field}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError(f"field '{field}' is empty")
    return value


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RowError(f"field '{field}' must be a non-empty list of messages, got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise RowError(
                f"field '{field}' message {i} must be {{role: system|user|assistant, content: str}}, "
                f"got {json.dumps(m)[:80]}"
            )
        if m.get("role") not in ROLES:
            raise RowError(
                f"field '{field}' message {i} has role {m.get('role')!r}: roles are {', '.join(ROLES)}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _get(row: Row, fields: dict[str, str], key: str) -> Any:
    name = fields.get(key, key)
    if name not in row:
        raise RowError(
            f"missing field '{name}' (the row has {', '.join(map(str, row)) or 'no fields'}; a column of "
            f"another name: dataset.fields.{key}=<column>)"
        )
    return row[name]


def plain(row: Row, fields: dict[str, str]) -> Row:
    return {k: _text(_get(row, fields, k), fields.get(k, k)) for k in ("prompt", "chosen", "rejected")}


def chat(row: Row, fields: dict[str, str]) -> Row:
    chosen = _messages(_get(row, fields, "chosen"), fields.get("chosen", "chosen"))
    rejected = _messages(_get(row, fields, "rejected"), fields.get("rejected", "rejected"))
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if conv[-1]["role"] != "assistant":
            raise RowError(
                f"'{name}' must end with the assistant's answer, ends with a {conv[-1]['role']} turn"
            )
    if chosen[:-1] != rejected[:-1]:
        raise RowError("'chosen' and 'rejected' differ before their last turn: they answer different prompts")
    if not any(m["role"] == "user" for m in chosen[:-1]):
        raise RowError("no user turn before the answer: nothing to prompt with")
    prompt = fields.get("prompt", "prompt")
    if isinstance(row.get(prompt), str) and row[prompt].strip() != chosen[:-1][-1]["content"].strip():
        raise RowError(f"'{prompt}' is not the conversation's last turn before the answer")
    return {"prompt": chosen[:-1], "chosen": [chosen[-1]], "rejected": [rejected[-1]]}


def trl(row: Row, fields: dict[str, str]) -> Row:
    prompt = _messages(_get(row, fields, "prompt"), fields.get("prompt", "prompt"))
    out: Row = {"prompt": prompt}
    for key in ("chosen", "rejected"):
        conv = _messages(_get(row, fields, key), fields.get(key, key))
        if len(conv) != 1 or conv[0]["role"] != "assistant":
            raise RowError(f"'{key}' must be exactly one assistant message in TRL's conversational form")
        out[key] = conv
    return out


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _hh_messages(text: str, field: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(_text(text, field))
    if parts[0].strip() or len(parts) < 5:
        raise RowError(f"'{field}' is not an HH transcript ('\\n\\nHuman: ... \\n\\nAssistant: ...')")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2], strict=True)]


def hh(row: Row, fields: dict[str, str]) -> Row:
    chosen = _hh_messages(_get(row, fields, "chosen"), fields.get("chosen", "chosen"))
    rejected = _hh_messages(_get(row, fields, "rejected"), fields.get("rejected", "rejected"))
    return chat({"chosen": chosen, "rejected": rejected}, {})


def system(row: Row, fields: dict[str, str]) -> Row:
    prompt = []
    sys = row.get(fields.get("system", "system"))
    if isinstance(sys, str) and sys.strip():
        prompt.append({"role": "system", "content": sys})
    prompt.append(
        {"role": "user", "content": _text(_get(row, fields, "question"), fields.get("question", "question"))}
    )
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": _text(_get(row, fields, "chosen"), "chosen")}],
        "rejected": [{"role": "assistant", "content": _text(_get(row, fields, "rejected"), "rejected")}],
    }


NORMALISERS: dict[str, Callable[[Row, dict[str, str]], Row]] = {
    "plain": plain,
    "chat": chat,
    "trl": trl,
    "hh": hh,
    "system": system,
}


def detect_format(row: Any, fields: dict[str, str]) -> str:
    """The format of a file from its first row (dataset.format=auto)."""
    if not isinstance(row, dict):
        raise ConfigError(f"the first row is a {type(row).__name__}, not an object: cannot detect its format")
    shaped = detect_shape_format(row)
    if shaped:
        return shaped
    chosen = row.get(fields.get("chosen", "chosen"))
    if fields.get("question", "question") in row:
        return "system"
    if isinstance(row.get(fields.get("prompt", "prompt")), list):
        return "trl"
    if isinstance(chosen, list):
        return "chat"
    if isinstance(chosen, str) and chosen.lstrip("\n").startswith("Human: ") and "prompt" not in row:
        return "hh"
    return "plain"


def completion_text(value: str | list[dict[str, str]]) -> str:
    return value if isinstance(value, str) else value[-1]["content"]


def _gold(row: Row, fields: dict[str, str], norm: Row) -> None:
    """The row's gold response (TPO), when it has one, in the form of its chosen completion."""
    name = fields.get("gold", "gold")
    value = row.get(name)
    if value is None:
        return
    if isinstance(norm["chosen"], str):
        norm["gold"] = _text(value, name)
        return
    if isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    messages = _messages(value, name)
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise RowError(f"'{name}' must end with a non-empty assistant message")
    norm["gold"] = [messages[-1]]


def _shaped_row(normaliser: Callable[[Row, dict[str, str]], Row], row: Row, fields: dict[str, str]) -> Row:
    try:
        return normaliser(row, fields)
    except ShapeRowError as err:
        raise RowError(str(err)) from None


def normalise(rows: list[Any], source: str, fmt: str = "auto", fields: dict[str, str] | None = None,
              max_chars: int | None = None) -> list[Row]:  # fmt: skip
    """Every row in the one schema; raises ConfigError listing every bad row with what is wrong, before
    anything is trained. Rows are numbered from 1 as the file numbers them: a .jsonl file's line number (its
    blank lines come as None and are skipped, but counted), a .json or .parquet file's entry number."""
    fields = dict(fields or {})
    if fmt not in FORMATS:
        raise ConfigError(f"dataset.format={fmt!r}: use one of {', '.join(FORMATS)}")
    numbered = [(i + 1, row) for i, row in enumerate(rows) if row is not None]
    if not numbered:
        raise ConfigError(f"{source}: no preference rows")
    rows = [row for _, row in numbered]
    fmt = detect_format(rows[0], fields) if fmt == "auto" else fmt
    normaliser = NORMALISERS.get(fmt)
    out, bad = [], []
    for i, row in numbered:
        try:
            if not isinstance(row, dict):
                raise RowError(f"expected an object, got {type(row).__name__}")
            if normaliser is None:  # a list or unpaired format
                out.append(_shaped_row(SHAPE_NORMALISERS[fmt], row, fields))
                continue
            norm = normaliser(row, fields)
            _gold(row, fields, norm)
            try:  # per-pair scores, kept for variants that need them (bench.sources.scores)
                norm.update(read_scores(row, fields))
            except ScoreError as err:
                raise RowError(str(err)) from None
            chosen, rejected = completion_text(norm["chosen"]), completion_text(norm["rejected"])
            if not chosen.strip() or not rejected.strip():
                raise RowError("'chosen' or 'rejected' is empty")
            if chosen == rejected:
                raise RowError("'chosen' and 'rejected' are identical (no preference signal)")
            if max_chars is not None:
                longest = max(
                    len(str(norm["prompt"])) + len(chosen), len(str(norm["prompt"])) + len(rejected)
                )
                if longest > max_chars:
                    raise RowError(f"over-long: {longest} characters > dataset.max_chars={max_chars}")
            out.append(norm)
        except RowError as err:
            bad.append(f"  row {i}: {err}")
    if bad:
        more = f"\n  ... and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
        raise ConfigError(
            f"{source} ({fmt} format): {len(bad)} bad row(s) of {len(rows)}; fix or drop them:\n"
            + "\n".join(bad[:MAX_REPORTED])
            + more
        )
    return out
