"""Loading a saved causal LM and its tokenizer: every stage loads models through ModelSource.load, which
comes here, so dtype and attention implementation are the same in training, generation, scoring, judging and
lm-eval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError
from bench.specs import DTYPES


def torch_dtype(name: str) -> Any:
    import torch

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
