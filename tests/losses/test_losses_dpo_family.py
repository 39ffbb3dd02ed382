"""The DPO-family variants: each docstring's worked example against an independent closed form, TRL parity on
one real batch through TRL's own loss code, and every YAML's hyperparameters and their range checks."""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from bench.config import CONF_DIR
from bench.core.errors import ConfigError
from bench.losses import SequenceStats, build_loss
from tests.losses import parity

VARIANTS = (
    "ipo", "cdpo", "robust", "hinge", "sigmoid_norm", "rpo", "nca_pair", "bco_pair", "sppo_hard",
    "apo_zero", "apo_down", "exo_pair", "discopop", "aot", "fdpo", "sft",
)  # fmt: skip

Row = tuple[
    float, float, float, float, int, int
]  # policy chosen, rejected; reference chosen, rejected; tokens c, r
BASE: Row = (-10.0, -12.0, -11.0, -11.0, 5, 6)
ASYM: Row = (-10.0, -12.0, -11.0, -11.5, 5, 6)  # log-ratios +1 and -0.5


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def ratios(r: Row) -> tuple[float, float]:
    """Chosen and rejected log-ratios log pi(y|x) - log ref(y|x)."""
    return r[0] - r[2], r[1] - r[3]


def margin(r: Row) -> float:
    return ratios(r)[0] - ratios(r)[1]


def _aot(rows: list[Row], beta: float) -> float:
    u = sorted(r[0] - r[1] for r in rows)
    v = sorted(r[2] - r[3] for r in rows)
    return sum(-logsig(beta * (a - b)) for a, b in zip(u, v, strict=True)) / len(rows)


def _js(log_u: float) -> float:
    return math.log(2 * math.exp(log_u) / (1 + math.exp(log_u)))


# Each variant's worked example: hyperparameters, input rows, and the paper's formula written out
# independently of bench/losses (a function of the rows returning the batch mean of the loss).
WORKED: dict[str, tuple[dict[str, Any], list[Row], Callable[[list[Row]], float]]] = {
    "ipo": ({"beta": 0.1, "average_log_probs": False}, [BASE], lambda rs: (margin(rs[0]) - 1 / 0.2) ** 2),
    "cdpo": (
        {"beta": 0.1, "label_smoothing": 0.1},
        [BASE],
        lambda rs: -0.9 * logsig(0.1 * margin(rs[0])) - 0.1 * logsig(-0.1 * margin(rs[0])),
    ),
    "robust": (
        {"beta": 0.1, "label_smoothing": 0.1},
        [BASE],
        lambda rs: (-0.9 * logsig(0.1 * margin(rs[0])) + 0.1 * logsig(-0.1 * margin(rs[0]))) / 0.8,
    ),
    "hinge": ({"beta": 0.1}, [BASE], lambda rs: max(0.0, 1 - 0.1 * margin(rs[0]))),
    "sigmoid_norm": (
        {"beta": 5.0},
        [BASE],
        lambda rs: -logsig(5 * ((rs[0][0] - rs[0][2]) / rs[0][4] - (rs[0][1] - rs[0][3]) / rs[0][5])),
    ),
    "rpo": (
        {"beta": 0.1, "alpha": 1.0},
        [BASE],
        lambda rs: -logsig(0.1 * margin(rs[0])) - rs[0][0] / rs[0][4],
    ),
    "nca_pair": (
        {"beta": 0.1},
        [BASE],
        lambda rs: (
            -logsig(0.1 * ratios(rs[0])[0])
            - 0.5 * logsig(-0.1 * ratios(rs[0])[0])
            - 0.5 * logsig(-0.1 * ratios(rs[0])[1])
        ),
    ),
    "bco_pair": (
        {"beta": 0.1, "reward_shift": "zero"},
        [BASE],
        lambda rs: -logsig(0.1 * ratios(rs[0])[0]) - logsig(-0.1 * ratios(rs[0])[1]),
    ),
    "sppo_hard": (  # eta = 1/beta = 10; targets +-eta/2
        {"beta": 0.1},
        [ASYM],
        lambda rs: ((ratios(rs[0])[0] - 5) ** 2 + (ratios(rs[0])[1] + 5) ** 2) / 2,
    ),
    "apo_zero": (
        {"beta": 0.1},
        [BASE],
        lambda rs: 1 - sig(0.1 * ratios(rs[0])[0]) + sig(0.1 * ratios(rs[0])[1]),
    ),
    "apo_down": (
        {"beta": 0.1},
        [BASE],
        lambda rs: sig(0.1 * ratios(rs[0])[0]) + 1 - sig(0.1 * margin(rs[0])),
    ),
    "exo_pair": (
        {"beta": 0.1, "label_smoothing": 1e-3},
        [BASE],
        lambda rs: (
            sig(0.1 * margin(rs[0])) * math.log(sig(0.1 * margin(rs[0])) / 0.999)
            + sig(-0.1 * margin(rs[0])) * math.log(sig(-0.1 * margin(rs[0])) / 0.001)
        ),
    ),
    "discopop": (
        {"beta": 0.05, "tau": 0.05},
        [BASE],
        lambda rs: (
            (1 - sig(0.05 * margin(rs[0]) / 0.05)) * -logsig(0.05 * margin(rs[0]))
            + sig(0.05 * margin(rs[0]) / 0.05) * math.exp(-0.05 * margin(rs[0]))
        ),
    ),
    "aot": ({"beta": 0.1}, [BASE, (-8.0, -7.0, -9.0, -10.0, 4, 3)], lambda rs: _aot(rs, 0.1)),
    "fdpo": (
        {"beta": 0.1, "divergence": "js_divergence"},
        [ASYM],
        lambda rs: -logsig(0.1 * (_js(ratios(rs[0])[0]) - _js(ratios(rs[0])[1]))),
    ),
    "sft": (
        {},
        [(-10.0, -12.0, 0.0, 0.0, 5, 6), (-12.0, -7.0, 0.0, 0.0, 3, 2)],
        lambda rs: -sum(r[0] for r in rs) / sum(r[4] for r in rs),
    ),
}


