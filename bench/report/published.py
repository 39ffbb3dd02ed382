"""Published numbers beside ours. A study names its source in its study file:

    source: {file: simpo_readme_v0.1, setting: Mistral-Base}

and analysis/published/<file>.csv holds the published figures, one per row, with the columns
source (citation), setting, method (our variant name), method_published (the paper's label), metric (our
metric name), value, unit ('percent', 'fraction', or 'value' for a number shown as is, such as best_beta: the
beta of the variant's selected configuration), note. The comparison puts the published value, ours
(the variant's selected configuration on the report split, in the published unit) and the difference side by
side.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.errors import ConfigError
from bench.core.project import project_root

PUBLISHED_DIR = project_root() / "analysis" / "published"  # the project's published numbers
COLUMNS = ("source", "setting", "method", "method_published", "metric", "value", "unit", "note")
UNITS = ("percent", "fraction", "value")


def load_published(name: str, folder: Path = PUBLISHED_DIR) -> pd.DataFrame:
    path = folder / f"{name}.csv"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.csv"))
        raise ConfigError(f"no published numbers {path}; known: {', '.join(known) or 'none'}")
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}; a published CSV has {list(COLUMNS)}")
    bad = frame[~frame["unit"].isin(UNITS)]
    if not bad.empty:
        raise ConfigError(f"{path} row {int(bad.index[0]) + 2}: unit must be one of {', '.join(UNITS)}")
    return frame


def comparison(
    source: dict[str, Any], ours: dict[str, dict[str, float]], folder: Path = PUBLISHED_DIR
) -> pd.DataFrame:
    """Rows of (setting, method, metric, published, ours, ours - published) for every published figure of the
    source's setting whose method and metric we have; `ours` maps variant -> metric -> value (a fraction)."""
    frame = load_published(str(source["file"]), folder)
    if source.get("setting") is not None:
        frame = frame[frame["setting"] == source["setting"]]
    rows = []
    for _, pub in frame.iterrows():
        value = ours.get(str(pub["method"]), {}).get(str(pub["metric"]))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        scale = 100.0 if pub["unit"] == "percent" else 1.0
        digits = 1 if scale == 100 else 2 if pub["unit"] == "value" else 3
        mine, published = float(value) * scale, float(pub["value"])
        rows.append(
            {
                "setting": pub["setting"],
                "method": pub["method_published"],
                "metric": pub["metric"],
                "published": f"{published:.{digits}f}",
                "ours": f"{mine:.{digits}f}",
                "ours - published": f"{mine - published:+.{digits}f}",
                "source": pub["source"],
            }
        )
    return pd.DataFrame(rows)
