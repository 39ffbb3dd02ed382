"""The judges beyond the toy one: local_lm and reward_model (tiny random models saved by the tests),
AlpacaEval's API configs (a fake OpenAI client, never the network: preflight, full path, secrets), names."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import socket
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the hub

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.judge import available_judges, load_annotations
from bench.judge.reward_model import RewardModelJudge
from bench.specs import RunSpec
from tests.helpers import REPO, check_judge, run_judge

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
SECRET = "sk-bench-test-SECRET-4b1d2c0ffee"


@pytest.fixture
def spec(tmp_path: Path) -> RunSpec:
    return load_spec(
        [
            "model=toy_tiny",
            "dataset=toy_tiny",
            "eval=tiny",
            "eval.bootstrap=50",
            f"paths.cache={tmp_path}",
            f"paths.results={tmp_path}/results",
        ]
    )


def with_eval(spec: RunSpec, **changes: Any) -> RunSpec:
    return dataclasses.replace(spec, eval=dataclasses.replace(spec.eval, **changes))


def rows(texts: dict[tuple[int, int], str]) -> list[dict[str, Any]]:
    return [
        {"prompt_id": p, "sample": s, "prompt": f"review : film plot {p}", "completion": c}
        for (p, s), c in texts.items()
    ]


POLICY = {(0, 0): " good film", (0, 1): " the plot was dull and slow", (1, 0): " a fine cast", (1, 1): " bad"}
REFERENCE = {
    (0, 0): " dull",
    (0, 1): " it was a very good film",
    (1, 0): " lovely music, good ending",
    (1, 1): " ok",
}
TEMPLATE = (REPO / "bench/judge/annotators/local_lm_judge/prompt.txt").read_text()


def fill(instruction: str, output_1: str, output_2: str) -> str:
    """The local_lm prompt as alpaca_eval's make_prompts formats it."""
    return (
        TEMPLATE.replace("{instruction}", instruction, 1)
        .replace("{output_1}", output_1, 1)
        .replace("{output_2}", output_2, 1)
    )


# ---------------------------------------------------------------- tiny local models


