"""An API judge against a local OpenAI-compatible server that fails (tests/judge/openai_stub.py): the real
openai client over real HTTP, through alpaca_eval's real annotator and decoder, as the judge stage runs them.
429, 500 and timeouts are retried with backoff; finished answers survive a failed stage and a rerun asks only
for the missing ones; malformed verdicts are counted and reported, never read as ties; a spent retry budget
ends in one line naming the endpoint, the status and the fix."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.config import load_spec
from bench.core.errors import ConfigError, UnavailableError
from bench.judge import load_annotations
from bench.judge.annotate import partial_answers_path
from bench.judge.api_calls import is_retried, wait_s
from bench.specs import RunSpec
from tests.helpers import make_text_model, run_judge
from tests.judge.openai_stub import MALFORMED, OK, RATE_LIMITED, SERVER_ERROR, OpenAIStub, Reply, sequence

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")
# test_judges' dummy key: alpaca_eval reads OPENAI_API_KEY once, at its import, so test modules share it
SECRET = "sk-bench-test-SECRET-4b1d2c0ffee"
WEIGHTED = "weighted_alpaca_eval_gpt4_turbo"
FAST = [  # the retry settings shrunk: 3 tries, waits of 10, 20 ms; one request at a time (a fixed order)
    "eval.judge_api.retries=2",
    "eval.judge_api.backoff_s=0.01",
    "eval.judge_api.max_backoff_s=0.05",
    "eval.judge_api.timeout_s=0.5",
    "eval.judge_api.workers=1",
]
POLICY = {(0, 0): " good film", (0, 1): " the plot was dull and slow", (1, 0): " a fine cast", (1, 1): " bad"}
REFERENCE = {(0, 0): " dull", (0, 1): " it was a very good film", (1, 0): " lovely music", (1, 1): " ok"}


def rows(texts: dict[tuple[int, int], str]) -> list[dict[str, Any]]:
    return [
        {"prompt_id": p, "sample": s, "prompt": f"review : film plot {p}", "completion": c}
        for (p, s), c in texts.items()
    ]


def make_spec(tmp_path: Path, *extra: str) -> RunSpec:
    base = ["model=toy_tiny", "dataset=toy_tiny", "eval=tiny", "eval.bootstrap=20", f"eval.judge={WEIGHTED}"]
    paths = [f"paths.cache={tmp_path}", f"paths.results={tmp_path}/results"]
    return load_spec([*base, *paths, *FAST, *extra])


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The server, and the environment the harness documents pointing the client at it (a dummy key)."""
    with OpenAIStub() as server:
        for var in ("OPENAI_API_KEYS", "OPENAI_API_BASE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_CLIENT_CONFIG_PATH", str(tmp_path / "no_client_config.yaml"))
        yield server


def expected_preference(row: Any) -> float:
    """The stub's verdict: 1 + P(second better) = 1 + sigmoid((len(output_2) - len(output_1)) / 10)."""
    return 1 + 1 / (1 + math.exp(-(len(row.output_2) - len(row.output_1)) / 10))


def check_verdicts(path: Path, n: int) -> pd.DataFrame:
    df = load_annotations(path)
    assert len(df) == n
    for row in df.itertuples():
        assert row.preference == pytest.approx(expected_preference(row), abs=1e-9)
    return df


def test_the_backoff_schedule() -> None:
    spec = make_spec(Path("/nonexistent"), "eval.judge_api.backoff_s=1", "eval.judge_api.max_backoff_s=10")
    api = spec.eval.judge_api
    assert [wait_s(api, k) for k in range(5)] == [1, 2, 4, 8, 10]  # doubling, capped
    assert wait_s(api, 0, retry_after=3) == 3 and wait_s(api, 2, retry_after=3) == 4  # the longer wait wins
    assert wait_s(api, 0, retry_after=120) == 10  # a server's Retry-After is capped too
    assert [is_retried(s) for s in (None, 408, 409, 429, 500, 503, 400, 401, 404)] == [True] * 6 + [False] * 3
    with pytest.raises(ConfigError, match=r"eval\.judge_api\.retries >= 0"):
        make_spec(Path("/nonexistent"), "eval.judge_api.retries=-1")


