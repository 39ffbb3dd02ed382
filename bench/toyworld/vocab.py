"""The toy world's vocabulary and its word-level tokenizer.

Real English words in four classes (positive, negative, topic nouns, function words) so that samples read
like caricatures of reviews and a person can eyeball them. Token ids are fixed by the order below, so a
world's files and a model's embeddings agree across processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

POSITIVE = """
good great excellent superb lovely brilliant delightful charming wonderful fantastic
pleasant beautiful clever warm fresh vivid elegant gripping moving fun
joyful smart solid rich bright sharp tender witty stunning perfect
""".split()
NEGATIVE = """
bad awful terrible poor dull boring ugly clumsy weak bland
messy tedious shallow cheap stale flat sloppy annoying lazy painful
noisy grim dreary silly cold muddled tiresome crude hollow dreadful
""".split()
TOPICS = """
film plot actor music ending story scene dialogue camera script
hero villain soundtrack cast director pacing sequel costume lighting voice
book chapter author prose cover poem novel verse page narrator
meal dish chef sauce dessert service menu wine bread table
""".split()
FUNCTION = """
the a and but very quite really so this that it was is with of too also just rather somewhat
""".split()

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL = (PAD, BOS, EOS, UNK)
PROMPT_WORDS = ("review", ":")

# Tokens a completion can never contain: the model gets a frozen -1e4 output bias on them (see model.py).
NEVER_GENERATED = (PAD, BOS, UNK, *PROMPT_WORDS)

ALL_WORDS: tuple[str, ...] = (*SPECIAL, *PROMPT_WORDS, *POSITIVE, *NEGATIVE, *TOPICS, *FUNCTION)
WORD_TO_ID = {w: i for i, w in enumerate(ALL_WORDS)}
NEUTRAL = (*TOPICS, *FUNCTION)

assert len(set(ALL_WORDS)) == len(ALL_WORDS), "toy vocabulary words must be unique"
assert (len(POSITIVE), len(NEGATIVE), len(TOPICS), len(FUNCTION)) == (30, 30, 40, 20)


def word_class(word: str) -> str:
    """'pos', 'neg', 'neutral' or 'other' (specials and prompt words)."""
    if word in _POS_SET:
        return "pos"
    if word in _NEG_SET:
        return "neg"
    if word in _NEUTRAL_SET:
        return "neutral"
    return "other"


_POS_SET, _NEG_SET, _NEUTRAL_SET = frozenset(POSITIVE), frozenset(NEGATIVE), frozenset(NEUTRAL)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer: whitespace split, one id per word, no special tokens added on encode.

    Written with `tokenizers` (WordLevel) rather than by hand so that TRL, lm-eval and generation all see a
    standard `PreTrainedTokenizerFast`.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel(vocab=dict(WORD_TO_ID), unk_token=UNK))
    core.pre_tokenizer = WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",  # generation pads on the left; TRL pads its own batches
        model_max_length=128,
    )
    return tok


def save_tokenizer(path: Path) -> None:
    build_tokenizer().save_pretrained(str(path))
