"""Run records: atomic writes leave no partial file, manifests hold no secrets, status tracks stages."""

from __future__ import annotations

import json

import pytest

from bench.core.records import Status, atomic_dir, atomic_write_json, read_json, scrub_secrets, write_manifest


def test_secrets_are_redacted_but_ordinary_keys_are_not() -> None:
    tree = {
        "eval": {
            "generation": {"max_new_tokens": 48},
            "judge": {"api_key": "sk-1", "OPENAI_API_KEY": "sk-2"},
        },
        "logging": {"wandb_token": "w", "password": "p"},
        "n_tokens": 3,
    }
    clean = scrub_secrets(tree)
    assert clean["eval"]["generation"]["max_new_tokens"] == 48 and clean["n_tokens"] == 3
    text = json.dumps(clean)
    assert "sk-1" not in text and "sk-2" not in text and '"w"' not in text and '"p"' not in text


def test_manifest_keeps_config_values_and_drops_secrets(tmp_path) -> None:
    write_manifest(tmp_path, "r1", {"eval": {"generation": {"max_new_tokens": 48}}, "judge_api_key": "sk-x"})
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["config"]["eval"]["generation"]["max_new_tokens"] == 48
    assert "sk-x" not in (tmp_path / "manifest.json").read_text()
    assert manifest["versions"]["trl"] and "started" in manifest


def test_a_write_interrupted_before_its_rename_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    import os

    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})

    def killed(*args: object) -> None:
        raise KeyboardInterrupt  # as if the process died between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"a": 2})
    monkeypatch.undo()
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left behind


def test_atomic_dir_leaves_nothing_when_the_block_fails(tmp_path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_status_tracks_stages_and_errors(tmp_path) -> None:
    status = Status(tmp_path)
    status.start("train")
    status.done("train", 1.5)
    status.start("generate")
    status.fail("generate", "boom")
    data = read_json(tmp_path / "status.json")
    assert data["state"] == "failed" and data["stage"] == "generate" and data["error"] == "boom"
    assert data["stages"]["train"] == {**data["stages"]["train"], "state": "done", "seconds": 1.5}
    Status(tmp_path).done("train", 0.0, skipped=True)
    assert read_json(tmp_path / "status.json")["stages"]["train"]["state"] == "done"  # keeps the real timing
