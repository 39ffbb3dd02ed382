"""A saved model's identity, cheap to compute: what cache keys that depend on a model's weights hash."""

from __future__ import annotations

import hashlib
from pathlib import Path


def model_identity(path: Path) -> str:
    """A reference model's identity: its config and the size and hash-of-head of each weight file.

    Cheap even for 7B checkpoints (no full read), and different whenever the weights are replaced.
    """
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(weights.name.encode())
        digest.update(str(weights.stat().st_size).encode())
        with weights.open("rb") as fh:
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:16]
