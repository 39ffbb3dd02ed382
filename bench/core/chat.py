"""Prompts as the model sees them: the chat template, and exactly one BOS.

Generation, scoring and the judge all turn a prompt (a string, or a conversation of {role, content}
messages) into token ids here, the same way TRL does for training: the chat template renders the text
(`model.chat_template=auto` and the tokenizer has one), which is then tokenised without adding special
tokens, because templates such as Llama 3's already start with the BOS and tokenising their output with
special tokens adds a second one (a known cause of degraded Llama 3 results, e.g. with vLLM).
`encode_prompt` enforces the rule for every tokenizer: a model whose tokenizer adds a BOS gets exactly one,
a model without one (Qwen, SmolLM2) gets none.
"""

from __future__ import annotations

from typing import Any

from bench.core.errors import ConfigError

Prompt = str | list[dict[str, str]]


def uses_chat_template(tokenizer: Any, setting: str) -> bool:
    """Whether prompts go through the tokenizer's chat template (model.chat_template: auto | none)."""
    return setting == "auto" and bool(getattr(tokenizer, "chat_template", None))


def instruction_text(prompt: Prompt) -> str:
    """What a judge is shown as the instruction: the prompt itself, or a conversation's last user turn."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    if not users:
        raise ConfigError(f"a chat prompt needs a user turn, got roles {[m.get('role') for m in prompt]}")
    return users[-1]


def render_prompt(tokenizer: Any, prompt: Prompt, chat: bool) -> str:
    """The text the model continues: the chat template with the generation prompt, or the plain prompt."""
    if chat:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    if not isinstance(prompt, str):
        raise ConfigError(
            "a chat-format prompt needs a chat template: the tokenizer has none (or "
            "model.chat_template=none); use a model with a template or a plain-text dataset"
        )
    return prompt


def adds_bos(tokenizer: Any) -> bool:
    """Whether this tokenizer puts a BOS in front of plain text (what the model saw in pre-training)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt with exactly one leading BOS when the tokenizer uses one, else none."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not adds_bos(tokenizer):
        return ids
    bos = tokenizer.bos_token_id
    while len(ids) > 1 and ids[0] == bos and ids[1] == bos:  # the template's BOS and a tokeniser's
        ids = ids[1:]
    return ids if ids and ids[0] == bos else [bos, *ids]


def leading_bos(ids: list[int], bos: int | None) -> int:
    """How many BOS tokens a sequence starts with (a check on tokenised training rows)."""
    n = 0
    while bos is not None and n < len(ids) and ids[n] == bos:
        n += 1
    return n