def stats_of(rows: list[Row], reference: bool = True) -> SequenceStats:
    col = list(zip(*rows, strict=True))
    f = lambda i: torch.tensor(col[i], dtype=torch.float32)  # noqa: E731
    n = lambda i: torch.tensor(col[i], dtype=torch.long)  # noqa: E731
    return SequenceStats(f(0), f(1), n(4), n(5), f(2) if reference else None, f(3) if reference else None)


def docstring_loss(name: str) -> float:
    """The last 'loss = ... = X.XXXXXX' of the docstring's 'Worked example' paragraph."""
    doc = importlib.import_module(f"bench.losses.{name}").__doc__ or ""
    assert "Worked example" in doc, f"bench/losses/{name}.py needs a worked example in its docstring"
    paragraph = doc[doc.index("Worked example") :].split("\n\n")[0]
    found = re.findall(r"^loss = .*= (-?\d+\.\d{6})\b", paragraph, flags=re.MULTILINE)
    assert found, f"bench/losses/{name}.py: the worked example must end with 'loss = ... = <6 decimals>'"
    return float(found[-1])


@pytest.mark.parametrize("name", VARIANTS)
def test_worked_example_matches_docstring_and_closed_form(name: str) -> None:
    params, rows, closed_form = WORKED[name]
    loss = build_loss(name, params)
    out = loss(stats_of(rows, reference=loss.needs_reference))
    ours = out.losses.mean().item()
    assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (len(rows),)
    assert math.isclose(ours, docstring_loss(name), abs_tol=1e-6), (name, ours, docstring_loss(name))
    assert math.isclose(ours, closed_form(rows), abs_tol=1e-6), (name, ours, closed_form(rows))


@pytest.mark.parametrize(
    ("name", "params", "rows", "chosen", "rejected"),
    [
        ("cdpo", {"beta": 0.1}, [BASE], 0.1, -0.1),  # beta * log-ratio, the DPO reward
        # per token when averaging
        ("ipo", {"beta": 0.1, "average_log_probs": True}, [BASE], 0.1 / 5, -0.1 / 6),
        ("sigmoid_norm", {"beta": 5.0}, [BASE], 1.0, -5 / 6),
        ("sppo_hard", {"beta": 0.1}, [ASYM], 0.1, -0.05),
        ("fdpo", {"beta": 0.1}, [ASYM], 0.1 * _js(1.0), 0.1 * _js(-0.5)),  # beta * f'(u)
        ("sft", {}, [BASE], -10 / 5, -12 / 6),  # mean per-token log-prob
    ],
)
def test_implicit_rewards(
    name: str, params: dict[str, Any], rows: list[Row], chosen: float, rejected: float
) -> None:
    out = build_loss(name, params)(stats_of(rows))
    assert math.isclose(out.chosen_rewards.item(), chosen, abs_tol=1e-6)
    assert math.isclose(out.rejected_rewards.item(), rejected, abs_tol=1e-6)


