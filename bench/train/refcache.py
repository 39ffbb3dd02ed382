"""Shared cache of reference statistics: summed reference log-probs of every training pair, computed once.

Every run of a study that trains on the same tokenised pairs against the same reference model needs the same
reference log-probs. They are keyed by the reference model's identity, the token ids of the pairs and the
truncation settings, and stored under <paths.cache>/refstats/, so a beta or learning-rate sweep (on one
machine or on every node that sees the cache folder) does one reference pass over the data instead of one per
run and step. TRL's own `precompute_ref_log_probs` caches per dataset fingerprint in the datasets cache, which
changes with every process's transforms; hence this small layer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from bench.core.identity import model_identity as model_identity  # re-exported: the cache keys use it
from bench.core.records import atomic_write_json, file_lock

Computer = Callable[[], tuple[torch.Tensor, torch.Tensor]]
TensorsComputer = Callable[[], dict[str, torch.Tensor]]


def pairs_key(rows: Iterable[dict[str, Any]], identity: str, settings: dict[str, Any]) -> str:
    """Hash of the reference identity, the tokenised pairs (in order) and the truncation settings."""
    digest = hashlib.sha256(identity.encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for row in rows:
        digest.update(json.dumps([row["prompt_ids"], row["chosen_ids"], row["rejected_ids"]]).encode())
    return digest.hexdigest()[:20]


def cached_tensors(
    cache_dir: Path, key: str, compute: TensorsComputer
) -> tuple[dict[str, torch.Tensor], bool]:
    """(tensors, computed_now): load the cached tensors or compute them once under a file lock. The entry is
    written atomically, so a run killed while computing leaves nothing half-written for the next one."""
    path = cache_dir / f"{key}.pt"
    with file_lock(cache_dir / f".{key}.lock"):
        if path.exists():
            return dict(torch.load(path)), False
        t0 = time.perf_counter()
        tensors = compute()
        seconds = time.perf_counter() - t0
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(tensors, tmp)
        tmp.replace(path)
        pairs = len(tensors["chosen"]) if "chosen" in tensors else len(tensors["chosen_lengths"])
        atomic_write_json(cache_dir / f"{key}.json", {"pairs": pairs, "key": key, "seconds": seconds})
    return tensors, True


def cached_reference_logps(
    cache_dir: Path, key: str, compute: Computer
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(chosen, rejected, computed_now): summed reference log-probs per pair, cached."""

    def as_tensors() -> dict[str, torch.Tensor]:
        chosen, rejected = compute()
        return {"chosen": chosen, "rejected": rejected}

    tensors, computed = cached_tensors(cache_dir, key, as_tensors)
    return tensors["chosen"], tensors["rejected"], computed