def _tiny_tokenizer(folder: Path) -> Any:
    """A byte-level BPE tokenizer trained in milliseconds: any text encodes, "m" and "M" are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<eos>"], initial_alphabet=alphabet
    )
    core.train_from_iterator([TEMPLATE, *POLICY.values(), *REFERENCE.values()], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tok.save_pretrained(str(folder))
    return tok


def _tiny_llama(folder: Path, model_class: str, **config: Any) -> Path:
    """A randomly initialised one-layer Llama (width 32) with the tiny tokenizer, saved to folder."""
    import torch
    import transformers

    tok = _tiny_tokenizer(folder)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id, **config
    )  # fmt: skip
    torch.manual_seed(0)
    getattr(transformers, model_class)(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # initializer_range: a random model with visibly unequal m/M probabilities
    return _tiny_llama(tmp_path_factory.mktemp("tiny_lm"), "LlamaForCausalLM", initializer_range=0.2)


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_rm")
    return _tiny_llama(folder, "LlamaForSequenceClassification", num_labels=1, initializer_range=0.5)


def test_local_lm_judge_soft_preference_equals_direct_computation(
    spec: RunSpec, tmp_path: Path, tiny_lm: Path
) -> None:
    import torch
    from alpaca_eval.completion_parsers import logprob_parser
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.judge.local_lm import LocalLMJudge
    from bench.judge.registry import alpaca_eval_configs_dir

    clf = alpaca_eval_configs_dir() / "alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"  # type: ignore[operator]
    assert clf.read_text() == TEMPLATE  # our copy of AlpacaEval's prompt has not drifted
    local = with_eval(spec, judge="local_lm", judge_model=str(tiny_lm), judge_batch_size=3)
    check_judge(local)
    path = run_judge(local, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    assert path == tmp_path / "run/judgments/local_lm/annotations.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["annotations.json", "leaderboard.csv"]
    df = load_annotations(path)
    assert len(df) == 8 and df["preference"].between(1, 2).all()
    board = pd.read_csv(path.parent / "leaderboard.csv", index_col=0)
    assert board.loc["policy", "lc_glm"] == "length_controlled_minimal"

    # direct: format the pair with the template, one unpadded forward pass, 1 + P(M) / (P(m) + P(M))
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32).eval()
    # an identifier's probability sums its single-token spellings, bare and after a space
    m, big_m = ([t for s in (x, " " + x) if len(t := tok.encode(s)) == 1] for x in ("m", "M"))

    def direct(instruction: str, first: str, second: str) -> float:
        text = fill(instruction, first, second).strip() + "\n<|im_start|>assistant\n"
        with torch.no_grad():
            logits = model(torch.tensor([tok.encode(text)])).logits[0, -1].double()
        p = logits.softmax(-1)
        p_m, p_big_m = (sum(float(p[t[0]]) for t in ids) for ids in (m, big_m))
        return 1 + p_big_m / (p_m + p_big_m)

    row = df.iloc[0]
    shown = direct(row["instruction"], row["output_1"], row["output_2"])
    swapped = direct(row["instruction"], row["output_2"], row["output_1"])
    assert abs(shown - (3 - swapped)) > 1e-4  # the two orders differ: the check below is sharp
    assert min(abs(row["preference"] - shown), abs(row["preference"] - (3 - swapped))) < 1e-5
    # the batched judge (left padding) equals the unpadded pass, and AlpacaEval's parser reads its output
    judge = LocalLMJudge(str(tiny_lm), batch_size=4)
    pairs = [(" good", " a long and dull plot"), (" a long and dull plot", " good"), ("x", "y")]
    out = judge([fill("review : x", a, b) for a, b in pairs])
    parsed = [logprob_parser(c, "m", ["m", "M"], is_binarize=False)[0] for c in out["completions_all"]]
    assert parsed[0] == pytest.approx(direct("review : x", " good", " a long and dull plot"), abs=1e-5)


def test_local_lm_renders_with_a_chat_template(tiny_lm: Path) -> None:
    from bench.judge.local_lm import LocalLMJudge, load_tokenizer

    prompt = fill("say hi", "hi", "hello")
    judge = LocalLMJudge(str(tiny_lm))
    tok = judge._tokenizer = load_tokenizer(str(tiny_lm))
    tok.chat_template = (
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    text = judge.render(prompt)
    assert text.startswith("[system]You are a highly efficient assistant") and text.endswith("[assistant]")
    assert "[user]I require a leaderboard" in text and "<|im_start|>" not in text
    # a template that refuses system turns (Gemma's do) gets the system text folded into the user turn
    tok.chat_template = (
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]"
    )
    folded = judge.render(prompt)
    assert folded.startswith("[user]You are a highly efficient assistant") and "I require a" in folded
    logprobs = judge.answer_logprobs([prompt])  # the chat-template path runs end to end
    assert logprobs.shape == (1, 2) and np.isfinite(logprobs).all()


def test_rubric_judge_scores_the_expected_point_after_the_papers_prompt(tiny_lm: Path) -> None:
    """onpolicy.judge=rubric: Self-Rewarding's additive 5-point prompt with the instruction and response in
    it, the judge's turn opened with "Score:", the score the expected digit 0-5 of the next token (each
    digit's single-token spellings summed, renormalised over the six); batched (left-padded) as unpadded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench.judge.rubric import PROMPT, RubricJudge

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32).eval()
    digits = [[t[0] for s in (str(d), f" {d}") if len(t := tok.encode(s)) == 1] for d in range(6)]
    assert all(digits)

    def direct(instruction: str, response: str) -> float:
        content = PROMPT.replace("{instruction}", instruction).replace("{response}", response)
        text = f"<|im_start|>user\n{content}\n<|im_end|>\n<|im_start|>assistant\nScore:"
        with torch.no_grad():
            p = model(torch.tensor([tok.encode(text)])).logits[0, -1].double().softmax(-1)
        mass = [sum(float(p[i]) for i in ids) for ids in digits]
        return sum(d * m for d, m in enumerate(mass)) / sum(mass)

    assert "additive 5-point scoring system" in PROMPT and 'format: "Score: <total points>"' in PROMPT
    judge = RubricJudge(str(tiny_lm), batch_size=2)
    assert "User: review : x\n\n<response> good</response>" in judge.rubric_text("review : x", " good")
    completions = [" good", " a long and dull plot", "x"]
    scores = judge.scores("review : x", completions)
    assert scores == pytest.approx([direct("review : x", c) for c in completions], abs=1e-6)
    assert all(0 <= v <= 5 for v in scores) and max(scores) - min(scores) > 1e-4  # the check is sharp