def test_declarations() -> None:
    """sft is the one reference-free variant of this family."""
    for name in VARIANTS:
        loss = build_loss(name, {})
        assert loss.needs_reference is (name != "sft"), name
    no_reference = stats_of([BASE, ASYM], reference=False)
    assert torch.isfinite(build_loss("sft", {})(no_reference).losses).all()


def test_fdpo_divergences_follow_their_f_prime() -> None:
    """f'(u) per divergence, including the alpha-divergence's limits towards reverse and forward KL."""
    stats = stats_of([ASYM])

    def fdpo(**params: Any) -> float:
        return build_loss("fdpo", {"beta": 0.1, **params})(stats).losses.item()

    def closed(f: Callable[[float], float]) -> float:
        return -logsig(0.1 * (f(1.0) - f(-0.5)))

    assert math.isclose(fdpo(divergence="reverse_kl"), closed(lambda x: x), abs_tol=1e-6)
    assert math.isclose(fdpo(divergence="forward_kl"), closed(lambda x: -math.exp(-x)), abs_tol=1e-6)
    alpha = closed(lambda x: (1 - math.exp(-0.3 * x)) / 0.3)
    assert math.isclose(fdpo(divergence="alpha_divergence", alpha=0.3), alpha, abs_tol=1e-6)
    assert math.isclose(
        fdpo(divergence="alpha_divergence", alpha=1e-4), fdpo(divergence="reverse_kl"), abs_tol=1e-4
    )
    near_one = fdpo(divergence="alpha_divergence", alpha=1 - 1e-4)
    assert math.isclose(near_one, fdpo(divergence="forward_kl"), abs_tol=1e-4)


def test_bco_batch_mean_shift_is_the_detached_mean_reward() -> None:
    rows = [BASE, ASYM]
    stats = stats_of(rows)
    out = build_loss("bco_pair", {"beta": 0.1, "reward_shift": "batch_mean"})(stats)
    delta = (0.1 + 0.1 - 0.1 - 0.05) / 4  # rewards 0.1, 0.1 (chosen) and -0.1, -0.05 (rejected)
    expected = [
        -logsig(0.1 - delta) - logsig(-(-0.1 - delta)),
        -logsig(0.1 - delta) - logsig(-(-0.05 - delta)),
    ]
    assert torch.allclose(out.losses, torch.tensor(expected), atol=1e-6)


# ---- TRL parity: the same batch through TRL's DPOTrainer._compute_loss and through our variants ----------


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> parity.Harness:
    return parity.build(tmp_path_factory.mktemp("parity"))


def ours(harness: parity.Harness, name: str, params: dict[str, Any]) -> float:
    return build_loss(name, params)(harness.stats).losses.mean().item()


