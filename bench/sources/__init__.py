"""Where a run's data and reference model come from, chosen once from the config: the only code that reads
dataset.source and model.source. Everything downstream calls the DataSource and ModelSource interfaces
(bench.sources.base).

    dataset.source   toyworld -> ToyData     file, hf -> FileData
    model.source     toyworld -> ToyModel    path -> PathModel    hub -> HubModel    gguf -> GGUFModel
"""

from __future__ import annotations

from bench.core.errors import ConfigError
from bench.sources.base import DataSource, GoldReward, ModelSource, Sources
from bench.sources.files import FileData
from bench.sources.gguf import GGUFModel
from bench.sources.models import HubModel, PathModel
from bench.sources.toy import ToyData, ToyModel
from bench.specs import RunSpec

DATA_SOURCES: dict[str, type[DataSource]] = {"toyworld": ToyData, "file": FileData, "hf": FileData}
MODEL_SOURCES: dict[str, type[ModelSource]] = {
    "toyworld": ToyModel,
    "path": PathModel,
    "hub": HubModel,
    "gguf": GGUFModel,
}

__all__ = ["DataSource", "GoldReward", "ModelSource", "Sources", "select"]


def select(spec: RunSpec) -> Sources:
    """The run's data and model sources; a source's own keys and the pair's compatibility are checked here."""
    d, m = spec.dataset, spec.model
    if d.source not in DATA_SOURCES:
        raise ConfigError(f"dataset.source={d.source!r}: use one of {', '.join(DATA_SOURCES)}")
    if m.source not in MODEL_SOURCES:
        raise ConfigError(f"model.source={m.source!r}: use one of {', '.join(MODEL_SOURCES)}")
    if m.revision is not None and MODEL_SOURCES[m.source] is not HubModel:
        raise ConfigError(
            f"model.revision is only meaningful for Hub models (model.source=hub), not {m.source}"
        )
    if MODEL_SOURCES[m.source] is ToyModel and DATA_SOURCES[d.source] is not ToyData:
        raise ConfigError("model=toy speaks only the toy world's vocabulary: use it with dataset=toy")
    return Sources(DATA_SOURCES[d.source](spec), MODEL_SOURCES[m.source](spec))
