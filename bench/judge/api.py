"""Preflight of AlpacaEval's API annotators: the key and the endpoint exist before any compute is spent.

An AlpacaEval annotator config names a decoder (`fn_completions`, default openai_completions). That decoder
reads its credentials from the environment when it is called, i.e. after training and generation; a missing
key would fail the judge stage hours later. So `check_api_judge` checks here, against the same sources the
decoder reads (alpaca_eval 0.6.6, decoders/openai.py and constants.py):

* key: OPENAI_API_KEYS (comma-separated) or OPENAI_API_KEY, else the client config file
  OPENAI_CLIENT_CONFIG_PATH (default <site-packages>/../client_configs/openai_configs.yaml), whose entries may
  carry api_key and base_url themselves;
* endpoint: OPENAI_API_BASE (alpaca_eval's own variable, read once at import, wins) else OPENAI_BASE_URL (read
  by the openai client); neither = api.openai.com, which is not probed.

When a base URL is set, one TCP connect with a short timeout to exactly that host:port checks that something
listens (a local vLLM or TGI server, say); no request is sent and no other address is contacted (bar the
resolver, for a host name). Key values never appear in messages: only the variable names do.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.core.errors import ConfigError, UnavailableError

CONNECT_TIMEOUT_S = 3.0
# Where the decoders read keys from; their values are masked in logs and errors while a judge runs.
SECRET_VARIABLES = (
    "OPENAI_API_KEYS",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "COHERE_API_KEY",
    "HUGGINGFACEHUB_API_TOKEN",
)

# decoder -> (environment variables of which one must be set, importable packages it needs)
_DECODERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openai_completions": (("OPENAI_API_KEYS", "OPENAI_API_KEY"), ("openai", "tiktoken")),
    "anthropic_completions": (("ANTHROPIC_API_KEY",), ("anthropic",)),
    "google_completions": (("GOOGLE_API_KEY",), ("google.generativeai",)),
    "cohere_completions": (("COHERE_API_KEY",), ("cohere",)),
    "huggingface_api_completions": (("HUGGINGFACEHUB_API_TOKEN",), ("huggingface_hub",)),
    "bedrock_anthropic_completions": ((), ("boto3",)),  # AWS credentials have many sources: left to boto3
}


def _decoders(config: Path) -> set[str]:
    """The decoders an annotator configs.yaml uses (a config may define a pool of several annotators)."""
    import yaml

    data = yaml.safe_load(config.read_text()) or {}
    return {str(a.get("fn_completions", "openai_completions")) for a in data.values() if isinstance(a, dict)}


def _has_package(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _client_config_path() -> Path | None:
    """alpaca_eval's OpenAI client config file, as constants.OPENAI_CLIENT_CONFIG_PATH computes it."""
    if os.environ.get("OPENAI_CLIENT_CONFIG_PATH"):
        return Path(os.environ["OPENAI_CLIENT_CONFIG_PATH"])
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parents[2] / "client_configs" / "openai_configs.yaml"


def _client_config_base_urls(path: Path) -> list[str]:
    """base_url entries of the client config file (its clients may point at several endpoints)."""
    import yaml

    data: Any = yaml.safe_load(path.read_text()) or {}
    clients = [c for v in data.values() if isinstance(v, list) for c in v if isinstance(c, dict)]
    return [str(c["base_url"]) for c in clients if c.get("base_url")]


def check_endpoint(url: str, where: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One bounded TCP connect to url's host:port; ConfigError when nothing answers. Sends no request."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} is not an http(s) URL (e.g. http://localhost:8000/v1)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:
        raise ConfigError(f"{where} has an invalid port") from err
    url = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"  # shown without any user:password@
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        raise UnavailableError(
            f"the judge's endpoint {where}={url!r} is unreachable ({parts.hostname}:{port}: "
            f"{type(err).__name__}: {err}). Start the OpenAI-compatible server first, fix {where}, or "
            "unset it to use api.openai.com."
        ) from err


def _check_openai_endpoint(client_config: Path | None) -> None:
    for var in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):  # alpaca_eval's variable takes precedence
        if os.environ.get(var):
            check_endpoint(os.environ[var], var)
            return
    if client_config is not None and client_config.is_file():
        for url in _client_config_base_urls(client_config):
            check_endpoint(url, f"base_url in {client_config}")


