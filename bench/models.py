"""Loading models and tokenizers from a folder, and where a run's reference model lives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.config import RunSpec

_DTYPES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str) -> Any:
    import torch

    if name not in _DTYPES:
        raise ConfigError(f"model.dtype={name!r} is not one of {', '.join(_DTYPES)}")
    return getattr(torch, name)


def load_causal_lm(path: Path | str, dtype: str = "float32") -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a saved folder. Registers the toy architecture first."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import bench.data.toyworld.model  # noqa: F401  (registers model_type toy_llama with transformers)

    path = Path(path)
    if not (path / "config.json").exists():
        raise ConfigError(
            f"no model at {path} (config.json missing): check model.path or rebuild the toy world"
        )
    import torch

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(dtype))
    if torch.cuda.is_available():  # inference stages use the GPU when there is one; training moves its own
        model = model.to("cuda")  # type: ignore[arg-type]  # transformers stubs mistype .to
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return model, tokenizer


def reference_model_path(spec: RunSpec) -> Path:
    """The SFT/reference model folder of a run (building the toy world if it is not cached yet)."""
    if spec.model.source == "toyworld":
        from bench.data.toyworld.build import ensure_world

        return ensure_world(spec) / "reference"
    if spec.model.source == "path":
        if not spec.model.path:
            raise ConfigError("model.source=path needs model.path=<folder with config.json and weights>")
        return Path(spec.model.path)
    raise ConfigError(f"model.source={spec.model.source!r} is not one of: toyworld, path")
