"""Where preference rows come from: local .jsonl / .json / .parquet files, a local dataset folder (one file
per split, <split>.jsonl, or anything `datasets` reads), or a Hub dataset id (pinned by revision), one split
at a time; then bench.sources.formats normalises and validates them.

The Hub path goes through `datasets.load_dataset`, which also reads local folders: tests use local folders the
project writes, so nothing needs the network (HF_HUB_OFFLINE=1 turns a missing Hub dataset into a clear
error naming the id, not a hang).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError, UnavailableError, did_you_mean

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
# files `datasets` reads as data in a local folder (a folder with none, e.g. only a README, is refused rather
# than read as a text dataset)
DATA_SUFFIXES = (*FILE_SUFFIXES, ".csv", ".tsv", ".arrow", ".txt.gz", ".gz", ".zst")


def read_text(path: Path) -> str:
    """A data file's text: UTF-8, with or without a byte-order mark (editors on Windows write one); any other
    encoding fails naming the line and the byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, byte = data[: err.start].count(b"\n") + 1, data[err.start : err.start + 1]
        raise ConfigError(
            f"{path}: line {line} is not UTF-8 (byte {byte!r} at offset {err.start}): save the file as UTF-8"
        ) from err


def read_jsonl_lines(path: Path, blank: Any = ...) -> list[Any]:
    """One value per line; a bad line fails naming its line number. Blank lines are skipped, or kept as
    `blank` when one is given (so row numbers stay line numbers)."""
    path = path.absolute()  # messages name the file absolutely, wherever the command started
    rows: list[Any] = []
    for n, line in enumerate(read_text(path).splitlines()):
        if not line.strip():
            if blank is not ...:
                rows.append(blank)
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path}: line {n + 1} is not valid JSON ({err.msg}, column {err.colno})"
            ) from err
    return rows


def _json(path: Path) -> list[Any]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path}: not valid JSON ({err.msg}, line {err.lineno}); JSON Lines need .jsonl"
        ) from err
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # {"data": [...]}: the layout `datasets` also reads
    if not isinstance(data, list):
        raise ConfigError(
            f'{path}: expected a list of rows (or {{"data": [...]}}), got {type(data).__name__}'
        )
    return data


def _parquet(path: Path) -> list[Any]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError: not a parquet file
        raise ConfigError(
            f"{path}: not a readable parquet file ({str(err).splitlines()[0]}); if it holds JSON, name it "
            ".jsonl or .json"
        ) from err
    return [_plain(r) for r in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """numpy arrays and scalars from parquet/arrow as lists and Python scalars."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _missing(path: Path, what: str) -> Exception:
    """A path that does not exist: a typo when its folder exists here (a ConfigError with near matches),
    else another machine's file (UnavailableError, which a dry run reports without failing)."""
    if path.parent.is_dir():
        names = sorted(p.name for p in path.parent.iterdir())
        hint = did_you_mean(path.name, names)
        return ConfigError(
            f"{what} {path} does not exist: no {path.name!r} in {path.parent}.{hint} Check dataset.path"
        )
    return UnavailableError(f"{what} {path} does not exist: check dataset.path")


def read_file(path: Path) -> list[Any]:
    """Rows of one file; a .jsonl file's blank lines stay as None, so a row's number is its line number."""
    path = path.absolute()
    if not path.exists():
        raise _missing(path, "dataset file")
    readers = {".jsonl": lambda p: read_jsonl_lines(p, blank=None), ".json": _json, ".parquet": _parquet}
    if path.suffix not in readers:
        raise ConfigError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")
    return readers[path.suffix](path)


PACKAGE_SCHEME = "pkg://"  # data shipped inside the bench package: a path that is the same on every machine
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def resolve_source(source: str) -> str:
    """`pkg://data/shipped/x` -> the folder inside the installed package; anything else unchanged. The config
    keeps the pkg:// form, so a run id does not depend on where the project is checked out."""
    return (
        str(PACKAGE_DIR / source.removeprefix(PACKAGE_SCHEME))
        if source.startswith(PACKAGE_SCHEME)
        else source
    )


def read_split(source: str, split: str, revision: str | None = None) -> list[Any]:
    """Rows of one split: `source` is a file, a local dataset folder, a pkg:// folder or a Hub id."""
    source = resolve_source(source)
    path = Path(source)
    if path.is_file() or path.suffix in FILE_SUFFIXES:
        return read_file(path)
    for suffix in FILE_SUFFIXES:  # a local folder with one file per split: <split>.jsonl / .json / .parquet
        if (path / f"{split}{suffix}").is_file():
            return read_file(path / f"{split}{suffix}")
    if path.is_dir() and not any(p.suffix in DATA_SUFFIXES for p in path.rglob("*") if p.is_file()):
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise ConfigError(
            f"dataset folder {path.absolute()} has no data files (found: {found}): put the rows of split "
            f"{split!r} in {split}.jsonl, .json or .parquet there, or point dataset.path at a file"
        )
    if source.startswith(("/", "./", "../", "~")) and not path.expanduser().exists():
        raise _missing(path.expanduser().absolute(), "dataset folder")
    import datasets

    try:
        data = datasets.load_dataset(source, split=split, revision=revision)
    except ValueError as err:  # an unknown split
        raise ConfigError(f"dataset {source}: {err}; set dataset.train_split / dataset.test_split") from err
    except (FileNotFoundError, ConnectionError, OSError) as err:
        offline = " (HF_HUB_OFFLINE is set: download it once online, or point dataset.path at local files)"
        hint = offline if datasets.config.HF_HUB_OFFLINE else ""
        raise UnavailableError(f"dataset {source!r} could not be loaded{hint}: {err}") from err
    return [_plain(r) for r in data]