def test_local_lm_preflight(spec: RunSpec, tmp_path: Path) -> None:
    from bench.toyworld.vocab import save_tokenizer

    with pytest.raises(ConfigError, match=r"eval\.judge_model"):
        check_judge(
            with_eval(spec, judge="local_lm", judge_model=None),
        )
    with pytest.raises(ConfigError, match="cannot load its tokenizer"):
        check_judge(
            with_eval(spec, judge="local_lm", judge_model=str(tmp_path / "nothing")),
        )
    save_tokenizer(tmp_path / "toy_tok")  # a word-level vocabulary without "m" and "M"
    with pytest.raises(ConfigError, match="distinct single tokens"):
        check_judge(
            with_eval(spec, judge="local_lm", judge_model=str(tmp_path / "toy_tok")),
        )


def test_reward_model_judge_is_bradley_terry(
    spec: RunSpec, tmp_path: Path, tiny_rm: Path, tiny_lm: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm = with_eval(spec, judge="reward_model", judge_model=str(tiny_rm), judge_batch_size=3)
    check_judge(rm)
    df = load_annotations(run_judge(rm, tmp_path / "run", rows(POLICY), rows(REFERENCE)))
    assert len(df) == 8
    tok = AutoTokenizer.from_pretrained(tiny_rm)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm, dtype=torch.float32).eval()

    def reward(instruction: str, output: str) -> float:
        with torch.no_grad():
            return float(model(torch.tensor([tok.encode(instruction + output)])).logits[0, 0])

    for row in df.itertuples():
        r1, r2 = reward(row.instruction, row.output_1), reward(row.instruction, row.output_2)
        assert row.preference == pytest.approx(1 + 1 / (1 + math.exp(-(r2 - r1))), abs=1e-6)
    assert df["preference"].std() > 1e-3  # the random model does tell outputs apart
    with pytest.raises(ConfigError, match="num_labels=1"):
        check_judge(
            with_eval(spec, judge="reward_model", judge_model=str(tiny_lm)),
        )  # a causal LM's config


def test_reward_model_judge_on_the_reference_is_a_seeded_fresh_head(tiny_lm: Path) -> None:
    """eval.judge_model=reference for a reward model judge: the causal LM under a 2-label head initialised
    from a fixed seed: the same rewards in every process, and the caller's random state untouched."""
    import torch

    pairs = [("Name a colour.", "red"), ("Name a colour.", "the capital of blue is green")]
    before = torch.random.get_rng_state()
    first = RewardModelJudge(str(tiny_lm), 2, fresh_head=True).rewards(pairs)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(123)
    assert RewardModelJudge(str(tiny_lm), 2, fresh_head=True).rewards(pairs) == first
    assert first[0] != first[1]


# ---------------------------------------------------------------- names


def test_available_judges_and_near_matches(spec: RunSpec) -> None:
    names = available_judges()
    assert names[:3] == ["local_lm", "reward_model", "toy"]
    assert {"weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_gpt4_turbo_fn"} <= set(names)
    with pytest.raises(ConfigError) as err:
        check_judge(
            with_eval(spec, judge="weighted_alpaca_eval_gpt4_trubo"),
        )
    message = str(err.value)
    assert "Did you mean 'weighted_alpaca_eval_gpt4_turbo'" in message
    assert "available judges: local_lm, reward_model, toy" in message and "AlpacaEval" in message


# ---------------------------------------------------------------- API judges, offline


@pytest.fixture
def no_openai_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in ("OPENAI_API_KEY", "OPENAI_API_KEYS", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_CLIENT_CONFIG_PATH", str(tmp_path / "no_client_config.yaml"))
    return monkeypatch


def test_api_judge_preflight_key_and_endpoint(spec: RunSpec, no_openai_env: pytest.MonkeyPatch) -> None:
    api = with_eval(spec, judge="weighted_alpaca_eval_gpt4_turbo")
    with pytest.raises(ConfigError, match="no key is set: export OPENAI_API_KEYS or OPENAI_API_KEY"):
        check_judge(api)
    no_openai_env.setenv("OPENAI_API_KEY", SECRET)
    check_judge(api)  # no base URL: api.openai.com, never probed
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    no_openai_env.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed}/v1")
    with pytest.raises(ConfigError, match="unreachable") as err:
        check_judge(api)
    assert SECRET not in str(err.value)
    with socket.socket() as server:  # a listening local "server": the connect succeeds, nothing is sent
        server.bind(("127.0.0.1", 0))
        server.listen()
        no_openai_env.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}/v1")
        check_judge(api)
    with pytest.raises(ConfigError, match="huggingface_local_completions"):
        check_judge(with_eval(spec, judge="oasst_pythia_12b"))
    no_openai_env.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(
        ConfigError, match=r"anthropic_completions.*(packages \['anthropic'\]|ANTHROPIC_API_KEY)"
    ):
        check_judge(with_eval(spec, judge="claude"))


