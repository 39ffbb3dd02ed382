"""A local OpenAI-compatible server for the judge's fault tests: stdlib http.server in a thread on 127.0.0.1.

It implements POST /v1/chat/completions (what alpaca_eval's openai_completions sends for chat models) and
answers each request as a script says: a good verdict, an HTTP error status, a reply held back past the
client's timeout, or a malformed verdict. Every request is recorded (path, body, the reply it got), so a test
can count what the client sent. A good verdict prefers the longer of the two outputs shown, answered as the
chat API does for both AlpacaEval 2 judges: next-token log-probabilities of "m"/"M" (the weighted judge) or a
tool call ranking the two (the _fn judges).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What the server does with one request. status != 200: an OpenAI-style error body with that status;
    delay_s: seconds to wait before answering (past the client's timeout, the client gives up first);
    content: the assistant's text instead of a verdict (a malformed one), answered without logprobs."""

    status: int = 200
    delay_s: float = 0.0
    content: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


OK = Reply()
# OpenAI's own rate-limit wording: alpaca_eval matches "rate " in the error text
RATE_LIMITED = Reply(429, headers={"retry-after-ms": "10"})
SERVER_ERROR = Reply(500)
MALFORMED = Reply(content="Both outputs have merit; I cannot choose.")

Script = Callable[[int, str], Reply]  # (the server's request number from 0, the judge prompt) -> the reply


def sequence(*replies: Reply) -> Script:
    """The n-th request from when this script is set gets replies[n]; requests past the end good verdicts."""
    pending = list(replies)
    return lambda n, prompt: pending.pop(0) if pending else OK


@dataclass
class Request:
    path: str
    prompt: str
    reply: Reply


def _verdict(body: dict[str, Any]) -> dict[str, Any]:
    """A good chat completion: P(second output better) = sigmoid((len(second) - len(first)) / 10)."""
    text = body["messages"][-1]["content"]
    outputs = re.findall(r'"output": """(.*?)"""', text, re.S)  # the two outputs, in the order shown
    p_second = 1 / (1 + math.exp(-(len(outputs[1]) - len(outputs[0])) / 10))
    if body.get("tools"):  # the _fn configs: a ranking through a tool call
        best, worst = ("M", "m") if p_second > 0.5 else ("m", "M")
        ranking = {"ordered_models": [{"model": best, "rank": 1}, {"model": worst, "rank": 2}]}
        call = {"name": "make_partial_leaderboard", "arguments": json.dumps(ranking)}
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_0", "type": "function", "function": call}],
        }
        logprobs = None
    else:
        top = [
            {"token": "m", "logprob": math.log(1 - p_second), "bytes": None},
            {"token": "M", "logprob": math.log(p_second), "bytes": None},
        ]
        answer = "M" if p_second > 0.5 else "m"
        message = {"role": "assistant", "content": answer}
        best_lp = max(t["logprob"] for t in top)
        logprobs = {"content": [{"token": answer, "logprob": best_lp, "bytes": None, "top_logprobs": top}]}
    return _completion(body, message, logprobs)


def _completion(body: dict[str, Any], message: dict[str, Any], logprobs: Any) -> dict[str, Any]:
    return {
        "id": "stub",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "stub"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": message, "logprobs": logprobs}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }


class OpenAIStub:
    """`with OpenAIStub(script) as stub:` serves on 127.0.0.1 (a free port) until the block ends; point the
    client at `stub.base_url`. `stub.requests` lists what arrived, `stub.count(status)` how many got that."""

    def __init__(self, script: Script = lambda n, prompt: OK):
        self.script = script
        self.requests: list[Request] = []
        self.authorizations: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True  # a reply still sleeping past the client's timeout dies with us
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def count(self, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if status is None or r.reply.status == status)

    def prompts(self, status: int | None = None) -> list[str]:
        with self._lock:
            return [r.prompt for r in self.requests if status is None or r.reply.status == status]

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, path: str, body: dict[str, Any], authorization: str) -> Reply:
        prompt = body["messages"][-1]["content"] if body.get("messages") else str(body.get("prompt", ""))
        with self._lock:
            reply = self.script(len(self.requests), prompt)
            self.requests.append(Request(path, prompt, reply))
            self.authorizations.append(authorization)
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                reply = stub._record(self.path, body, self.headers.get("Authorization", ""))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    limited = reply.status == 429
                    kind = "rate_limit_exceeded" if limited else "server_error"
                    text = "Rate limit reached for requests" if limited else "The server had an error"
                    self._send(reply.status, {"error": {"message": text, "type": kind}}, reply.headers)
                elif reply.content is not None:
                    message = {"role": "assistant", "content": reply.content}
                    self._send(200, _completion(body, message, None), reply.headers)
                else:
                    self._send(200, _verdict(body), reply.headers)

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout) first
                    pass

        return Handler


def serving(script: Script) -> Iterator[OpenAIStub]:
    """A pytest fixture body: the stub for the duration of one test."""
    with OpenAIStub(script) as stub:
        yield stub
