"""Calls to an AlpacaEval API judge that ride out the API's faults: retries with backoff, finished answers
kept on disk, and one clear error when the retry budget is spent. Used by run_judge for every annotator
whose decoder is alpaca_eval's openai_completions (OpenAI and any OpenAI-compatible server).

What the libraries already do, and why this module adds to it (alpaca_eval 0.6.6 decoders/openai.py; openai):

* Retries. alpaca_eval's loop retries only errors whose text contains "rate " (a fixed 2 s sleep, 10 tries),
  re-raises a 5xx or a timeout at once and, when it gives up, returns an empty completion that later parses
  as a missing verdict. The openai client retries 408/409/429/5xx, timeouts and dropped connections, but on a
  schedule nobody can set (0.5 s doubling to 8 s, 2 retries by default). So both are set to one try and the
  retrying is done here, per prompt: eval.judge_api.retries more tries after the first, waiting backoff_s,
  2*backoff_s, 4*backoff_s, ... (each wait capped at max_backoff_s; a longer Retry-After from the server wins,
  up to the same cap), every request limited to timeout_s. Prompt formatting, chat messages, tool calls and
  logprobs stay alpaca_eval's: its decoder is called with one prompt at a time.
* Finished answers. alpaca_eval's own cache (caching_path) saves once per chunk and breaks under pandas 3
  (see run_judge), so each answer is appended here, as it arrives, to a JSON-lines file beside the judge's
  folder, keyed by a hash of the decoder's arguments and the prompt; a rerun after a failure sends only the
  prompts without an answer. run_judge deletes the file once annotations.json is written.
* Giving up. Once a prompt has spent its tries no new prompt is started, and the stage fails with one line
  (UnavailableError, which the CLI prints without a traceback) naming the endpoint, the last status seen and
  the fix. Client errors (401, 404, ...) are not retried. The status codes come from the HTTP responses
  themselves (an httpx event hook on the client's connection pool), not from the error text.

A verdict the judge answered but nobody can parse is not an API fault: it is returned like any other answer,
and run_judge counts it as malformed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.core.errors import ConfigError, UnavailableError
from bench.specs import JudgeAPISpec

log = logging.getLogger(__name__)
DEFAULT_WORKERS = 5  # alpaca_eval's OPENAI_MAX_CONCURRENCY default
Decoder = Callable[..., dict[str, list[Any]]]


def is_retried(status: int | None) -> bool:
    """The faults worth another try: no HTTP answer (timeout, dropped connection), 408, 409, 429 and 5xx (the
    openai client's own choice)."""
    return status is None or status in (408, 409, 429) or status >= 500


def wait_s(api: JudgeAPISpec, retry: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `retry` (0: the first): backoff_s * 2**retry, or the server's Retry-After
    when that is longer, never more than max_backoff_s."""
    return min(max(api.backoff_s * 2**retry, retry_after or 0.0), api.max_backoff_s)


def _retry_after(headers: Any) -> float | None:
    """Seconds a response asks the client to wait (retry-after-ms, retry-after in seconds or as a date)."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _endpoint(url: str) -> str:
    """scheme://host:port/path of a request: no user:password@, no query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


@dataclass(frozen=True)
class Failure:
    """One failed try: where it went, the HTTP status (None: no answer) and what happened."""

    endpoint: str
    status: int | None
    what: str
    retry_after: float | None = None


def _fix(failure: Failure, api: JudgeAPISpec) -> str:
    status = failure.status
    if status in (401, 403):
        return "check the key (OPENAI_API_KEY, OPENAI_API_KEYS or alpaca_eval's client config file)"
    if status in (400, 404, 422):
        return (
            "check that the base URL (OPENAI_BASE_URL or OPENAI_API_BASE) ends in /v1 and that the server "
            "serves the judge config's model_name"
        )
    if status == 429:
        return (
            "the rate limit or quota is spent: rerun later, or lower eval.judge_api.workers or raise "
            "eval.judge_api.retries / eval.judge_api.max_backoff_s"
        )
    if failure.what.startswith("no answer within"):
        return f"the server is slow or stuck: check it, or raise eval.judge_api.timeout_s={api.timeout_s:g}"
    if status is None:
        return "start the server, or fix OPENAI_BASE_URL / OPENAI_API_BASE"
    return "the server failed: check its health and logs and rerun (finished answers are kept)"


class Stopped(Exception):
    """Another prompt gave up first: this one is left for the rerun."""


class ResumableCompletions:
    """An alpaca_eval fn_completions: the wrapped decoder, one prompt a request, with retries (eval.judge_api)
    and every answer kept in `cache` (a JSON-lines file) until the judge's annotations are written."""

    def __init__(self, decoder: Decoder, cache: Path, api: JudgeAPISpec, judge: str):
        self.decoder, self.cache, self.api, self.judge = decoder, Path(cache), api, judge
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- the kept answers

    @staticmethod
    def key(prompt: str, kwargs: dict[str, Any]) -> str:
        text = json.dumps([prompt, kwargs], sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def load(self) -> dict[str, dict[str, Any]]:
        """The answers kept so far; a line a killed run cut short is skipped (its prompt is asked again)."""
        if not self.cache.exists():
            return {}
        kept: dict[str, dict[str, Any]] = {}
        for line in self.cache.read_text().splitlines():
            try:
                row = json.loads(line)
                kept[row["key"]] = row["answer"]
            except (ValueError, KeyError, TypeError):
                continue
        return kept

    def _keep(self, key: str, answer: dict[str, Any]) -> None:
        line = json.dumps({"key": key, "answer": answer}, default=repr) + "\n"
        with self._lock:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache, "a") as fh:  # a whole line a write: a kill cuts at most the last one
                fh.write(line)

    # ---------------------------------------------------------------- one try, then retries

    def _try(self, prompt: str, kwargs: dict[str, Any]) -> dict[str, Any] | Failure:
        """One request through alpaca_eval's decoder: the answer ({field: value}) or the Failure."""
        import openai

        urls: list[str] = []
        answers: list[tuple[int, float | None]] = []
        http = openai.DefaultHttpxClient(
            event_hooks={
                "request": [lambda request: urls.append(str(request.url))],
                "response": [lambda r: answers.append((r.status_code, _retry_after(r.headers)))],
            }
        )
        client_kwargs = dict(kwargs.get("client_kwargs") or {})
        client_kwargs |= {"max_retries": 0, "timeout": self.api.timeout_s, "http_client": http}
        call = {**kwargs, "num_procs": 1, "n_retries": 1, "sleep_time": 0, "client_kwargs": client_kwargs}
        try:
            out = self.decoder(prompts=[prompt], **call)
        except openai.APITimeoutError:
            return Failure(self._where(urls), None, f"no answer within {self.api.timeout_s:g} s")
        except openai.APIConnectionError as err:
            cause = type(err.__cause__).__name__ if err.__cause__ else "connection error"
            return Failure(self._where(urls), None, f"no connection ({cause})")
        except openai.APIStatusError as err:
            retry_after = _retry_after(err.response.headers)
            return Failure(self._where(urls), err.status_code, f"HTTP {err.status_code}", retry_after)
        finally:
            http.close()
        answer = {name: values[0] for name, values in out.items()}
        entry = answer.get("completions_all")
        # alpaca_eval swallows a rate-limit error (and a content filter's refusal) into this placeholder; the
        # status it saw tells them apart: a fault to retry, or the judge's answer (parsed later as malformed)
        if isinstance(entry, dict) and set(entry) == {"text", "total_tokens"} and answers:
            status, retry_after = answers[-1]
            if is_retried(status):
                return Failure(self._where(urls), status, f"HTTP {status}", retry_after)
        return answer

    @staticmethod
    def _where(urls: list[str]) -> str:
        return _endpoint(urls[-1]) if urls else "the judge's API"

    def ask(self, prompt: str, kwargs: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
        """The answer to one prompt after up to 1 + retries tries; Failure-carrying GaveUp when they are spent
        or the fault is not worth retrying, Stopped when another prompt gave up meanwhile."""
        for retry in range(self.api.retries + 1):
            outcome = self._try(prompt, kwargs)
            if not isinstance(outcome, Failure):
                return outcome
            if not is_retried(outcome.status) or retry == self.api.retries:
                raise GaveUp(outcome, retry + 1)
            delay = wait_s(self.api, retry, outcome.retry_after)
            log.warning(
                "judge %s: %s %s (try %d of %d); retrying in %.2g s",
                self.judge, outcome.endpoint, outcome.what, retry + 1, self.api.retries + 1, delay,
            )  # fmt: skip
            if stop.wait(delay):
                raise Stopped
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- the fn_completions contract

    def __call__(self, prompts: Sequence[str], **kwargs: Any) -> dict[str, list[Any]]:
        kwargs.pop("num_procs", None)  # concurrency is eval.judge_api.workers here
        keys = [self.key(p, kwargs) for p in prompts]
        kept = self.load()
        todo = {k: p for k, p in zip(keys, prompts, strict=True) if k not in kept}
        if len(todo) < len(set(keys)):
            log.info(
                "judge %s: %d of %d answers kept from an earlier try; asking for %d",
                self.judge, len(set(keys)) - len(todo), len(set(keys)), len(todo),
            )  # fmt: skip
        if todo:
            self._ask_all(todo, kwargs, kept, len(set(keys)))
        answers = [kept[k] for k in keys]
        return {name: [a.get(name) for a in answers] for name in answers[0]} if answers else {}

    def _ask_all(
        self, todo: dict[str, str], kwargs: dict[str, Any], kept: dict[str, dict[str, Any]], total: int
    ) -> None:
        stop = threading.Event()
        gave_up: list[GaveUp] = []

        def work(key: str, prompt: str) -> None:
            if stop.is_set():
                return
            try:
                answer = self.ask(prompt, kwargs, stop)
            except Stopped:
                return
            except BaseException as err:  # a fault, or a bug: start nothing new either way
                stop.set()
                if isinstance(err, GaveUp):
                    gave_up.append(err)
                    return
                raise
            self._keep(key, answer)
            with self._lock:
                kept[key] = answer

        with ThreadPoolExecutor(max_workers=self.api.workers or DEFAULT_WORKERS) as pool:
            futures = [pool.submit(work, k, p) for k, p in todo.items()]
            for future in futures:
                future.result()
        if gave_up:
            raise gave_up[0].error(self, sum(1 for k in todo if k not in kept), total)


class GaveUp(Exception):
    """A prompt's tries are spent (or its fault is not worth a retry)."""

    def __init__(self, failure: Failure, tries: int):
        super().__init__(failure.what)
        self.failure, self.tries = failure, tries

    def error(self, calls: ResumableCompletions, missing: int, total: int) -> ConfigError:
        f, api = self.failure, calls.api
        if is_retried(f.status):
            how = (
                f"on all {self.tries} tries (waits of {api.backoff_s:g} s doubling, at most "
                f"{api.max_backoff_s:g} s each)"
            )
        else:
            how = "(not retried: the request itself was refused)"
        kind = UnavailableError if is_retried(f.status) or f.status in (401, 403) else ConfigError
        return kind(
            f"judge {calls.judge}: {f.endpoint} gave {f.what} {how}; {total - missing} of {total} answers "
            f"are kept in {calls.cache} and a rerun asks only for the other {missing}. Fix: {_fix(f, api)}"
        )
