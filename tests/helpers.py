"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path

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
        *extra,
    ]
