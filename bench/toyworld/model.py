"""The toy reference model: a tiny Llama whose output head can never emit impossible tokens.

Without the mask, low-beta DPO moved probability onto tokens never seen as targets (<pad>, <bos>, prompt
words): KL of 200-300 nats and most samples never ending (docs/toyworld.md, "Masking impossible tokens"). The
mask is a frozen -1e4 output bias stored as a buffer named `bias`, so TRL's fused log-prob head (which reads
`lm_head.bias`), generation and lm-eval all see the same distribution, and no optimiser can move it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .vocab import ALL_WORDS, NEVER_GENERATED, WORD_TO_ID

MASK_LOGIT = -1e4


class ToyLlamaConfig(LlamaConfig):
    model_type = "toy_llama"

    def __init__(self, masked_token_ids: list[int] | None = None, **kwargs: Any):
        self.masked_token_ids = list(masked_token_ids or [])
        super().__init__(**kwargs)


class MaskedLMHead(nn.Module):
    """A bias-free tied head plus a constant bias buffer of MASK_LOGIT on the masked ids."""

    def __init__(self, hidden_size: int, vocab_size: int, masked_token_ids: list[int]):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(vocab_size, hidden_size))
        bias = torch.zeros(vocab_size)
        bias[masked_token_ids] = MASK_LOGIT
        self.register_buffer("bias", bias)  # persistent: saved and loaded with the weights

    bias: torch.Tensor

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight, self.bias.to(hidden.dtype))


class ToyLlamaForCausalLM(LlamaForCausalLM):
    config_class = ToyLlamaConfig

    def __init__(self, config: ToyLlamaConfig):
        super().__init__(config)
        self.lm_head = MaskedLMHead(config.hidden_size, config.vocab_size, config.masked_token_ids)
        self.post_init()


AutoConfig.register("toy_llama", ToyLlamaConfig, exist_ok=True)
AutoModelForCausalLM.register(ToyLlamaConfig, ToyLlamaForCausalLM, exist_ok=True)


def build_reference_config(
    hidden: int, layers: int, heads: int, mlp: int, max_positions: int
) -> ToyLlamaConfig:
    return ToyLlamaConfig(
        masked_token_ids=[WORD_TO_ID[w] for w in NEVER_GENERATED],
        vocab_size=len(ALL_WORDS),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=WORD_TO_ID["<pad>"],
        bos_token_id=WORD_TO_ID["<bos>"],
        eos_token_id=WORD_TO_ID["<eos>"],
    )


class ReferenceArch(Protocol):
    """The reference model's architecture and fitting schedule (model.toy in the config)."""

    @property
    def hidden(self) -> int: ...
    @property
    def layers(self) -> int: ...
    @property
    def heads(self) -> int: ...
    @property
    def mlp(self) -> int: ...
    @property
    def sft_steps(self) -> int: ...
    @property
    def sft_batch(self) -> int: ...
    @property
    def sft_lr(self) -> float: ...


ARCH_FIELDS = ("hidden", "layers", "heads", "mlp", "sft_steps", "sft_batch", "sft_lr")


def load_reference(folder: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) of a saved toy model, in float32 as every stage loads it."""
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(folder))
