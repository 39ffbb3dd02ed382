"""Preference rows {prompt, chosen, rejected} (optionally scores and a gold response): validation, and reading
them from a JSON Lines file.

Validation runs before any model is loaded and reports every bad row with its line number, so a researcher
fixes a file once instead of once per crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError
from bench.sources.readers import read_jsonl_lines
from bench.sources.scores import ScoreError, read_scores

FIELDS = ("prompt", "chosen", "rejected")
MAX_REPORTED = 10


def row_problems(row: Any) -> list[str]:
    """What is wrong with one row (empty list when it is fine)."""
    if not isinstance(row, dict):
        return [f"expected a JSON object with fields {', '.join(FIELDS)}, got {type(row).__name__}"]
    problems = []
    for key in FIELDS:
        if key not in row:
            problems.append(f"missing field '{key}'")
        elif not isinstance(row[key], str):
            problems.append(f"field '{key}' must be a string, got {type(row[key]).__name__}")
        elif not row[key].strip():
            problems.append(f"field '{key}' is empty")
    if "gold" in row and (not isinstance(row["gold"], str) or not row["gold"].strip()):
        problems.append("field 'gold' (a gold response, for TPO) must be a non-empty string")
    if not problems and row["chosen"] == row["rejected"]:
        problems.append("'chosen' and 'rejected' are identical (no preference signal)")
    try:
        read_scores(row, {})
    except ScoreError as err:
        problems.append(str(err))
    return problems


def validate_rows(rows: list[Any], source: str) -> list[dict[str, Any]]:
    """Raise ConfigError listing every bad row (1-based, as editors number lines); return the rows."""
    if not rows:
        raise ConfigError(
            f"{source}: no preference rows: the file is empty; add JSON lines with {', '.join(FIELDS)}"
        )
    bad = [(i + 1, p) for i, row in enumerate(rows) for p in [row_problems(row)] if p]
    if bad:
        lines = [f"  row {n}: {'; '.join(p)}" for n, p in bad[:MAX_REPORTED]]
        more = f"\n  ... and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
        raise ConfigError(
            f"{source}: {len(bad)} malformed preference row(s); fix or remove them:\n"
            + "\n".join(lines)
            + more
        )
    return [
        {**{k: r[k] for k in FIELDS}, **read_scores(r, {}), **({"gold": r["gold"]} if "gold" in r else {})}
        for r in rows
    ]


def load_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    path = path.absolute()
    if not path.exists():
        raise ConfigError(f"dataset file {path} does not exist: check dataset.train_path")
    rows = read_jsonl_lines(path, blank=None)  # a blank line is a bad row, reported by its line number
    if rows and all(r is None for r in rows):
        rows = []
    return validate_rows(rows, str(path))
