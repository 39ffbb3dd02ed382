"""A local causal LM as AlpacaEval's weighted judge, for clusters without API access (eval.judge=local_lm).

AlpacaEval 2's default judge (weighted_alpaca_eval_gpt4_turbo) shows the judge the alpaca_eval_clf prompt,
which asks for the identifier of the better output, "m" (output_1) or "M" (output_2), and reads the answer
token's log-probabilities instead of sampling: preference = 1 + P(M) / (P(m) + P(M)). Here the same prompt
(annotators/local_lm_judge/prompt.txt) goes to eval.judge_model through transformers: one forward pass per
prompt, batched by eval.judge_batch_size, and the next-token log-probabilities of the two identifiers come
back in the OpenAI logprobs shape, so AlpacaEval's own logprob_parser computes the preference. No sampling and
no text to parse: deterministic and always parseable, even for a tiny random model.

An identifier may be spelled by more than one single token ("m" and " m" for a byte-level BPE, "▁m" for
SentencePiece): P(m) sums the spellings that are one token each. The prompt is ChatML; it is rendered with
the tokenizer's chat template when it has one, else kept as ChatML text with an assistant turn opened.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.errors import ConfigError, UnavailableError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from bench.sources import Sources
    from bench.specs import RunSpec

log = logging.getLogger(__name__)
FIRST, SECOND = "m", "M"  # AlpacaEval's identifiers of output_1 and output_2 in the alpaca_eval_clf prompt


def judge_model_path(spec: RunSpec, sources: Sources) -> str:
    if not spec.eval.judge_model:
        raise ConfigError(
            f"eval.judge={spec.eval.judge} needs eval.judge_model=<model folder> (or a hub id where the hub "
            "is reachable)"
        )
    if spec.eval.judge_model == "reference":  # the run's own SFT model as the judge (a plumbing check)
        return str(sources.model.reference())
    return spec.eval.judge_model


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """The judge's tokenizer, or a ConfigError naming the path (preflight loads this, not the weights)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        where = (
            "a local folder" if Path(path).exists() else "not a local folder (offline, hub ids cannot load)"
        )
        error = ConfigError if Path(path).exists() else UnavailableError  # a Hub id offline: not here
        raise error(f"eval.judge_model={path!r} ({where}): cannot load its tokenizer: {err}") from err


def single_token_spellings(tokenizer: PreTrainedTokenizerBase, label: str) -> list[int]:
    """The ids of `label` spelled as one token, bare and after a space (none when neither is one token)."""
    found: list[int] = []
    for text in (label, " " + label):
        enc = tokenizer.encode(text, add_special_tokens=False)
        if len(enc) == 1 and enc[0] != tokenizer.unk_token_id and enc[0] not in found:
            found.append(enc[0])
    return found


def answer_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The single-token spellings of "m" and "M" (bare and space-prefixed); ConfigError unless both exist and
    differ, since the judge's answer is the choice between them."""
    ids = [single_token_spellings(tokenizer, label) for label in (FIRST, SECOND)]
    if not ids[0] or not ids[1] or set(ids[0]) & set(ids[1]):
        raise ConfigError(
            f"eval.judge=local_lm: the judge model's tokenizer must spell {FIRST!r} and {SECOND!r} as "
            f"distinct single tokens (got {ids[0]} and {ids[1]}): use a general-purpose vocabulary"
        )
    return ids[0], ids[1]


def check(spec: RunSpec, sources: Sources) -> None:
    """Preflight: the model folder's tokenizer loads and has the two answer tokens (no weights loaded)."""
    answer_token_ids(load_tokenizer(judge_model_path(spec, sources)))


def make_fn_completions(spec: RunSpec, sources: Sources) -> LocalLMJudge:
    return LocalLMJudge(judge_model_path(spec, sources), spec.eval.judge_batch_size)