def test_429_500_and_a_timeout_are_retried_with_backoff(
    stub: OpenAIStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the first prompt meets a rate limit, a server error and a reply held past the client's timeout
    stub.script = sequence(RATE_LIMITED, SERVER_ERROR, Reply(delay_s=1.5))
    spec = make_spec(tmp_path, "eval.judge_api.retries=3", "eval.judge_api.timeout_s=0.3")
    with caplog.at_level(logging.INFO):
        path = run_judge(spec, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    check_verdicts(path, 8)
    assert [r.reply.status for r in stub.requests] == [429, 500] + [200] * 9  # 8 answers + the timed-out one
    assert len(set(stub.prompts()[:4])) == 1  # the four tries were one prompt's
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [m.split(": ", 1)[1] for m in retries] == [
        f"{stub.base_url}/chat/completions HTTP 429 (try 1 of 4); retrying in 0.01 s",
        f"{stub.base_url}/chat/completions HTTP 500 (try 2 of 4); retrying in 0.02 s",
        f"{stub.base_url}/chat/completions no answer within 0.3 s (try 3 of 4); retrying in 0.04 s",
    ]
    assert "Traceback" not in caplog.text and SECRET not in caplog.text
    assert not partial_answers_path(spec, tmp_path / "run").exists()  # all in annotations.json now
    board = pd.read_csv(path.parent / "leaderboard.csv", index_col=0)
    assert board.loc["policy", "n_pairs"] == 8 and board.loc["policy", "n_malformed"] == 0


def test_a_spent_retry_budget_keeps_finished_answers_and_a_rerun_asks_only_for_the_rest(
    stub: OpenAIStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = make_spec(tmp_path)
    stub.script = lambda n, prompt: OK if n < 3 else SERVER_ERROR  # three answers, then the server breaks
    with caplog.at_level(logging.INFO), pytest.raises(UnavailableError) as err:
        run_judge(spec, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    assert stub.count() == 3 + 3 and stub.count(500) == 3  # the 4th prompt's 3 tries; nothing new after
    message = str(err.value)
    kept = partial_answers_path(spec, tmp_path / "run")
    assert message == (
        f"judge {WEIGHTED}: {stub.base_url}/chat/completions gave HTTP 500 on all 3 tries (waits of 0.01 s "
        f"doubling, at most 0.05 s each); 3 of 8 answers are kept in {kept} and a rerun asks only for the "
        "other 5. Fix: the server failed: check its health and logs and rerun (finished answers are kept)"
    )
    assert len(kept.read_text().splitlines()) == 3
    assert not (tmp_path / "run/judgments" / WEIGHTED).exists()  # no annotations from a failed stage
    assert SECRET not in message and SECRET not in caplog.text and "Traceback" not in caplog.text

    answered = set(stub.prompts(200))
    stub.script = lambda n, prompt: OK  # the server recovers
    path = run_judge(spec, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    second = stub.prompts()[6:]
    assert len(second) == 5 and not answered & set(second)  # only the missing ones were asked
    check_verdicts(path, 8)  # kept answers and new ones alike
    assert not kept.exists()


def test_a_cut_last_line_of_kept_answers_is_asked_again(stub: OpenAIStub, tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    stub.script = lambda n, prompt: OK if n < 2 else SERVER_ERROR
    with pytest.raises(UnavailableError):
        run_judge(spec, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    kept = partial_answers_path(spec, tmp_path / "run")
    lines = kept.read_text().splitlines()
    kept.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # a kill in the middle of a write
    stub.script = lambda n, prompt: OK
    n = stub.count()
    check_verdicts(run_judge(spec, tmp_path / "run", rows(POLICY), rows(REFERENCE)), 8)
    assert stub.count() - n == 7


def test_a_refused_key_is_not_retried(stub: OpenAIStub, tmp_path: Path) -> None:
    stub.script = lambda n, prompt: Reply(401)
    with pytest.raises(UnavailableError) as err:
        run_judge(make_spec(tmp_path), tmp_path / "run", rows(POLICY), rows(REFERENCE))
    assert stub.count() == 1
    assert "gave HTTP 401 (not retried: the request itself was refused)" in str(err.value)
    assert "Fix: check the key (OPENAI_API_KEY" in str(err.value) and SECRET not in str(err.value)


@pytest.mark.parametrize("judge", [WEIGHTED, "alpaca_eval_gpt4_turbo_fn"])
def test_malformed_verdicts_are_counted_and_reported_never_tied(
    stub: OpenAIStub, tmp_path: Path, caplog: pytest.LogCaptureFixture, judge: str
) -> None:
    stub.script = sequence(OK, MALFORMED)  # the second pair's judge answers prose
    spec = make_spec(tmp_path, f"eval.judge={judge}", "eval.judge_max_malformed=0.2")
    with caplog.at_level(logging.INFO):
        path = run_judge(spec, tmp_path / "run", rows(POLICY), rows(REFERENCE))
    df = load_annotations(path)
    assert len(df) == 7 and df["preference"].notna().all()
    board = pd.read_csv(path.parent / "leaderboard.csv", index_col=0).loc["policy"]
    assert (board["n_pairs"], board["n_malformed"], board["n_total"], board["n_draws"]) == (8, 1, 7, 0)
    # the win rate is the mean over the 7 verdicts: the malformed one is no tie (1.5) and no win
    assert board["win_rate"] == pytest.approx(100 * (df["preference"] - 1).mean())
    ours = [r.getMessage() for r in caplog.records if r.name == "bench.judge.annotate"]
    assert any("1 of 8 verdicts were malformed (unparseable judge output)" in m for m in ours)
    assert "Traceback" not in caplog.text

    stub.script = sequence(OK, MALFORMED)  # the default eval.judge_max_malformed (5%) refuses 1 in 8
    with pytest.raises(ConfigError, match=r"1 of 8 verdicts were malformed \(unparseable\), more than"):
        strict = make_spec(tmp_path, f"eval.judge={judge}")
        run_judge(strict, tmp_path / "run2", rows(POLICY), rows(REFERENCE))
    assert not (tmp_path / "run2/judgments" / judge).exists()


def test_the_cli_ends_a_spent_retry_budget_with_one_line(
    stub: OpenAIStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench run --stages judge` on a run whose generations exist: exit code 2 and one line on stderr."""
    from bench.cli import main
    from bench.stages.base import Context

    model = make_text_model(tmp_path / "sft")
    overrides = [
        "model=local", f"model.path={model}", "dataset=tiny_chat", "eval=chat", f"eval.judge={WEIGHTED}",
        "eval.lm_eval.tasks=[]", f"paths.root={tmp_path}", f"paths.results={tmp_path}/results",
        f"paths.cache={tmp_path}/cache", f"paths.scratch={tmp_path}/scratch", "logging.wandb=false", *FAST,
    ]  # fmt: skip
    spec = load_spec(overrides)
    ctx = Context(spec, None, spec.run_dir(), model)  # type: ignore[arg-type]
    for folder, texts in ((ctx.run_dir, POLICY), (ctx.reference_dir, REFERENCE)):
        folder.mkdir(parents=True)
        (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(texts)))
    stub.script = lambda n, prompt: RATE_LIMITED
    assert main(["run", *overrides, "--stages", "judge"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    endpoint = f"{stub.base_url}/chat/completions"
    assert err[-1].startswith(f"error: judge {WEIGHTED}: {endpoint} gave HTTP 429 on all 3 tries")
    assert "Fix: the rate limit or quota is spent" in err[-1]
    assert stub.count() == 3 and "Traceback" not in "\n".join(err) and SECRET not in "\n".join(err)
    status = json.loads((ctx.run_dir / "status.json").read_text())
    assert "HTTP 429" in json.dumps(status) and SECRET not in json.dumps(status)