def check_api_judge(name: str, config: Path) -> None:
    """ConfigError when an AlpacaEval annotator config cannot run here: missing key, package or endpoint."""
    for decoder in sorted(_decoders(config)):
        if decoder == "huggingface_local_completions":
            raise ConfigError(
                f"eval.judge={name!r} uses alpaca_eval's huggingface_local_completions, which fails under "
                "transformers 5 (load_in_8bit); use eval.judge=local_lm with eval.judge_model=<model folder>"
            )
        if decoder == "vllm_local_completions":
            import torch

            if not _has_package("vllm") or not torch.cuda.is_available():
                raise UnavailableError(
                    f"eval.judge={name!r} uses vllm_local_completions: it needs vllm installed and a GPU; "
                    "on this machine use eval.judge=local_lm"
                )
            continue
        variables, packages = _DECODERS.get(decoder, ((), ()))
        missing = [p for p in packages if not _has_package(p)]
        if missing:
            raise UnavailableError(
                f"eval.judge={name!r} ({decoder}) needs the packages {missing}: pip install them"
            )
        client_config = _client_config_path() if decoder == "openai_completions" else None
        has_file = client_config is not None and client_config.is_file()
        if variables and not any(os.environ.get(v) for v in variables) and not has_file:
            extra = (
                f", or write alpaca_eval's client config file ({client_config}, or OPENAI_CLIENT_CONFIG_PATH)"
                if decoder == "openai_completions"
                else ""
            )
            local = (
                " For an OpenAI-compatible local server set OPENAI_BASE_URL=http://host:port/v1 and any "
                "placeholder key."
                if decoder == "openai_completions"
                else ""
            )
            raise UnavailableError(
                f"eval.judge={name!r} calls an API ({decoder}) but no key is set: export "
                f"{' or '.join(variables)}{extra} before the run.{local}"
            )
        if decoder == "openai_completions":
            _check_openai_endpoint(client_config)


def _secrets() -> list[str]:
    values = (part.strip() for var in SECRET_VARIABLES for part in os.environ.get(var, "").split(","))
    return [v for v in values if len(v) >= 8]  # shorter values would mask ordinary words


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _RedactSecrets(logging.Filter):
    """Masks key values in log records (message and traceback) on their way to the root handlers."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            record.msg, record.args = _redact(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            trace = logging.Formatter().formatException(record.exc_info)
            if any(s in trace for s in self.secrets):
                record.exc_text = _redact(trace, self.secrets)  # formatters reuse exc_text when it is set
        return True


class _FoldLibraryTracebacks(logging.Filter):
    """alpaca_eval logs every API error and every unparseable verdict with logging.exception, a traceback
    each; the harness handles both (bench.judge.api_calls retries or raises its own one-line error; run_judge
    counts malformed verdicts), so each becomes one line ending in the exception's type and text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and f"{os.sep}alpaca_eval{os.sep}" in record.pathname:
            err = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} [{type(err).__name__}: {err}]", None
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def library_tracebacks_folded() -> Iterator[None]:
    """While a judge runs: alpaca_eval's logged tracebacks are folded into one line (_FoldLibraryTracebacks).
    Enter it before secrets_redacted, so the folded line is masked too."""
    handlers = list(logging.getLogger().handlers)
    folder = _FoldLibraryTracebacks()
    for handler in handlers:
        handler.addFilter(folder)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(folder)


@contextlib.contextmanager
def secrets_redacted() -> Iterator[None]:
    """While a judge runs: keys from the environment are masked in every record reaching the root logger's
    handlers (alpaca_eval logs decoder errors with logging.exception), and an error whose message contains
    one is re-raised with it masked and without the original (run.py writes errors into status.json)."""
    secrets = _secrets()
    handlers = list(logging.getLogger().handlers)
    masker = _RedactSecrets(secrets)
    for handler in handlers:
        handler.addFilter(masker)
    try:
        yield
    except Exception as err:
        message = f"{type(err).__name__}: {err}"
        if any(s in message for s in secrets):
            if isinstance(err, ConfigError):  # the harness's one-line errors keep their type (no traceback)
                raise type(err)(_redact(str(err), secrets)) from None
            raise RuntimeError(f"judge failed: {_redact(message, secrets)}") from None
        raise
    finally:
        for handler in handlers:
            handler.removeFilter(masker)