def _use_vllm() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class LocalLMJudge:
    """AlpacaEval completion function: the model's log P(m) and log P(M) after each prompt. Loads lazily, so
    building it (preflight) costs nothing."""

    def __init__(self, model_path: str, batch_size: int = 8):
        self.model_path = model_path
        self.batch_size = max(1, batch_size)
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model: Any = None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_path)
        return self._tokenizer

    def _load_model(self) -> Any:
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            cuda = torch.cuda.is_available()
            # GPU: the checkpoint's own dtype (bf16 for most judges); CPU: fp32 (bf16 matmuls are slow there)
            dtype = "auto" if cuda else torch.float32
            self._model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype).eval()
            self._model.to("cuda" if cuda else "cpu")
        return self._model

    def render(self, prompt: str) -> str:
        """The text the model reads: the ChatML prompt through the chat template, or as is plus an assistant
        turn. A template that refuses a system turn gets it folded into the user turn."""
        from alpaca_eval.utils import prompt_to_chatml

        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return prompt.strip() + "\n<|im_start|>assistant\n"
        messages = [{"role": m["role"], "content": m["content"]} for m in prompt_to_chatml(prompt)]
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # jinja2 TemplateError: e.g. "System role not supported"
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            rest = [m for m in messages if m["role"] != "system"]
            rest[0] = {"role": rest[0]["role"], "content": f"{system}\n\n{rest[0]['content']}"}
            text = tok.apply_chat_template(rest, tokenize=False, add_generation_prompt=True)
        return str(text)

    def encode(self, text: str) -> list[int]:
        # a chat template writes its own special tokens (BOS included) into the text
        special = not getattr(self.tokenizer, "chat_template", None)
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=special)
        return ids

    def answer_logprobs(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, 2): log P(m), log P(M) as the next token after each rendered prompt."""
        encoded = [self.encode(self.render(p)) for p in prompts]
        return self.next_token_logprobs(encoded, list(answer_token_ids(self.tokenizer)))

    def next_token_logprobs(self, encoded: list[list[int]], groups: list[list[int]]) -> np.ndarray:
        """(n, len(groups)): log P(the next token is one of group g's ids) after each encoded prompt."""
        if _use_vllm():
            return self._vllm_logprobs(encoded, groups)
        model = self._load_model()
        limit = getattr(model.config, "max_position_embeddings", None)
        too_long = [len(e) for e in encoded if limit and len(e) > limit]
        if too_long:
            raise ValueError(
                f"local LM judge: {len(too_long)} prompts exceed the judge model's {limit} positions "
                f"(longest {max(too_long)} tokens): use a judge with a longer context or shorter outputs"
            )
        out = np.empty((len(encoded), len(groups)))
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            logp = self._last_logprobs(model, [encoded[i] for i in rows])
            for label, ids in enumerate(groups):
                out[rows, label] = logp[:, ids].logsumexp(-1).double().cpu().numpy()
        return out

    @staticmethod
    def _last_logprobs(model: Any, batch: list[list[int]]) -> torch.Tensor:
        """Log-softmax of the next-token logits after each sequence: one forward pass over the batch, left
        padded with explicit position ids (so padding changes nothing), only the last position's logits kept
        (a full (batch, length, vocab) tensor would not fit for real vocabularies)."""
        import torch

        width = max(len(s) for s in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = next(model.parameters()).device
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            try:
                logits = model(**inputs, logits_to_keep=1).logits[:, -1]
            except TypeError:  # remote-code models without logits_to_keep: all positions, then the last
                logits = model(**inputs).logits[:, -1]
        return logits.float().log_softmax(-1)

    def _vllm_logprobs(self, encoded: list[list[int]], groups: list[list[int]]) -> np.ndarray:
        """vLLM path (GPU with vllm installed). UNTESTED here: neither exists on the machines this was written
        on. Exact log-probs without top-k truncation: each candidate token is appended to the prompt and its
        prompt log-prob read back (prompt_logprobs=0 returns the actual token's)."""
        from vllm import LLM, SamplingParams

        if self._model is None:
            self._model = LLM(model=self.model_path, seed=0, enable_prefix_caching=True)
        candidates = [c for ids in groups for c in ids]
        requests = [{"prompt_token_ids": [*seq, c]} for seq in encoded for c in candidates]
        results = self._model.generate(requests, SamplingParams(max_tokens=1, prompt_logprobs=0))
        lp = np.array(
            [r.prompt_logprobs[-1][r.prompt_token_ids[-1]].logprob for r in results], dtype=float
        ).reshape(len(encoded), len(candidates))
        bounds = np.cumsum([0, *(len(ids) for ids in groups)])
        return np.stack([np.logaddexp.reduce(lp[:, a:b], 1) for a, b in itertools.pairwise(bounds)], 1)

    def __call__(self, prompts: Sequence[str], **kwargs: Any) -> dict[str, list[Any]]:
        """The fn_completions contract; completions_all holds what AlpacaEval's logprob_parser reads."""
        t0 = time.perf_counter()
        logprobs = self.answer_logprobs(list(prompts))
        per_example = (time.perf_counter() - t0) / max(1, len(prompts))
        entries, texts = [], []
        for lp_first, lp_second in logprobs:
            text = FIRST if lp_first >= lp_second else SECOND
            top = [
                {"token": FIRST, "logprob": float(lp_first)},
                {"token": SECOND, "logprob": float(lp_second)},
            ]
            content = {"token": text, "logprob": max(float(lp_first), float(lp_second)), "top_logprobs": top}
            entries.append({"text": text, "logprobs": {"content": [content]}})
            texts.append(text)
        return {
            "completions": texts,
            "completions_all": entries,
            "price_per_example": [0.0] * len(texts),
            "time_per_example": [per_example] * len(texts),
        }
