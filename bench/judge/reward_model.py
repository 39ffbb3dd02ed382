"""A reward model as a pairwise judge (eval.judge=reward_model): Bradley-Terry on its scalar rewards.

eval.judge_model is a sequence classifier with one output (AutoModelForSequenceClassification, num_labels=1),
e.g. a trained RLHF reward model, or with two (a binary classifier such as the DPO paper's IMDb sentiment
model siebert/sentiment-roberta-large-english), whose reward is the log-odds of label 1 (logit_1 - logit_0).
It scores (instruction, output) for both outputs of a pair, and
P(output_2 wins) = sigmoid(r2 - r1); the judge answers the soft preference 1 + P as text, which the
annotator's eval_parser reads back. sigmoid(-x) = 1 - sigmoid(x), so AlpacaEval's random swap of the two
outputs (mapped back with 3 - x) changes nothing beyond rounding.

Each distinct (instruction, output) is scored once: with n x n sample pairs per prompt every output appears in
n pairs. The text is the tokenizer's chat template over a user and an assistant turn when it has one, else
instruction + output (a newline between them unless the output starts with whitespace, as toy completions do).

eval.judge_model=reference reads the run's reference model (a causal LM) under a two-label classification
head initialised from a fixed seed and never trained: a plumbing check (shrunk studies, bench/shrink.py), as
the local LM judge's `reference`; its verdicts mean nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.core.errors import ConfigError
from bench.judge.local_lm import judge_model_path, load_tokenizer
from bench.judge.markers import parse_marked_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from bench.sources import Sources
    from bench.specs import RunSpec

log = logging.getLogger(__name__)


def check(spec: RunSpec, sources: Sources) -> None:
    """Preflight: the folder's tokenizer and config load, and the model has exactly one output (a reward)."""
    from transformers import AutoConfig

    path = judge_model_path(spec, sources)
    load_tokenizer(path)
    if spec.eval.judge_model == "reference":  # a causal LM read under a fresh head: no classifier to check
        return
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"eval.judge_model={path!r}: cannot load its config: {err}") from err
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ConfigError(
            f"eval.judge=reward_model needs a sequence classifier (num_labels=1 for a reward model, 2 for a "
            f"binary classifier); eval.judge_model={path!r} is a {', '.join(architectures)}"
        )
    if getattr(config, "num_labels", None) not in (1, 2):
        raise ConfigError(
            "eval.judge=reward_model needs a sequence classifier with one output (a reward) or two (a binary "
            f"classifier); eval.judge_model={path!r} has num_labels={getattr(config, 'num_labels', None)}"
        )


def make_fn_completions(spec: RunSpec, sources: Sources) -> RewardModelJudge:
    return RewardModelJudge(
        judge_model_path(spec, sources), spec.eval.judge_batch_size, spec.eval.judge_model == "reference"
    )


def sigmoid(x: float) -> float:
    """Logistic function without overflow for large |x| (reward margins are unbounded)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def reward_text(tokenizer: PreTrainedTokenizerBase, instruction: str, output: str) -> str:
    """What the reward model reads for one (instruction, output)."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return instruction + ("" if output[:1].isspace() else "\n") + output


class RewardModelJudge:
    """AlpacaEval completion function: str(1 + sigmoid(r(output_2) - r(output_1))). Loads lazily."""

    def __init__(self, model_path: str, batch_size: int = 8, fresh_head: bool = False):
        self.model_path = model_path
        self.fresh_head = (
            fresh_head  # a causal LM under a seeded, untrained 2-label head (judge_model=reference)
        )
        self.batch_size = max(1, batch_size)
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._model: Any = None

    def _load(self) -> tuple[PreTrainedTokenizerBase, Any]:
        if self._model is None:
            import torch
            from transformers import AutoModelForSequenceClassification

            tok = load_tokenizer(self.model_path)
            cuda = torch.cuda.is_available()
            head = {"num_labels": 2} if self.fresh_head else {}
            # the new head's initialisation from a fixed seed (the same judge in every run), leaving the
            # process's random state as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                # GPU: the checkpoint's own dtype; CPU: fp32 (bf16 matmuls are slow there)
                model = AutoModelForSequenceClassification.from_pretrained(
                    self.model_path, dtype="auto" if cuda else torch.float32, **head
                ).eval()
            if model.config.num_labels not in (1, 2):
                raise ConfigError(
                    f"eval.judge_model={self.model_path!r} has {model.config.num_labels} outputs, not 1 or 2"
                )
            # batches need padding, and the classifier finds each row's last token by the pad id
            if tok.pad_token_id is None:
                if tok.eos_token_id is None:
                    raise ConfigError(
                        f"eval.judge_model={self.model_path!r}: tokenizer has no pad or eos token"
                    )
                tok.pad_token = tok.eos_token
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tok.pad_token_id
            tok.padding_side = "right"
            self._tokenizer, self._model = tok, model.to("cuda" if cuda else "cpu")
        assert self._tokenizer is not None
        return self._tokenizer, self._model

    def rewards(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """r(instruction, output) for each pair, in batches of batch_size texts (longest first)."""
        import torch

        tok, model = self._load()
        texts = [reward_text(tok, instruction, output) for instruction, output in pairs]
        special = not getattr(tok, "chat_template", None)
        out = [math.nan] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        device = next(model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            enc = tok([texts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=special)
            with torch.no_grad():
                logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
                logits = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
            for row, value in zip(rows, logits.float().cpu().tolist(), strict=True):
                out[row] = float(value)
        return out

    def __call__(self, prompts: Sequence[str], **kwargs: Any) -> dict[str, list[Any]]:
        t0 = time.perf_counter()
        triples = [parse_marked_prompt(p, "reward_model judge") for p in prompts]
        unique = list(dict.fromkeys((i, o) for i, o1, o2 in triples for o in (o1, o2)))
        reward = dict(zip(unique, self.rewards(unique), strict=True))
        completions = []
        for instruction, output_1, output_2 in triples:
            margin = reward[(instruction, output_2)] - reward[(instruction, output_1)]
            completions.append(repr(1.0 + sigmoid(margin)))  # repr: round-trips exactly
        per_example = (time.perf_counter() - t0) / max(1, len(prompts))
        return {
            "completions": completions,
            "price_per_example": [0.0] * len(completions),
            "time_per_example": [per_example] * len(completions),
        }