# (variant, our hyperparameters, the DPOConfig that computes the same objective in TRL 1.16)
EQUAL = [
    ("ipo", {"beta": 0.5, "average_log_probs": True}, {"loss_type": ["ipo"], "beta": 0.5}),
    (
        "robust",
        {"beta": 0.5, "label_smoothing": 0.2},
        {"loss_type": ["robust"], "beta": 0.5, "label_smoothing": 0.2},
    ),
    ("hinge", {"beta": 0.5}, {"loss_type": ["hinge"], "beta": 0.5}),
    ("aot_unpaired", {"beta": 0.5}, {"loss_type": ["aot_unpaired"], "beta": 0.5}),
    (
        "mpo",
        {"beta": 0.5},
        {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0], "beta": 0.5},
    ),
    (
        "mpo",
        {"beta": 0.5, "pref_weight": 1.0, "quality_weight": 0.5, "generation_weight": 0.0},
        {"loss_type": ["sigmoid", "bco_pair"], "loss_weights": [1.0, 0.5], "beta": 0.5},
    ),
    ("sigmoid_norm", {"beta": 5.0}, {"loss_type": ["sigmoid_norm"], "beta": 5.0}),
    ("nca_pair", {"beta": 0.5}, {"loss_type": ["nca_pair"], "beta": 0.5}),
    ("bco_pair", {"beta": 0.5}, {"loss_type": ["bco_pair"], "beta": 0.5}),
    ("apo_zero", {"beta": 0.5}, {"loss_type": ["apo_zero"], "beta": 0.5}),
    ("apo_down", {"beta": 0.5}, {"loss_type": ["apo_down"], "beta": 0.5}),
    (
        "exo_pair",
        {"beta": 0.5, "label_smoothing": 0.01},
        {"loss_type": ["exo_pair"], "beta": 0.5, "label_smoothing": 0.01},
    ),
    ("discopop", {"beta": 0.5, "tau": 0.1}, {"loss_type": ["discopop"], "beta": 0.5, "discopop_tau": 0.1}),
    ("aot", {"beta": 0.5}, {"loss_type": ["aot"], "beta": 0.5}),
    ("sft", {}, {"loss_type": ["sft"]}),
    ("fdpo", {"beta": 0.5, "divergence": "reverse_kl"}, {"loss_type": ["sigmoid"], "beta": 0.5}),
    (
        "fdpo",
        {"beta": 0.5, "divergence": "forward_kl"},
        {"loss_type": ["sigmoid"], "beta": 0.5, "f_divergence_type": "forward_kl"},
    ),
    (
        "fdpo",
        {"beta": 0.5, "divergence": "js_divergence"},
        {"loss_type": ["sigmoid"], "beta": 0.5, "f_divergence_type": "js_divergence"},
    ),
    (  # TRL's f_alpha_divergence_coef c is our alpha = 1 - c
        "fdpo",
        {"beta": 0.5, "divergence": "alpha_divergence", "alpha": 0.3},
        {
            "loss_type": ["sigmoid"],
            "beta": 0.5,
            "f_divergence_type": "alpha_divergence",
            "f_alpha_divergence_coef": 0.7,
        },
    ),
    (  # TRL 1.16 has no cDPO branch, but its loss is linear in the two logistic terms: with TRL's robust at
        # eps' = 0.25, robust = 1.5 A - 0.5 B (A = -log sigmoid(beta h), B = -log sigmoid(-beta h)), so
        # (1 + 2 eps) sigmoid - 2 eps robust = (1 - eps) A + eps B, cDPO's Eq. 3.
        "cdpo",
        {"beta": 0.5, "label_smoothing": 0.1},
        {
            "loss_type": ["sigmoid", "robust"],
            "loss_weights": [1.2, -0.2],
            "beta": 0.5,
            "label_smoothing": 0.25,
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "params", "config"), EQUAL, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(EQUAL)]
)
def test_trl_parity(
    harness: parity.Harness, name: str, params: dict[str, Any], config: dict[str, Any]
) -> None:
    trl = parity.trl_loss(harness.root, harness.batch, **config)
    assert abs(ours(harness, name, params) - trl) < 1e-5, (name, ours(harness, name, params), trl)


def test_trl_sppo_hard_sums_what_we_average(harness: parity.Harness) -> None:
    """TRL adds the winner's and loser's squares; the paper and the authors' code average them."""
    trl = parity.trl_loss(harness.root, harness.batch, loss_type=["sppo_hard"], beta=0.5)
    assert abs(2 * ours(harness, "sppo_hard", {"beta": 0.5}) - trl) < 1e-5


def test_trl_ipo_averages_where_our_default_sums(harness: parity.Harness) -> None:
    """Our default IPO (summed log-probs, Eq. 17 and the DPO reference code) is not TRL's per-token IPO."""
    s = harness.stats
    h = (s.policy_chosen_logps - s.ref_chosen_logps) - (s.policy_rejected_logps - s.ref_rejected_logps)  # type: ignore[operator]
    summed = ours(harness, "ipo", {"beta": 0.5})
    assert abs(summed - ((h - 1.0) ** 2).mean().item()) < 1e-6
    assert abs(summed - parity.trl_loss(harness.root, harness.batch, loss_type=["ipo"], beta=0.5)) > 1e-3


