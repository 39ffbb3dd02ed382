"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """The production config shrunk by overrides: tiny model, tiny world, few steps, small evaluation."""
    return [
        "model=toy_tiny",
        "dataset=toy_tiny",
        "train=tiny",
        "eval=tiny",
        f"paths.cache={root / 'cache'}",
        f"paths.results={root / 'results'}",
        f"paths.scratch={root / 'scratch'}",
        "logging.wandb=false",  # on by default (offline); tests that check it turn it on
        *extra,
    ]


def local_overrides(tmp_path: Path, model: Path, data: Path, *extra: str) -> list[str]:
    """A run on a local model folder and a local preference file, everything under tmp_path, train=tiny."""
    return [
        "model=local",
        f"model.path={model}",
        "dataset=local",
        f"dataset.path={data}",
        "train=tiny",
        f"paths.results={tmp_path / 'results'}",
        f"paths.scratch={tmp_path / 'scratch'}",
        f"paths.cache={tmp_path / 'cache'}",
        "logging.wandb=false",
        *extra,
    ]


def wandb_records(path: Path, timeout: float = 60.0) -> list[Any]:
    """The protobuf records of an offline .wandb file, once the run's exit record is in it. wandb's core
    process writes the file and may still be flushing it when `run.finish()` has returned (CI once read a
    file that ended before the run's history), so the file is reread until it ends in the exit record, or
    the timeout passes and what is there is returned."""
    deadline = time.monotonic() + timeout
    while True:
        records = _read_wandb_file(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _read_wandb_file(path: Path) -> list[Any]:
    """wandb 0.31 reads these files only in its Go core, so the framing (LevelDB's log format: 32 KiB blocks
    of [crc32, length, type] records after a 7-byte header) is read here; a record cut off at the end of a
    file still being written is left out."""
    import struct

    from wandb.proto import wandb_internal_pb2

    raw, pos, block = path.read_bytes(), 7, 32768
    records, partial = [], b""
    while pos + 7 <= len(raw):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer or padding
            pos += left
            continue
        if pos + 7 + length > len(raw):
            break
        data, pos = raw[pos + 7 : pos + 7 + length], pos + 7 + length
        partial = data if kind in (1, 2) else partial + data
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial)
            records.append(record)
    return records


WORDS = (
    "red blue green yellow purple orange black white name a colour I like trains the capital of is".split()
)


def make_text_model(folder: Path, bos: str = "none") -> Path:
    """A 1-layer Llama with a byte-level BPE tokenizer and a chat template, saved to `folder`.

    bos="none": the tokenizer adds no BOS and the template writes none (like Qwen, SmolLM2);
    bos="llama3": the tokenizer prepends <s> to plain text AND the template starts with {{ bos_token }}, like
    Llama 3, so tokenising the rendered template with special tokens gives two BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 4
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    if bos == "llama3":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    start = "{{ bos_token }}" if bos == "llama3" else ""
    fast.chat_template = (
        start + "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,  # long enough for AlpacaEval's judge template
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def check_judge(spec: Any) -> None:
    """bench.judge.check_judge with the run's own sources."""
    from bench.judge import check_judge as check
    from bench.sources import select

    check(spec, select(spec))


def run_judge(spec: Any, *args: Any) -> Path:
    """bench.judge.run_judge with the run's own sources."""
    from bench.judge import run_judge as run
    from bench.sources import select

    return run(spec, select(spec), *args)


def loss_modules() -> list[str]:
    """The loss options with code of their own (bench/losses/<name>.py); the rest are recipes, YAMLs that run
    another variant's code (their `implementation`)."""
    import yaml

    from bench.config import CONF_DIR, options

    return [
        name
        for name in options("loss")
        if "implementation" not in (yaml.safe_load((CONF_DIR / "loss" / f"{name}.yaml").read_text()) or {})
    ]
