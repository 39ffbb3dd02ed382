"""Training resumes from its last complete checkpoint after an interruption, and ends where an uninterrupted
run ends; a partially written checkpoint is never resumed from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import bench.train.state as train_state
from bench.config import load_spec
from bench.core.records import read_json, read_jsonl
from bench.sources import select
from bench.sources.loading import load_causal_lm
from bench.train.fit import run_train
from bench.train.state import damage, last_complete_checkpoint, set_aside_damaged, trainer_dir
from tests.helpers import tiny_overrides


class Interrupted(Exception):
    """Stands for the job being stopped (preemption, time limit, crash) in the middle of training."""


def _interrupting(after_step: int) -> Any:
    real = train_state.log_callback

    def patched(path: Path) -> Any:
        callback = real(path)

        def on_step_end(*args: Any, **kwargs: Any) -> None:
            if args[1].global_step == after_step:
                raise Interrupted

        callback.on_step_end = on_step_end
        return callback

    return patched


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model, _ = load_causal_lm(path, "float32")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_interrupted_training_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = ("train.max_steps=8", "train.save_steps=2", "loss.beta=0.3")
    whole = load_spec(tiny_overrides(tiny_root, "study=resume_whole", *extra))
    broken = load_spec(tiny_overrides(tiny_root, "study=resume_broken", *extra))
    assert whole.run_id == broken.run_id  # save_steps is not part of the experiment
    run_train(whole, select(whole), whole.run_dir())

    with monkeypatch.context() as patch:
        patch.setattr("bench.train.fit.log_callback", _interrupting(after_step=6))  # before step 6 is logged
        with pytest.raises(Interrupted):
            run_train(broken, select(broken), broken.run_dir())
    found = last_complete_checkpoint(trainer_dir(broken))
    assert found is not None and found[1] == 4  # saved at 2 and 4, only the newest kept
    assert not broken.checkpoint_dir().exists()
    assert [r["step"] for r in read_jsonl(broken.run_dir() / "train_log.jsonl.partial")] == [1, 2, 3, 4, 5]

    run_train(broken, select(broken), broken.run_dir())
    info = read_json(broken.run_dir() / "train_info.json")
    assert info["resumed_from_step"] == 4
    assert not trainer_dir(broken).exists()  # cleaned up once the checkpoint is published
    steps = [r["step"] for r in read_jsonl(broken.run_dir() / "train_log.jsonl") if "loss" in r]
    assert steps == list(range(1, 9))  # rows past the checkpoint were cut and redone, none twice
    a, b = _weights(whole.checkpoint_dir()), _weights(broken.checkpoint_dir())
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    logged = {r["step"]: r["loss"] for r in read_jsonl(whole.run_dir() / "train_log.jsonl") if "loss" in r}
    resumed = {r["step"]: r["loss"] for r in read_jsonl(broken.run_dir() / "train_log.jsonl") if "loss" in r}
    assert resumed == pytest.approx(logged, abs=1e-6)


def test_no_trainer_checkpoint_is_written_at_the_last_step_but_save_steps_ones_are(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers saves a trainer checkpoint (with optimiser state) at the last step whatever save_steps
    says; nothing resumes from it (publish_final saves the policy), so it is skipped, and the save_steps
    checkpoints before it, which a stopped run resumes from, are still written."""
    saved: list[tuple[int, list[str]]] = []
    real = train_state.log_callback

    def recording(path: Path) -> Any:
        callback = real(path)

        def on_save(args: Any, state: Any, control: Any, **kw: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            saved.append((state.global_step, sorted(p.name for p in folder.iterdir())))

        callback.on_save = on_save
        return callback

    spec = load_spec(tiny_overrides(tiny_root, "study=final_save", "train.max_steps=4", "train.save_steps=2"))
    monkeypatch.setattr("bench.train.fit.log_callback", recording)
    run_train(spec, select(spec), spec.run_dir())
    assert [step for step, _ in saved] == [2]  # not 4, the last step
    assert {"optimizer.pt", "trainer_state.json", "model.safetensors"} <= set(saved[0][1])
    assert (spec.checkpoint_dir() / "model.safetensors").exists()  # the policy is published all the same
    steps = [r["step"] for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_a_partially_written_checkpoint_is_skipped(tmp_path: Path) -> None:
    for step, complete in ((2, True), (4, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        else:
            (folder / "trainer_state.json").write_text('{"global_st')  # killed while writing
    assert last_complete_checkpoint(tmp_path) == (tmp_path / "checkpoint-2", 2)
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_a_truncated_checkpoint_is_detected_set_aside_and_never_resumed_from(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint whose trainer_state.json is whole but whose weights or optimiser state were cut short
    (a full disk, a bad copy): detected from headers alone, moved aside with a warning, and training starts
    again from step 0 (with save_total_limit=1 there is no older one) and runs every step once."""
    extra = ("train.max_steps=6", "train.save_steps=2", "loss.beta=0.3")
    spec = load_spec(tiny_overrides(tiny_root, "study=resume_truncated", *extra))
    with monkeypatch.context() as patch:
        patch.setattr("bench.train.fit.log_callback", _interrupting(after_step=5))
        with pytest.raises(Interrupted):
            run_train(spec, select(spec), spec.run_dir())
    found = last_complete_checkpoint(trainer_dir(spec))
    assert found is not None and found[1] == 4 and damage(found[0]) is None
    weights = found[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "model.safetensors is truncated" in (damage(found[0]) or "")
    assert last_complete_checkpoint(trainer_dir(spec)) is None
    optimizer = found[0] / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        run_train(spec, select(spec), spec.run_dir())
    assert "cannot be resumed from (model.safetensors is truncated" in caplog.text
    info = read_json(spec.run_dir() / "train_info.json")
    assert info["resumed_from_step"] is None
    steps = [r["step"] for r in read_jsonl(spec.run_dir() / "train_log.jsonl") if "loss" in r]
    assert steps == list(range(1, 7))


def test_damage_reads_headers_and_zip_directories_only(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    torch.save({"step": 3}, folder / "optimizer.pt")
    assert damage(folder) is None
    (folder / "optimizer.pt").write_bytes((folder / "optimizer.pt").read_bytes()[:-30])
    assert damage(folder) == "optimizer.pt is truncated or corrupt"
    set_aside_damaged(tmp_path)
    assert [p.name.startswith("damaged-checkpoint-3-") for p in tmp_path.iterdir()] == [True]
