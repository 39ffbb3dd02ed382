"""KL estimators against analytic KL and through the sampling code; the off-policy log-ratio diagnostic."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from bench.core.kl import kl_exact, kl_k1, offpolicy_logratios
from bench.core.sampling import sample
from bench.core.stats import mean_se
from bench.specs import GenerationSpec
from bench.stages.metrics import per_prompt, sample_metrics
from bench.toyworld.model import ToyLlamaForCausalLM, build_reference_config
from bench.toyworld.vocab import build_tokenizer

P = np.array([0.5, 0.25, 0.15, 0.1])
Q = np.array([0.35, 0.3, 0.2, 0.15])
KL_PQ = float((P * np.log(P / Q)).sum())  # 0.0491 nats
STEPS = 8


def _categorical_rows(p: np.ndarray, q: np.ndarray, n: int, per_prompt: int = 4) -> list[dict]:
    """n independent sequences of STEPS draws from p: log p(x), log q(x) and KL(p || q) at every step."""
    kl = float((p * np.log(p / q)).sum())
    draws = np.random.default_rng(0).choice(len(p), size=(n, STEPS), p=p)
    return [
        {
            "prompt_id": i // per_prompt,
            "sample": i % per_prompt,
            "completion": " film",
            "n_tokens": STEPS,
            "finished": True,
            "logprobs": np.log(p[x]).tolist(),
            "ref_logprobs": np.log(q[x]).tolist(),
            "kl_steps": [kl] * STEPS,
        }
        for i, x in enumerate(draws)
    ]


def _metrics(rows: list[dict]) -> dict[str, dict]:
    return {r["metric"]: r for r in sample_metrics(rows, rows, gold=None)}


def test_estimators_match_analytic_kl_of_two_categoricals() -> None:
    m = _metrics(_categorical_rows(P, Q, 8000))
    assert m["kl_seq"]["value"] == pytest.approx(STEPS * KL_PQ, rel=1e-12)  # exact per step: no noise
    assert m["kl_token_mean"]["value"] == pytest.approx(KL_PQ, rel=1e-12)
    for name, target in (
        ("kl_seq_k1", STEPS * KL_PQ),
        ("kl_seq_k3", STEPS * KL_PQ),
        ("kl_token_k3_mean", KL_PQ),
    ):
        row = m[name]
        assert abs(row["value"] - target) < 4 * row["stderr"], (name, row, target)
    assert m["kl_seq_k1"]["stderr"] > 0 and m["kl_seq"]["stderr"] == pytest.approx(0, abs=1e-12)


def test_a_model_against_itself_gives_zero_kl() -> None:
    m = _metrics(_categorical_rows(P, P, 400))
    for name in ("kl_seq", "kl_seq_k1", "kl_seq_k3", "kl_token_mean", "kl_token_k3_mean"):
        assert m[name]["value"] == 0.0, name


def _tiny_model(seed: int = 0) -> ToyLlamaForCausalLM:
    torch.manual_seed(seed)
    return ToyLlamaForCausalLM(build_reference_config(32, 1, 2, 64, 64)).eval()


def _perturbed(model: ToyLlamaForCausalLM, sigma: float = 0.1, seed: int = 1) -> ToyLlamaForCausalLM:
    """A copy with N(0, sigma^2) noise on every weight: about 2 nats of KL over 12 tokens at sigma 0.1."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(sigma * torch.randn(p.shape, generator=g))
    return other


GEN = GenerationSpec(backend="hf", max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0, batch_size=128)
PROMPTS = [f"review : {t}" for t in ("film plot", "book author prose", "meal chef", "music ending scene")]


def test_generation_kl_of_a_model_against_itself_is_zero() -> None:
    model, tok = _tiny_model(), build_tokenizer()
    rows = sample(model, tok, PROMPTS, 8, GEN, seed=0, reference=model)
    assert all(abs(k) < 1e-5 for r in rows for k in r["kl_steps"])
    assert all(kl_k1(r) == pytest.approx(0, abs=1e-4) for r in rows)  # generate's logits vs a full forward


