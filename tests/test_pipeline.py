"""One run end to end at tiny sizes, through the real TRL, alpaca_eval and lm-eval; reruns and resumption."""

from __future__ import annotations

import json

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.records import read_json, read_jsonl
from bench.pipeline import STAGE_NAMES, run_one, stages_named
from tests.helpers import REPO, tiny_overrides, wandb_records


def _mtimes(run_dir, spec) -> dict[str, int]:
    files = [*run_dir.rglob("*"), *spec.checkpoint_dir().rglob("*")]
    return {
        str(p): p.stat().st_mtime_ns
        for p in files
        if p.is_file() and p.name != "status.json" and p.name != "manifest.json"
    }


def test_run_end_to_end_then_rerun_does_nothing(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root, "study=e2e", "loss.beta=1"))
    run_dir = run_one(spec)
    status = read_json(run_dir / "status.json")
    assert status["state"] == "done" and set(status["stages"]) == set(STAGE_NAMES)
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["run_id"] == spec.run_id == run_dir.name
    assert (
        manifest["versions"]["trl"]
        and manifest["versions"]["alpaca_eval"]
        and manifest["versions"]["lm_eval"]
    )
    assert "sha" in manifest["git"] and "dirty" in manifest["git"]
    assert manifest["config"]["loss"]["beta"] == 1

    log = read_jsonl(run_dir / "train_log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    gens = read_jsonl(run_dir / "generations.jsonl")
    assert len(gens) == 8 * 2 and all(
        len(g["logprobs"]) == len(g["ref_logprobs"]) == len(g["kl_steps"]) for g in gens
    )
    assert all(k >= -1e-5 for g in gens for k in g["kl_steps"])

    metrics = {r["metric"]: r for r in read_jsonl(run_dir / "metrics.jsonl") if "split" not in r}
    for name in (
        "win_rate",
        "lc_win_rate",
        "gold_win_rate",
        "gold_reward_mean",
        "kl_seq",
        "kl_seq_k1",
        "kl_seq_k3",
        "length_tokens_mean",
        "length_ratio",
        "lm_eval/toy_nll/nll_per_token",
        "lm_eval/toy_mc/acc",
    ):
        assert name in metrics, name
        assert metrics[name]["value"] == metrics[name]["value"], f"{name} is NaN"
    for name in ("win_rate", "kl_seq_k1", "kl_seq_k3", "gold_win_rate"):
        assert metrics[name]["stderr"] is not None
    assert 0 <= metrics["win_rate"]["value"] <= 1 and metrics["kl_seq"]["value"] >= 0

    before = _mtimes(run_dir, spec)
    run_one(spec)
    assert _mtimes(run_dir, spec) == before  # nothing recomputed, nothing rewritten
    assert all(
        s["state"] in ("done", "skipped") for s in read_json(run_dir / "status.json")["stages"].values()
    )

    from bench.report import collect_study, write_report
    from bench.status import run_state, status_table

    table = write_report(run_dir.parent)
    assert "reference" in table and "dpo" in table
    assert (run_dir.parent / "report" / "results.csv").exists()
    assert (run_dir.parent / "report" / "frontier.png").stat().st_size > 10_000

    # a final record deleted: unfinished for sweep, status and report alike, and a rerun repairs only it
    trained = (run_dir / "train_log.jsonl").stat().st_mtime_ns
    (run_dir / "metrics.jsonl").unlink()
    assert run_state(run_dir) == ("incomplete", "", "metrics.jsonl missing: resubmit the run to recompute it")
    assert f"{run_dir.name:52s} incomplete" in status_table(run_dir.parent)
    study = collect_study(run_dir.parent)
    assert study.runs.empty and f"{run_dir.name}: incomplete: metrics.jsonl missing" in study.notes[0]
    run_one(spec)
    assert run_state(run_dir)[0] == "done" and (run_dir / "metrics.jsonl").exists()
    assert (run_dir / "train_log.jsonl").stat().st_mtime_ns == trained  # only the missing output recomputed


def test_interrupted_after_training_resumes_at_generation(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root, "study=resume", "loss.beta=2"))
    run_dir = run_one(spec, stages=stages_named(["train"]))
    status = read_json(run_dir / "status.json")
    assert status["stages"]["train"]["state"] == "done" and "generate" not in status["stages"]
    trained = {
        p: p.stat().st_mtime_ns
        for p in [run_dir / "train_log.jsonl", spec.checkpoint_dir() / "model.safetensors"]
    }
    run_one(spec)
    status = read_json(run_dir / "status.json")
    assert status["stages"]["train"]["state"] == "done"  # not redone: keeps the state of the run that trained
    assert {p: p.stat().st_mtime_ns for p in trained} == trained
    assert status["state"] == "done" and (run_dir / "metrics.jsonl").exists()


def test_failed_stage_is_recorded_with_its_error(tiny_root, tmp_path) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "review : film", "chosen": " good", "rejected": ""}) + "\n")
    spec = load_spec(tiny_overrides(tiny_root, "study=bad", f"dataset.train_path={bad}"))
    with pytest.raises(ConfigError, match=r"row 1: field 'rejected' is empty"):
        run_one(spec)
    assert not spec.checkpoint_dir().exists()  # failed before any training


def test_wandb_logging_is_one_key_and_offline_by_default(tiny_root, tmp_path, monkeypatch) -> None:
    """Training curves (TRL's integration) and the final metrics go to one offline wandb run per run."""
    from bench.tracking import wandb_run_id

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40 + "SECRETKEY")
    first = load_spec(tiny_overrides(tiny_root, "study=wandb", "logging.wandb=true", "train.max_steps=2"))
    run_one(first)  # a worker runs several runs in one process: each gets its own wandb run
    spec = load_spec(tiny_overrides(tiny_root, "study=wandb", "logging.wandb=true", "train.max_steps=3"))
    run_dir = run_one(spec)
    run_id = wandb_run_id(spec, run_dir)
    assert len(list((tmp_path / "wandb").glob(f"offline-run-*-{wandb_run_id(first, first.run_dir())}"))) == 2
    runs = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2  # training, then final metrics
    assert all(any(r.rglob("*.wandb")) for r in runs)
    training = wandb_records(next(runs[0].glob("*.wandb")))
    history = {
        i.key or "/".join(i.nested_key)
        for r in training
        if r.WhichOneof("record_type") == "history"
        for i in r.history.item
    }
    assert {"train/loss", "train/rewards/margins", "train/rewards/accuracies"} <= history
    final = wandb_records(next(runs[1].glob("*.wandb")))
    summary = {
        u.key: json.loads(u.value_json)
        for r in final
        if r.WhichOneof("record_type") == "summary"
        for u in r.summary.update
    }
    config = next(r.run.config for r in final if r.WhichOneof("record_type") == "run")
    assert {u.key for u in config.update} >= {"loss", "train", "seed"}
    metrics = {r["metric"]: r["value"] for r in read_jsonl(run_dir / "metrics.jsonl") if "split" not in r}
    assert summary["final/win_rate"] == pytest.approx(metrics["win_rate"]) and "final/test/kl_seq" in summary
    for path in [*run_dir.rglob("*"), *tmp_path.rglob("*")]:  # the key never lands in a file we write
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert b"SECRETKEY" not in path.read_bytes(), path
    assert not list(REPO.glob("wandb/offline-run-*" + run_id))  # WANDB_DIR respected
