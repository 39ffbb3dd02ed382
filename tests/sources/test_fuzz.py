"""Fuzzing the data readers: a few hundred corrupted variants of valid preference files (truncations, byte
flips, inserted and deleted bytes, other encodings, wrong types, missing and renamed fields, rows that are not
objects) each end in the harness's own error (ConfigError, UnavailableError) or a clean load, never another
exception. Seeded, so every run tries the same cases; the counts are printed (pytest -s)."""

from __future__ import annotations

import copy
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import ConfigError, UnavailableError
from bench.sources.formats import normalise
from bench.sources.readers import read_file
from bench.sources.rows import load_jsonl_rows

CASES = 400
USER = {"role": "user", "content": "Name a colour."}
PLAIN = [
    {"prompt": f"Name colour {i}.", "chosen": f"Red {i}.", "rejected": "I like trains."} for i in range(6)
]
CHAT = [
    {"chosen": [USER, {"role": "assistant", "content": f"Blue {i}."}],
     "rejected": [USER, {"role": "assistant", "content": "No."}]}
    for i in range(6)
]  # fmt: skip
ODD_VALUES: list[Any] = [None, 3, -1.5, True, [], {}, [1, "a"], {"role": "x"}, "", " ", "\x00", "é" * 3]


def _jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _parquet(rows: list[Any]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer)
    return buffer.getvalue()


def _bytes_mutation(rng: np.random.Generator, data: bytes) -> bytes:
    kind = rng.integers(6)
    at = int(rng.integers(0, max(len(data), 1)))
    if kind == 0:  # truncated
        return data[:at]
    if kind == 1:  # a byte flipped
        flipped = bytearray(data)
        flipped[at] ^= int(rng.integers(1, 256))
        return bytes(flipped)
    if kind == 2:  # random bytes inserted
        return data[:at] + rng.bytes(int(rng.integers(1, 8))) + data[at:]
    if kind == 3:  # a span deleted
        return data[:at] + data[at + int(rng.integers(1, 40)) :]
    if kind == 4:  # another encoding
        text = data.decode("utf-8", errors="replace") + "é"
        return text.encode(["utf-16", "latin-1", "cp1252"][int(rng.integers(3))], errors="replace")
    return data.replace(b"\n", b"\n\n", int(rng.integers(1, 4)))  # blank lines


def _row_mutation(rng: np.random.Generator, rows: list[Any]) -> list[Any]:
    rows = copy.deepcopy(rows)
    i = int(rng.integers(len(rows)))
    kind = rng.integers(5)
    if kind == 0:  # a field of the wrong type
        field = list(rows[i])[int(rng.integers(len(rows[i])))]
        rows[i][field] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
    elif kind == 1:  # a missing field
        rows[i].pop(list(rows[i])[int(rng.integers(len(rows[i])))])
    elif kind == 2:  # a renamed field
        field = list(rows[i])[int(rng.integers(len(rows[i])))]
        rows[i][field + "_x"] = rows[i].pop(field)
    elif kind == 3:  # not an object
        rows[i] = ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
    else:  # a message's role or content broken
        for key in ("chosen", "rejected"):
            if isinstance(rows[i].get(key), list):
                rows[i][key][-1] = {"role": "robot", "content": 3}
    return rows


def _loaders(path: Path) -> list[Callable[[], Any]]:
    """Every way the harness reads a preference file: dataset.path (read and normalise), and for .jsonl
    dataset.train_path."""
    out: list[Callable[[], Any]] = [lambda: normalise(read_file(path), str(path))]
    if path.suffix == ".jsonl":
        out.append(lambda: load_jsonl_rows(path))
    return out


def test_corrupted_files_end_in_the_harness_error_or_a_clean_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(20261202)
    counts: Counter[str] = Counter()
    tracebacks: list[str] = []
    for case in range(CASES):
        rows = PLAIN if case % 2 else CHAT
        suffix = [".jsonl", ".json", ".parquet"][case % 3]
        if rng.random() < 0.5:  # corruption of the bytes
            data = {".jsonl": _jsonl, ".json": lambda r: json.dumps(r).encode(), ".parquet": _parquet}[
                suffix
            ](rows)
            data = _bytes_mutation(rng, data)
        else:  # well-formed file, malformed rows
            mutated = _row_mutation(rng, rows)
            if suffix == ".parquet":
                try:
                    data = _parquet(mutated)
                except Exception:  # pandas cannot write every mix of types: write it as JSON Lines instead
                    suffix, data = ".jsonl", _jsonl(mutated)
            else:
                data = _jsonl(mutated) if suffix == ".jsonl" else json.dumps(mutated).encode()
        path = tmp_path / f"case{case}{suffix}"
        path.write_bytes(data)
        for load in _loaders(path):
            counts["cases"] += 1
            try:
                load()
                counts["clean loads"] += 1
            except (ConfigError, UnavailableError):
                counts["harness errors"] += 1
            except Exception as err:  # the failure this test exists to catch
                counts["tracebacks"] += 1
                tracebacks.append(f"{path.name}: {type(err).__name__}: {err}"[:300])
    print(f"\nfuzz: {dict(counts)}")
    assert counts["cases"] >= CASES and counts["tracebacks"] == 0, "\n".join(tracebacks[:10])
    assert counts["clean loads"] > 0 and counts["harness errors"] > CASES // 2  # both outcomes are exercised