class FakeOpenAI:
    """Stands in for openai.OpenAI inside alpaca_eval's real openai_completions: no network. Its judge prefers
    the longer output, P = sigmoid((len(second) - len(first)) / 10), answered as the chat API would."""

    keys_seen: ClassVar[list[str]] = []

    def __init__(self, api_key: str | None = None, **kwargs: Any):
        api_key = api_key or os.environ.get("OPENAI_API_KEY")  # what the real client does
        if not api_key:
            raise RuntimeError("FakeOpenAI: no api key (the real client would raise too)")
        FakeOpenAI.keys_seen.append(api_key)
        self.chat = type("Chat", (), {"completions": self})()

    def create(self, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        from openai.types.chat import ChatCompletion

        text = messages[-1]["content"]
        outputs = re.findall(r'"output": """(.*?)"""', text, re.S)  # the two outputs, in the order shown
        p_second = 1 / (1 + math.exp(-(len(outputs[1]) - len(outputs[0])) / 10))
        if kwargs.get("tools"):  # the _fn configs: a ranking through a tool call
            best, worst = ("M", "m") if p_second > 0.5 else ("m", "M")
            args = json.dumps({"ordered_models": [{"model": best, "rank": 1}, {"model": worst, "rank": 2}]})
            call = {"name": "make_partial_leaderboard", "arguments": args}
            tool_calls = [{"id": "call_0", "type": "function", "function": call}]
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": tool_calls}
            logprobs = None
        else:
            top = [{"token": "m", "logprob": math.log(1 - p_second), "bytes": None},
                   {"token": "M", "logprob": math.log(p_second), "bytes": None}]  # fmt: skip
            answer = "M" if p_second > 0.5 else "m"
            message = {"role": "assistant", "content": answer}
            best = max(t["logprob"] for t in top)
            logprobs = {"content": [{"token": answer, "logprob": best, "bytes": None, "top_logprobs": top}]}
        return ChatCompletion.model_validate(
            {
                "id": "fake", "object": "chat.completion", "created": 0, "model": kwargs["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": message, "logprobs": logprobs}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
            }
        )  # fmt: skip


@pytest.mark.parametrize("judge", ["weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_gpt4_turbo_fn"])
def test_api_judge_full_path_offline_and_no_secret_in_files(
    spec: RunSpec,
    tmp_path: Path,
    no_openai_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    judge: str,
) -> None:
    import openai

    no_openai_env.setenv("OPENAI_API_KEY", SECRET)
    no_openai_env.setattr(openai, "OpenAI", FakeOpenAI)
    FakeOpenAI.keys_seen = []
    api = with_eval(spec, judge=judge)
    check_judge(api)
    with caplog.at_level(logging.DEBUG):
        path = run_judge(api, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    df = load_annotations(path)
    assert len(df) == 8 and FakeOpenAI.keys_seen and set(FakeOpenAI.keys_seen) == {SECRET}
    for row in df.itertuples():
        p = 1 / (1 + math.exp(-(len(row.output_2) - len(row.output_1)) / 10))
        expected = 1 + p if judge.startswith("weighted") else (2.0 if p > 0.5 else 1.0)
        assert row.preference == pytest.approx(expected, abs=1e-9)
    written = [f for f in (tmp_path / "run").rglob("*") if f.is_file()]
    assert {f.name for f in written} == {"annotations.json", "leaderboard.csv"}
    for f in written:
        assert SECRET not in f.read_text() and "api_key" not in f.read_text()
    assert SECRET not in caplog.text


def test_api_error_carrying_the_key_is_masked(
    spec: RunSpec, tmp_path: Path, no_openai_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import openai

    def rejected(self: FakeOpenAI, messages: Any, **kwargs: Any) -> Any:
        raise openai.OpenAIError(f"Incorrect API key provided: {SECRET}")  # some servers echo the key

    no_openai_env.setenv("OPENAI_API_KEY", SECRET)
    no_openai_env.setattr(openai, "OpenAI", FakeOpenAI)
    no_openai_env.setattr(FakeOpenAI, "create", rejected)
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(RuntimeError, match=r"Incorrect API key provided: \*\*\*") as err,
    ):
        api = with_eval(spec, judge="weighted_alpaca_eval_gpt4_turbo")
        run_judge(api, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    assert SECRET not in str(err.value) and err.value.__cause__ is None and err.value.__suppress_context__
    assert "Incorrect API key" in caplog.text and SECRET not in caplog.text  # alpaca_eval logged it, masked
    assert not (tmp_path / "run").exists()
