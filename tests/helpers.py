"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """The production config shrunk by overrides: tiny model, tiny world, few steps, small evaluation."""
    return [
        "model=toy_tiny",
        "dataset=toy_tiny",
        "train=tiny",
        "eval=tiny",
        f"paths.cache={root / 'cache'}",
        f"paths.results={root / 'results'}",
        f"paths.scratch={root / 'scratch'}",
        "logging.wandb=false",  # on by default (offline); tests that check it turn it on
        *extra,
    ]


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline .wandb file. wandb 0.31 reads these only in its Go core, so the
    file's framing (LevelDB's log format: 32 KiB blocks of [crc32, length, type] records after a 7-byte
    header) is read here to check what a run logged."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, pos, block = path.read_bytes(), 7, 32768
    records, partial = [], b""
    while pos + 7 <= len(raw):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer or padding
            pos += left
            continue
        data, pos = raw[pos + 7 : pos + 7 + length], pos + 7 + length
        partial = data if kind in (1, 2) else partial + data
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)
    return records
