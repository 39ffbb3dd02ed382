"""The lm_eval stage on the tiny toy world: shipped task YAMLs, lm_eval.json, skip on rerun, flattening."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

# lm-eval and datasets must never reach for the hub; set before they are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl
from bench.sources import select
from bench.specs import RunSpec
from bench.stages.base import Context, execute
from bench.stages.lm_eval import (
    LmEval,
    lm_eval_rows,
    load_task_yaml,
    run_lm_eval,
    shipped_task_config,
    shipped_tasks,
)

World = tuple[RunSpec, Path]
Evaluated = tuple[Path, dict[str, Any]]


def _overrides(tmp: Path) -> list[str]:
    return [
        "model=toy_tiny",
        "dataset=toy_tiny",
        "eval=tiny",
        f"paths.cache={tmp}",
        f"paths.results={tmp}/results",
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from bench.sources.toy import world

    tmp = tmp_path_factory.mktemp("lm_eval")
    spec = load_spec(_overrides(tmp))
    return spec, world(spec)


@pytest.fixture(scope="module")
def evaluated(world: World, tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    spec, folder = world
    run_dir = tmp_path_factory.mktemp("run")
    path = run_lm_eval(spec, select(spec), run_dir, folder / "reference")
    return path, read_json(path)


def test_shipped_task_yamls_load() -> None:
    assert shipped_tasks() == ["tiny_facts", "toy_mc", "toy_nll"]
    facts = shipped_task_config("tiny_facts")  # data ships beside the YAML, for any model
    assert Path(facts["dataset_kwargs"]["data_files"]["test"]).is_file()
    nll, mc = load_task_yaml("toy_nll"), load_task_yaml("toy_mc")
    assert nll["task"] == "toy_nll" and nll["output_type"] == "loglikelihood"
    assert callable(nll["process_results"])  # `!function utils.process_results` resolved next to the YAML
    assert {m["metric"] for m in nll["metric_list"]} == {"nll_per_token", "nll", "excess_nll"}
    assert mc["task"] == "toy_mc" and mc["output_type"] == "multiple_choice"
    assert {m["metric"] for m in mc["metric_list"]} == {"acc", "acc_norm"}


def test_run_lm_eval_writes_results(world: World, evaluated: Evaluated) -> None:
    spec, _ = world
    path, data = evaluated
    assert path.name == "lm_eval.json"
    json.loads(path.read_text())  # strict JSON, nothing Python-only
    nll, mc = data["results"]["toy_nll"], data["results"]["toy_mc"]
    assert spec.eval.lm_eval.limit == 8 and data["n-samples"]["toy_nll"]["effective"] == 8
    for key in ("nll_per_token,none", "nll,none", "excess_nll,none", "nll_per_token_stderr,none"):
        assert math.isfinite(nll[key]), key
    assert nll["nll_per_token,none"] > 0
    for key in ("acc,none", "acc_norm,none"):
        assert 0.0 <= mc[key] <= 1.0
    assert data["versions"] == {"toy_nll": 1.0, "toy_mc": 1.0}
    assert data["n-shot"] == {"toy_nll": 0, "toy_mc": 0}
    assert data["lm_eval_version"]
    # our !function is recorded by the name the YAML gives it, not as source code
    assert data["configs"]["toy_nll"]["process_results"] == "utils.process_results"


def test_rerun_is_skipped(world: World, evaluated: Evaluated) -> None:
    """The stage is complete once lm_eval.json exists: the runner does not run it again."""
    spec, folder = world
    path, _ = evaluated
    before = path.stat().st_mtime_ns
    ctx = Context(spec, select(spec), path.parent, folder / "reference")
    assert LmEval().complete(ctx)
    execute([LmEval()], ctx)
    assert path.stat().st_mtime_ns == before


def test_nll_matches_a_direct_computation(world: World, evaluated: Evaluated) -> None:
    """lm-eval's number equals sum log p(completion + eos | prompt) / n_tokens computed by hand: the eos is
    scored, no BOS is added, and the prompt/completion boundary falls where it should."""
    import torch

    from bench.sources.loading import load_causal_lm

    spec, folder = world
    _, data = evaluated
    model, tok = load_causal_lm(folder / "reference")
    docs = read_jsonl(folder / "tasks" / "toy_nll.jsonl")[: spec.eval.lm_eval.limit]
    per_token, excess = [], []
    with torch.no_grad():
        for doc in docs:
            prompt_ids = tok.encode(doc["prompt"], add_special_tokens=False)
            target_ids = [*tok.encode(doc["completion"], add_special_tokens=False), tok.eos_token_id]
            assert len(target_ids) == doc["n_tokens"]
            ids = torch.tensor([prompt_ids + target_ids])
            logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
            nll = -float(logp[len(prompt_ids) - 1 :].sum())
            per_token.append(nll / doc["n_tokens"])
            excess.append(nll - doc["true_nll"])
    results = data["results"]["toy_nll"]
    assert results["nll_per_token,none"] == pytest.approx(sum(per_token) / len(docs), abs=1e-4)
    assert results["excess_nll,none"] == pytest.approx(sum(excess) / len(docs), abs=1e-3)


def test_rows_flatten(evaluated: Evaluated, tmp_path: Path) -> None:
    path, data = evaluated
    rows = lm_eval_rows(path)
    keyed = {(r["task"], r["metric"]): r for r in rows}
    assert set(keyed) == {
        ("toy_nll", "nll_per_token"),
        ("toy_nll", "nll"),
        ("toy_nll", "excess_nll"),
        ("toy_mc", "acc"),
        ("toy_mc", "acc_norm"),
    }
    acc = keyed["toy_mc", "acc"]
    assert set(acc) == {"task", "metric", "filter", "value", "stderr", "version"}
    assert acc["filter"] == "none" and acc["version"] == 1.0
    assert acc["value"] == data["results"]["toy_mc"]["acc,none"]
    assert acc["stderr"] == data["results"]["toy_mc"]["acc_stderr,none"]
    # lm-eval writes "N/A" where it has no standard error
    fake = tmp_path / "lm_eval.json"
    fake.write_text(
        json.dumps(
            {
                "results": {
                    "t": {"alias": "t", "exact_match,strict": 0.5, "exact_match_stderr,strict": "N/A"}
                },
                "versions": {"t": 2},
            }
        )
    )
    assert lm_eval_rows(fake) == [
        {"task": "t", "metric": "exact_match", "filter": "strict", "value": 0.5, "stderr": None, "version": 2}
    ]


def test_unknown_toy_task_names_the_shipped_ones(tmp_path: Path) -> None:
    spec = load_spec([*_overrides(tmp_path), "eval.lm_eval.tasks=[toy_nll,toy_nope]"])
    with pytest.raises(ConfigError, match="toy_nope") as err:
        run_lm_eval(spec, select(spec), tmp_path / "run", tmp_path / "no-model")
    assert "toy_mc" in str(err.value) and "toy_nll" in str(err.value)
    assert not (tmp_path / "run" / "lm_eval.json").exists()


def test_no_tasks_writes_an_empty_record(tmp_path: Path) -> None:
    spec = load_spec([*_overrides(tmp_path), "eval.lm_eval.tasks=[]"])
    path = run_lm_eval(spec, select(spec), tmp_path / "run", tmp_path / "no-model")
    assert read_json(path)["results"] == {} and lm_eval_rows(path) == []