def test_generation_kl_against_a_perturbed_reference_agrees_with_k1() -> None:
    model, tok = _tiny_model(), build_tokenizer()
    reference = _perturbed(model)
    prompts = PROMPTS * 16  # 64 prompts x 6 samples = 384 sequences
    rows = sample(model, tok, prompts, 6, GEN, seed=0, reference=reference)
    assert all(k >= -1e-5 for r in rows for k in r["kl_steps"])
    exact, _ = mean_se(per_prompt(rows, kl_exact).values())
    k1, _ = mean_se(per_prompt(rows, kl_k1).values())
    diff, diff_se = mean_se(per_prompt(rows, lambda r: kl_k1(r) - kl_exact(r)).values())
    assert exact > 1  # the perturbation is large enough for the check to mean something
    assert abs(diff) < 4 * diff_se, (exact, k1, diff, diff_se)
    assert diff == pytest.approx(k1 - exact)


PAIRS = [
    {"prompt": "review : film plot", "chosen": " good film good", "rejected": " bad plot"},
    {"prompt": "review : meal", "chosen": " good", "rejected": " dull meal and cold bread"},
    {"prompt": "review : book author prose", "chosen": " the book was good", "rejected": " the book was"},
    {"prompt": "review : music", "chosen": " good music good good", "rejected": " music"},
    {"prompt": "review : wine", "chosen": " very good wine", "rejected": " very bland wine"},
]


def _manual_logratio(policy, reference, tok, prompt: str, completion: str) -> float:
    """log pi/ref of completion + <eos>, one unpadded sequence at a time."""
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
    total = 0.0
    for sign, model in ((1, policy), (-1, reference)):
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        total += sign * float(logp[len(p_ids) - 1 :].sum())
    return total


@torch.no_grad()
def test_offpolicy_logratios_batched_equals_one_by_one() -> None:
    policy, tok = _tiny_model(), build_tokenizer()
    reference = _perturbed(policy)
    policy.train()  # the function must score in eval mode and give the model back as it came
    out = offpolicy_logratios(policy, reference, tok, PAIRS, batch_size=2)
    assert policy.training and not reference.training
    policy.eval()
    chosen = [_manual_logratio(policy, reference, tok, r["prompt"], r["chosen"]) for r in PAIRS]
    rejected = [_manual_logratio(policy, reference, tok, r["prompt"], r["rejected"]) for r in PAIRS]
    assert out["offpolicy_pairs"] == len(PAIRS)
    assert out["offpolicy_logratio_chosen"] == pytest.approx(np.mean(chosen), abs=1e-4)
    assert out["offpolicy_logratio_rejected"] == pytest.approx(np.mean(rejected), abs=1e-4)
    accuracy = np.mean([c > r for c, r in zip(chosen, rejected, strict=True)])
    assert out["offpolicy_margin_accuracy"] == pytest.approx(accuracy)
    assert out["offpolicy_logratio_chosen_stderr"] > 0


def test_offpolicy_logratios_of_a_model_against_itself_and_a_known_shift() -> None:
    model, tok = _tiny_model(), build_tokenizer()
    same = offpolicy_logratios(model, model, tok, PAIRS)
    assert same["offpolicy_logratio_chosen"] == same["offpolicy_logratio_rejected"] == 0.0
    assert same["offpolicy_margin_accuracy"] == 0.5  # every margin is 0: a tie
    # A policy that only adds +3 to the logit of "good": every chosen (with "good") gains, no rejected does.
    policy = copy.deepcopy(model)
    policy.lm_head.bias[tok.convert_tokens_to_ids("good")] += 3.0
    shifted = offpolicy_logratios(policy, model, tok, PAIRS)
    assert shifted["offpolicy_margin_accuracy"] == 1.0
    assert shifted["offpolicy_logratio_chosen"] > 2 > 0 > shifted["offpolicy_logratio_rejected"]
    sub = offpolicy_logratios(policy, model, tok, PAIRS, max_pairs=3, seed=1)
    assert sub["offpolicy_pairs"] == 3 and sub == offpolicy_logratios(
        policy, model, tok, PAIRS, max_pairs=3, seed=1
    )
    assert not math.isnan(sub["offpolicy_margin_accuracy_stderr"])
