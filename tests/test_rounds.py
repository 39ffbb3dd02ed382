"""On-policy data and rounds (issue 15): pairs sampled from a model and judged, a study's chain of rounds with
round 2 starting from (and, with reference: previous, against) round 1's policy, and what stops a round
before any compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError
from bench.core.identity import model_identity
from bench.core.records import Status, read_json, read_jsonl
from bench.launch import round_waves, submit
from bench.pipeline import preflight, run_one
from bench.report import collect_study, write_report
from bench.sources import select
from bench.sources.sampled import PAIRS, sampled_dir
from bench.sources.toy import world
from bench.stages.sample import _pairs
from bench.study import expand
from bench.train.rounds import previous_policy
from tests.helpers import tiny_overrides

ONPOLICY = ("onpolicy.enabled=true", "onpolicy.prompts_count=24", "onpolicy.part_size=10")


def _study(tmp_path: Path, root: Path, name: str, reference: str) -> Path:
    fixed = ", ".join(tiny_overrides(root, "train.max_steps=3"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"study: {name}\nquestion: two rounds\nfixed: [{fixed}]\nvariants:\n  dpo: {{loss.beta: [0.5]}}\n"
        f"rounds: {{count: 2, prompts_per_round: 16, reference: {reference}}}\n"
    )
    return path


def test_sampled_pairs_follow_the_rule_on_the_judges_scores_and_resume_part_by_part(tiny_root) -> None:
    spec = load_spec(tiny_overrides(tiny_root, *ONPOLICY, "train.max_steps=2", "onpolicy.rule=all_pairs"))
    run_dir = run_one(spec)
    folder = sampled_dir(spec)
    lists, pairs = read_jsonl(folder / "lists.jsonl"), read_jsonl(folder / PAIRS)
    provenance = read_json(folder / "provenance.json")
    assert len(lists) == 24 and all(len(item["completions"]) == 4 for item in lists)
    assert len(list((folder / "parts").glob("part-*.jsonl"))) == 3  # 10 + 10 + 4 prompts
    gold = spec.dataset.world.get("gold_alphas", [1.0])[0]
    from bench.toyworld.process import gold_reward

    for item in lists:  # the oracle's scores, exactly
        assert item["scores"] == pytest.approx([gold_reward(c, gold) for c in item["completions"]])
    # all_pairs: every pair of distinct scores, the higher chosen (pairs with an empty side left out)
    scores = [item["scores"] for item in lists]
    expected = sum(1 for s in scores for i in range(4) for j in range(i) if s[i] != s[j])
    assert len(pairs) == expected - provenance["pairs_dropped_empty"]
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    assert provenance["rule"] == "all_pairs" and provenance["judge"] == "gold"
    assert provenance["prompts"] == {"start": 0, "count": 24}
    assert read_json(run_dir / "sampled.json")["folder"] == str(folder)
    # a killed sampler resumes at its first unfinished part, and the result is the same
    before = (folder / PAIRS).read_text()
    (folder / PAIRS).unlink()
    (folder / "parts" / "part-00002.jsonl").unlink()
    kept = (folder / "parts" / "part-00000.jsonl").stat().st_mtime_ns
    from bench.stages.base import Context
    from bench.stages.sample import build_sampled

    build_sampled(Context(spec, preflight(spec), run_dir, spec.checkpoint_dir()))
    assert (folder / PAIRS).read_text() == before
    assert (folder / "parts" / "part-00000.jsonl").stat().st_mtime_ns == kept


def test_two_rounds_the_second_starts_from_and_against_the_first_policy(tiny_root, tmp_path) -> None:
    data, runs = expand(_study(tmp_path, tiny_root, "iter", "previous"))
    assert [r.spec.round.index for r in runs] == [1, 2]
    first, second = runs
    assert second.after == first.spec.run_id and second.spec.round.after == first.spec.run_id
    assert [r.spec.onpolicy.prompts_start for r in runs] == [0, 16]
    assert [[r.spec.run_id for r in w] for w in round_waves(runs)] == [
        [first.spec.run_id],
        [second.spec.run_id],
    ]
    submit(data, runs, runs)
    one, two = first.spec.checkpoint_dir(), second.spec.checkpoint_dir()
    info = read_json(second.spec.run_dir() / "train_info.json")
    assert info["start_model"] == str(one) and info["reference_model"] == str(one)
    assert info["reference_logps"]["identity"] == model_identity(one)  # the loss's reference is round 1's
    sampled = read_json(second.spec.run_dir() / "sampled.json")
    assert sampled["model_path"] == str(one) and sampled["prompts"] == {"start": 16, "count": 16}
    folders = [Path(read_json(r.spec.run_dir() / "sampled.json")["folder"]) for r in runs]
    prompts = [{json.dumps(p["prompt"]) for p in read_jsonl(folder / PAIRS)} for folder in folders]
    assert not prompts[0] & prompts[1]  # a fresh slice each round
    # policy = reference at the start of round 2: the first step's log-ratios are 0, its loss log 2
    first_step = read_jsonl(second.spec.run_dir() / "train_log.jsonl")[0]
    assert first_step["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert (two / "config.json").exists()
    # evaluation measures both rounds against the original reference: one _reference folder
    assert len(list((second.spec.paths.results / "iter" / "_reference").iterdir())) == 1
    # the report follows the chain round by round: each round a variant, joined to the round it continues
    study = collect_study(second.spec.paths.results / "iter")
    runs = study.runs.set_index("run_id")
    assert runs.loc[first.spec.run_id, "variant"] == "dpo/round1"
    assert runs.loc[second.spec.run_id, "variant"] == "dpo/round2"
    assert runs.loc[second.spec.run_id, "after"] == first.spec.run_id
    write_report(second.spec.paths.results / "iter")
    assert (second.spec.paths.results / "iter" / "report" / "frontier.png").exists()


def test_a_round_against_the_original_reference_scores_pairs_with_it(tiny_root, tmp_path) -> None:
    data, runs = expand(_study(tmp_path, tiny_root, "iter_orig", "original"))
    submit(data, runs, runs)
    first, second = runs
    info = read_json(second.spec.run_dir() / "train_info.json")
    original = world(second.spec) / "reference"
    assert info["start_model"] == str(first.spec.checkpoint_dir()) and info["reference_model"] == str(
        original
    )
    assert info["reference_logps"]["identity"] == model_identity(original)
    # the policy starts away from its reference: log-ratios are not 0 at the first step
    assert read_jsonl(second.spec.run_dir() / "train_log.jsonl")[0]["loss"] != pytest.approx(0.6931, abs=1e-4)


def test_a_round_whose_previous_round_failed_stops_before_compute(tiny_root, tmp_path) -> None:
    overrides = tiny_overrides(tiny_root, "study=chain", "round.index=2", "round.after=dpo-prev", *ONPOLICY)
    spec = load_spec(overrides)
    prev_dir = spec.paths.results / "chain" / "dpo-prev"
    with pytest.raises(ConfigError, match="has not finished"):
        previous_policy(spec, wait=False)
    prev_dir.mkdir(parents=True)
    status = Status(prev_dir)
    status.begin_attempt(0.0)
    status.fail("train", "RuntimeError: out of memory")
    with pytest.raises(
        ConfigError,
        match=r"round 2 .* continues round 1 \(run dpo-prev\), which is failed during train: "
        r"RuntimeError: out of memory.*resubmit",
    ):
        run_one(spec)
    assert not sampled_dir(spec).exists()  # nothing sampled


def test_the_rubric_judge_scores_samples_and_best_worst_pairs_them(tiny_root, tmp_path) -> None:
    """onpolicy.judge=rubric (Self-Rewarding's 5-point rubric through a local LM): a pointwise judge, so the
    paper's rule (best against worst) reads its scores; the toy world's own vocabulary cannot be the judge
    (no digit tokens), and the refusal says so before anything is sampled."""
    from bench.core.chat import instruction_text
    from bench.judge.rubric import RubricJudge
    from tests.helpers import make_text_model

    judge_model = make_text_model(tmp_path / "judge")
    spec = load_spec(
        tiny_overrides(
            tiny_root,
            *ONPOLICY,
            "onpolicy.prompts_count=6",
            "onpolicy.judge=rubric",
            f"onpolicy.judge_model={judge_model}",
            "train.max_steps=1",
        )
    )
    run_one(spec)
    folder = sampled_dir(spec)
    lists, pairs = read_jsonl(folder / "lists.jsonl"), read_jsonl(folder / PAIRS)
    judge = RubricJudge(str(judge_model))
    for item in lists[:2]:  # the judge's expected scores, exactly
        expected = judge.scores(instruction_text(item["prompt"]), item["completions"])
        assert item["scores"] == pytest.approx(expected, abs=1e-6)
    assert pairs and all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    by_prompt = {json.dumps(item["prompt"]): item["scores"] for item in lists}
    for p in pairs:  # best against worst
        scores = by_prompt[json.dumps(p["prompt"])]
        assert (p["score_chosen"], p["score_rejected"]) == pytest.approx((max(scores), min(scores)))
    assert read_json(folder / "provenance.json")["judge"] == "rubric"
    for model, match in (("start", "no single token for 0, 1, 2, 3, 4, 5"), ("null", "needs a judge model")):
        bad = load_spec(
            tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.judge=rubric", f"onpolicy.judge_model={model}")
        )
        with pytest.raises(ConfigError, match=match):
            preflight(bad)


def test_bad_onpolicy_settings_fail_before_compute_with_the_fix(tiny_root, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"onpolicy.rule=best_of: pair rule 'best_of' is none of"):
        load_spec(tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.rule=best_of"))
    with pytest.raises(
        ConfigError, match=r"onpolicy.rule=best_worst needs a score.*local_lm only says.*random_pair"
    ):
        preflight(
            load_spec(
                tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.judge=local_lm", "onpolicy.judge_model=start")
            )
        )
    with pytest.raises(ConfigError, match=r"onpolicy.samples=1"):
        load_spec(tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.samples=1"))
    with pytest.raises(ConfigError, match="not a known judge"):
        preflight(load_spec(tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.judge=nobody")))
    # a prompt slice that holds an evaluation prompt: refused before anything is sampled
    spec = load_spec(tiny_overrides(tiny_root, *ONPOLICY))
    from bench.sources.toy import ToyData

    train_prompt = ToyData(spec).dataset_rows()[3]["prompt"]
    prompts = tmp_path / "eval.jsonl"
    prompts.write_text(json.dumps({"instruction": train_prompt}) + "\n")
    spec = load_spec(tiny_overrides(tiny_root, *ONPOLICY, f"eval.prompts={prompts}"))
    with pytest.raises(
        ConfigError, match=r"1 of the 24 prompts onpolicy samples .* are evaluation prompts too"
    ):
        run_one(spec)
    assert not sampled_dir(spec).exists()
    with pytest.raises(ConfigError, match="distinct training prompts: lower them"):
        run_one(load_spec(tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.prompts_start=60")))


def test_unparseable_pairwise_verdicts_are_counted_never_ties(tiny_root) -> None:
    spec = load_spec(
        tiny_overrides(tiny_root, *ONPOLICY, "onpolicy.judge=local_lm", "onpolicy.rule=random_pair")
    )
    lists = [
        {"prompt": "p0", "completions": [" a", " b"], "judged": [0, 1, 0.9]},
        {"prompt": "p1", "completions": [" a", " b"], "judged": [0, 1, None]},
        {"prompt": "p2", "completions": [" a", " b"], "judged": [1, 0, 0.5]},
        {"prompt": "p3", "completions": [" a", " b"], "judged": [1, 0, 0.2]},
    ]
    pairs, counts = _pairs(spec, lists)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("p0", " b", " a"),
        ("p3", " b", " a"),
    ]
    assert counts == {"prompts_without_pair": 2, "malformed_verdicts": 1, "pairs_dropped_empty": 0}


def test_sdpo_partitions_split_the_data_and_each_round_trains_on_its_part(tiny_root, tmp_path) -> None:
    from bench.sources.sampled import partition
    from bench.specs import RoundSpec

    rows = [{"i": i} for i in range(10)]
    parts = [partition(rows, RoundSpec(index=k, partitions=3, partition=k)) for k in (1, 2, 3)]
    assert [[r["i"] for r in p] for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    fixed = ", ".join(tiny_overrides(tiny_root, "train.max_steps=2"))
    path = tmp_path / "sdpo.yaml"
    path.write_text(
        f"study: sdpo\nquestion: q\nfixed: [{fixed}]\nvariants:\n  dpo: {{}}\n"
        "rounds: {count: 2, partitions: true}\n"
    )
    _, runs = expand(path)
    assert [(r.spec.round.partition, r.spec.onpolicy.enabled) for r in runs] == [(1, False), (2, False)]
    assert runs[1].spec.round.after == runs[0].spec.run_id and runs[1].spec.round.reference == "previous"
    mine = [select(r.spec).data.training_rows() for r in runs]
    assert mine[0] and mine[1] and not {json.dumps(r) for r in mine[0]} & {json.dumps(r) for r in mine[1]}


def test_a_judge_whose_verdicts_do_not_parse_fails_the_stage_and_counts_them(tiny_root) -> None:
    """Parts already judged (a resumed sampler reads them back) with 3 of 10 verdicts unparseable: more than
    eval.judge_max_malformed fails with the count; under it they are left out and reported, never ties."""
    from bench.core.records import atomic_write_jsonl
    from bench.stages.base import Context
    from bench.stages.sample import build_sampled

    pairwise = (
        *ONPOLICY,
        "onpolicy.judge=local_lm",
        "onpolicy.rule=random_pair",
        "onpolicy.prompts_count=10",
    )
    for limit, fails in (("0.05", True), ("0.5", False)):
        spec = load_spec(tiny_overrides(tiny_root, *pairwise, f"eval.judge_max_malformed={limit}"))
        sources = select(spec)
        prompts = [r["prompt"] for r in sources.data.dataset_rows()[:10]]
        verdicts = [None, 0.9, 0.2, None, 0.7, 0.6, None, 0.1, 0.8, 0.3]
        lists = [
            {"prompt": p, "completions": [" good", " bad"], "n_tokens": [1, 1], "judged": [0, 1, v]}
            for p, v in zip(prompts, verdicts, strict=True)
        ]
        atomic_write_jsonl(sampled_dir(spec) / "parts" / "part-00000.jsonl", lists)
        ctx = Context(spec, sources, spec.run_dir(), spec.checkpoint_dir())
        if fails:
            with pytest.raises(
                ConfigError, match=r"3 of 10 verdicts did not parse, more than eval.judge_max_malformed"
            ):
                build_sampled(ctx)
            assert not (sampled_dir(spec) / PAIRS).exists()
        else:
            folder = build_sampled(ctx)
            provenance = read_json(folder / "provenance.json")
            assert (provenance["pairs"], provenance["malformed_verdicts"]) == (7, 3)
            assert provenance["prompts_without_pair"] == 3


def test_status_shows_every_later_round_of_a_stopped_chain_blocked_by_its_earliest_stopped_round(
    tmp_path,
) -> None:
    from bench.core.records import atomic_write_json
    from bench.status import status_table

    study = tmp_path / "chain"
    names = ["dpo-r1", "dpo-r2", "dpo-r3"]
    runs = [
        {"run_id": n, "variant": "dpo", "overrides": [], "after": a}
        for n, a in zip(names, [None, *names[:-1]], strict=True)
    ]
    study.mkdir()
    atomic_write_json(study / "study.json", {"study": "chain", "runs": runs, "submissions": []})
    for name in names:
        (study / name).mkdir()
        atomic_write_json(study / name / "manifest.json", {"run_id": name})
    status = Status(study / "dpo-r1")
    status.begin_attempt(0.0)
    status.fail("train", "RuntimeError: out of memory")
    lines = {line.split()[0]: line for line in status_table(study).splitlines()[1:-1]}
    assert lines["dpo-r1"].split()[1] == "failed"
    assert "blocked" in lines["dpo-r2"] and "its previous round dpo-r1 is failed" in lines["dpo-r2"]
    assert "blocked" in lines["dpo-r3"] and "its earlier round dpo-r1 is failed" in lines["dpo-r3"]
    assert status_table(study).splitlines()[-1] == "2 blocked, 1 failed"
