"""Where results, caches and tracking files go: the project root, found once.

Relative paths in `paths.*` are resolved against the project root, so a command started in any subfolder of a
project sees the project's studies, as git finds its repository:

  DPO_BENCH_ROOT        the root, when set
  paths.root: auto      otherwise the nearest folder, from the current one upwards, that holds a results/
                        folder; the current folder when none does (a new project starts there)
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "DPO_BENCH_ROOT"
MARKER = "results"
AUTO = "auto"


def project_root(setting: str = AUTO, start: Path | None = None) -> Path:
    """The absolute project root: DPO_BENCH_ROOT, else `setting` when it is a folder, else found upwards."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    if setting != AUTO:
        return Path(setting).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MARKER).is_dir():
            return folder
    return here


def under_root(path: str | Path, root: Path) -> Path:
    """`path` made absolute: as it is when absolute, else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (root / p).resolve()