def test_trl_rpo_differs_by_the_nll_normalisation(harness: parity.Harness) -> None:
    """TRL's ["sigmoid", "sft"] divides the batch's chosen NLL by the batch's chosen tokens; rpo divides each
    sequence by its own length, then averages. The losses differ by exactly alpha times the two NLLs' gap."""
    s, alpha = harness.stats, 0.7
    trl = parity.trl_loss(
        harness.root, harness.batch, loss_type=["sigmoid", "sft"], loss_weights=[1.0, alpha], beta=0.5
    )
    token_weighted = (-s.policy_chosen_logps.sum() / s.chosen_tokens.sum()).item()
    per_sequence = (-s.policy_chosen_logps / s.chosen_tokens).mean().item()
    assert abs(per_sequence - token_weighted) > 1e-3  # the rows' chosen lengths differ
    assert (
        abs(
            ours(harness, "rpo", {"beta": 0.5, "alpha": alpha})
            - trl
            - alpha * (per_sequence - token_weighted)
        )
        < 1e-5
    )
    assert abs(ours(harness, "dpo", {"beta": 0.5}) + alpha * token_weighted - trl) < 1e-5
    assert abs(ours(harness, "sft", {}) - token_weighted) < 1e-6  # our sft is TRL's token-weighted NLL


def test_trl_sigmoid_ignores_label_smoothing(harness: parity.Harness) -> None:
    """Why cdpo's parity uses a sigmoid/robust combination: TRL 1.16's sigmoid drops label_smoothing."""
    trl = parity.trl_loss(harness.root, harness.batch, loss_type=["sigmoid"], beta=0.5, label_smoothing=0.1)
    assert abs(ours(harness, "cdpo", {"beta": 0.5, "label_smoothing": 0.0}) - trl) < 1e-5
    assert abs(ours(harness, "cdpo", {"beta": 0.5, "label_smoothing": 0.1}) - trl) > 1e-3


# ---- YAMLs and range checks ---------------------------------------------------------------------------


def yaml_params(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CONF_DIR / "loss" / f"{name}.yaml").read_text())
    assert data.get("paper") and data.get("equation"), (
        f"conf/loss/{name}.yaml must name its paper and equation"
    )
    return {k: v for k, v in data.items() if k not in ("paper", "equation")}


@pytest.mark.parametrize("name", VARIANTS)
def test_yaml_builds_with_the_code_defaults(name: str) -> None:
    params = yaml_params(name)
    loss = build_loss(name, params)
    assert params == type(loss).hyperparameters(), (
        f"conf/loss/{name}.yaml and bench/losses/{name}.py disagree"
    )
    text = (CONF_DIR / "loss" / f"{name}.yaml").read_text()
    assert f"bench/losses/{name}.py" in text and re.search(r"arXiv:\d{4}\.\d{5}|no arXiv id", text)
    for key in params:  # every hyperparameter carries a comment on its line
        assert re.search(rf"^{key}:.*#", text, flags=re.MULTILINE), f"conf/loss/{name}.yaml: comment {key}"


BAD: list[tuple[str, dict[str, Any], str]] = [
    *[(name, {"beta": bad}, "beta") for name in VARIANTS if name != "sft" for bad in (0, -0.1)],
    ("ipo", {"average_log_probs": "yes"}, "average_log_probs"),
    ("cdpo", {"label_smoothing": 0.5}, "label_smoothing"),
    ("cdpo", {"label_smoothing": -0.01}, "label_smoothing"),
    ("robust", {"label_smoothing": 0.5}, "label_smoothing"),
    ("robust", {"label_smoothing": -0.01}, "label_smoothing"),
    ("exo_pair", {"label_smoothing": 0.0}, "label_smoothing"),
    ("exo_pair", {"label_smoothing": 0.5}, "label_smoothing"),
    ("rpo", {"alpha": -1.0}, "alpha"),
    ("bco_pair", {"reward_shift": "running_mean"}, "reward_shift"),
    ("discopop", {"tau": 0.0}, "tau"),
    ("fdpo", {"divergence": "kl"}, "divergence"),
    ("fdpo", {"alpha": 0.0}, "alpha"),
    ("fdpo", {"alpha": 1.0}, "alpha"),
]


@pytest.mark.parametrize(("name", "params", "key"), BAD, ids=[f"{n}-{k}={p[k]}" for n, p, k in BAD])
def test_bad_hyperparameter_names_its_key(name: str, params: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"loss\.{key}=.*out of range for Loss"):
        build_loss(name, params)


def test_every_variant_module_is_short() -> None:
    for name in VARIANTS:
        path = Path(importlib.import_module(f"bench.losses.{name}").__file__ or "")
        lines = path.read_text().splitlines()
        assert len(lines) < 100, f"bench/losses/{name}.py has {len(lines)} lines"
