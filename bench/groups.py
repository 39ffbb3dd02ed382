"""The config groups: the YAML files under conf/, which ship inside the package (bench/conf/; the repository's
top-level conf/ links to it), so an installed bench finds them. A group's options are its file stems: the
folder is the registry (`loss=simpo` works because conf/loss/simpo.yaml exists)."""

from __future__ import annotations

from pathlib import Path

from bench.core.keys import LOSS_META_KEYS

__all__ = ["CONF_DIR", "GROUPS", "LOSS_META_KEYS", "options"]

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUPS = ("model", "dataset", "loss", "train", "eval", "launcher")


def options(group: str) -> list[str]:
    """The options of a config group: the YAML file stems under conf/<group>/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
