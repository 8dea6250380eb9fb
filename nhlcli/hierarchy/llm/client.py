"""Talking to an OpenAI-compatible chat completions server with the `openai` client.

- The API key comes from an environment variable (`OPENAI_API_KEY` unless told otherwise) and
  must be one line of printable ASCII (checked before any request; the message names the variable,
  never the value); it is given to the client and to nothing else: every error text from outside
  passes `scrub`, which hides the key and its pieces, so it never appears in an error message, a
  cache entry or a tree.
- The server is `--base-url`, else `OPENAI_BASE_URL`, else OpenAI.
- Deadlines: `timeout` bounds each request from sending to the last byte of the answer (a worker
  thread waited for with a timeout, see `ChatClient`); a `Deadline` bounds all requests of one
  build, retries and their waits included. An answer body over MAX_ANSWER_BYTES is refused.
- Timeouts, rate limits (408/409/429), server errors (5xx) and dropped connections are retried with
  exponential backoff (honouring `Retry-After`); the client's own retries are switched off so the
  backoff is ours to set (and tiny in tests).
- A refused connection, a rejected key, an unknown model: one-line `NhlError`s naming the URL.
- Structured answers: JSON-schema `response_format` first; when the server rejects it (HTTP
  400/422), `{"type": "json_object"}`; when that is rejected too, plain text (parsed by
  `answer_text`).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nhlcli.errors import NhlError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
SEED = 20240229
FORMAT_MODES = ("json_schema", "json_object", "text")
RETRY_STATUS = {408, 409, 429}
MAX_BACKOFF_S = 60.0
MAX_ANSWER_BYTES = 2_000_000  # a larger HTTP body is refused (a valid answer is well under 100 kB)
MAX_ERROR_TEXT = 300  # characters of a server's or library's text shown in a message
MIN_SECRET_PIECE = 4  # shorter pieces of a key are not hidden (they would blank common words)
_PIECES = re.compile(r"[!-~]+")

Message = dict[str, str]


def resolve_base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NhlError(f"'{public_url(url)}' is not an http(s) URL for the model server")
    return url.rstrip("/")


def public_url(url: str) -> str:
    """The URL without user, password, query or fragment (safe to show and to store)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def resolve_api_key(env_name: str) -> str:
    """The key from `$env_name`, checked to be one line of printable ASCII (else NhlError)."""
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise NhlError(
            f"no API key: the environment variable {env_name} is not set (a local server that "
            f"ignores keys accepts any value, e.g. {env_name}=local)"
        )
    problem = _key_problem(key)
    if problem:
        raise NhlError(
            f"the API key in ${env_name} {problem}; an API key is one line of printable ASCII "
            "characters without spaces (nothing was sent to the server)"
        )
    return key


def _key_problem(key: str) -> str:
    """What is wrong with a key's characters, in words that never quote the key ("": nothing)."""
    if any(c in "\r\n" for c in key):
        return "spans several lines"
    if any(c in " \t\v\f" for c in key):
        return "holds a space or tab"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "holds a control character"
    if any(ord(c) > 0x7E for c in key):
        return "holds a character that is not ASCII (a typographic quote or dash copied with it?)"
    return ""


def hide_secret(text: str, secret: str) -> str:
    """`text` with `secret`, and every piece of it, replaced by *** in any letter case.

    The pieces are the runs of printable non-space ASCII in the secret, 4 characters or longer: the
    lines of a multi-line key, the parts around a non-ASCII character, as they appear in a quoted
    or escaped form such as `b'Bearer sk-A\\nsk-B'`.
    """
    if not secret:
        return text
    pieces = {secret, *(p for p in _PIECES.findall(secret) if len(p) >= MIN_SECRET_PIECE)}
    for piece in sorted(pieces, key=len, reverse=True):
        text = re.sub(re.escape(piece), "***", text, flags=re.IGNORECASE)
    return text


def scrub(text: str, secret: str) -> str:
    """Text for an error message: the secret hidden first, then one line of at most 300 characters.

    Every error text that could hold the key (server messages, connection failures) goes through
    this one function; hiding comes before the cut, so a cut never leaves part of the key behind.
    """
    text = " ".join(hide_secret(text, secret).split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: str | None
    refusal: str | None
    format_mode: str


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_s: float = 1.0  # first wait; doubles each retry (with jitter), capped at MAX_BACKOFF_S

    def wait(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 <= retry_after <= MAX_BACKOFF_S:
            return retry_after
        base = min(self.backoff_s * 2.0**retry, MAX_BACKOFF_S)
        return base * (0.75 + 0.25 * random.random())


@dataclass(frozen=True)
class Deadline:
    """The bound on all requests of one build: `seconds` from when it was made."""

    seconds: float
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.start + self.seconds - time.monotonic()


class _TooSlow(Exception):
    """The answer was not complete within the request's deadline."""


class _TooLarge(Exception):
    """The answer's body is larger than MAX_ANSWER_BYTES."""


class _BodyFailed(Exception):
    """The connection failed while the answer's body was read (the cause is chained)."""


class ChatClient:
    """One server and model; counts the HTTP requests it makes (retries included).

    Each request has a hard deadline: it runs in a worker thread that `complete` waits for at most
    min(`timeout`, the time the build has left). A request still running then is abandoned: its
    client is closed (which ends the worker at its next read) and a fresh client serves the next
    request. The HTTP library's own timeout (the same number) bounds each single read only.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str,
        timeout: float,
        retry: RetryPolicy,
        deadline: Deadline,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.url = resolve_base_url(base_url)
        self.server = public_url(self.url)
        self.api_key_env = api_key_env
        self._key = resolve_api_key(api_key_env)
        self.timeout = timeout
        self.retry = retry
        self.deadline = deadline
        self._sleep = sleep
        self.format_mode = FORMAT_MODES[0]
        self.requests = 0
        self._client = self._new_client()

    def _new_client(self) -> Any:
        import openai

        return openai.OpenAI(
            api_key=self._key, base_url=self.url, timeout=self.timeout, max_retries=0
        )

    # ------------------------------------------------------------------ one chat completion
    def complete(
        self, messages: Sequence[Message], schema_name: str, schema: dict[str, Any]
    ) -> ChatReply:
        """Ask once (retrying transient faults), in the best JSON mode the server accepts."""
        import openai

        retries = 0
        fault = ""
        while True:
            budget = min(self.timeout, self.deadline.left())
            if budget <= 0:
                raise self._deadline_error(fault)
            retry_after: float | None = None
            try:
                self.requests += 1
                body = self._post(messages, self._format_kwargs(schema_name, schema), budget)
            except (_TooSlow, openai.APITimeoutError):
                fault = f"no complete answer within {_seconds(budget)} s"
            except _TooLarge:
                raise self._error(
                    f"the model server at {self.server} sent an answer larger than "
                    f"{MAX_ANSWER_BYTES:,} bytes, more than nhl accepts (a valid answer is well "
                    "under 100 kB; check the model and the server)"
                ) from None
            except _BodyFailed as e:
                fault = f"connection failed ({self.scrub(_root_cause(e))})"
            except openai.APIConnectionError as e:
                if _refused(e):
                    raise self._error(
                        f"cannot connect to the model server at {self.server}: connection refused "
                        "(is it running? check --base-url / OPENAI_BASE_URL)"
                    ) from None
                fault = f"connection failed ({self.scrub(_root_cause(e))})"
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (400, 422) and self._downgrade_format():
                    continue
                if status in RETRY_STATUS or status >= 500:
                    fault = f"HTTP {status}: {self._server_message(e)}"
                    retry_after = _retry_after(e)
                else:
                    raise self._status_error(e) from None
            else:
                reply = self._reply(body)
                if reply is not None:
                    return reply
                fault = "an answer that is not a chat completion"
            if self.deadline.left() <= 0:
                raise self._deadline_error(fault)
            if retries >= self.retry.max_retries:
                raise self._error(
                    f"the model server at {self.server} failed {retries + 1} time(s), "
                    f"last: {fault}; try again later or raise --llm-timeout"
                )
            wait = self.retry.wait(retries, retry_after)
            if wait >= self.deadline.left():
                raise self._deadline_error(fault)
            self._sleep(wait)
            retries += 1

    def _post(self, messages: Sequence[Message], options: dict[str, Any], seconds: float) -> bytes:
        """The body of one request's answer, waited for at most `seconds` (else _TooSlow)."""
        client = self._client
        outcome: list[Any] = []

        def request() -> None:
            try:
                outcome.append(_read_answer(client, self._request(messages, options), seconds))
            except BaseException as e:  # handed to the waiting thread
                outcome.append(e)

        worker = threading.Thread(target=request, name="nhl-llm-request", daemon=True)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            self._client = self._new_client()
            client.close()  # ends the abandoned request at its next read
            raise _TooSlow
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return bytes(outcome[0])

    def _request(self, messages: Sequence[Message], options: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": list(messages),
            "temperature": 0,
            "seed": SEED,
            **options,
        }

    def _format_kwargs(self, schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
        from nhlcli.hierarchy.llm.schema import response_format

        if self.format_mode == "json_schema":
            return {"response_format": response_format(schema_name, schema)}
        if self.format_mode == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}

    def _downgrade_format(self) -> bool:
        i = FORMAT_MODES.index(self.format_mode)
        if i + 1 >= len(FORMAT_MODES):
            return False
        self.format_mode = FORMAT_MODES[i + 1]
        return True

    def _reply(self, body: bytes) -> ChatReply | None:
        """The first choice of a chat completion body (None: the body is not a chat completion)."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            return None
        if not choices:
            return ChatReply("", None, None, self.format_mode)
        message = choices[0].get("message")
        message = message if isinstance(message, dict) else {}
        content, refusal = message.get("content"), message.get("refusal")
        finish = choices[0].get("finish_reason")
        return ChatReply(  # an answer echoing the key never reaches a message, cache or tree
            text=self.hide_key(content) if isinstance(content, str) else "",
            finish_reason=finish if isinstance(finish, str) else None,
            refusal=self.hide_key(refusal) if isinstance(refusal, str) else None,
            format_mode=self.format_mode,
        )

    # ------------------------------------------------------------------ error messages
    def _server_message(self, e: Any) -> str:
        body = getattr(e, "body", None)
        text = ""
        if isinstance(body, dict):
            err = body.get("error", body)
            text = str(err.get("message", "")) if isinstance(err, dict) else str(err)
        text = text or str(getattr(e, "message", "") or e)
        return self.scrub(text)

    def hide_key(self, text: str) -> str:
        """`text` with the API key (and its pieces, in any letter case) replaced by ***."""
        return hide_secret(text, self._key)

    def scrub(self, text: str) -> str:
        """One line, at most MAX_ERROR_TEXT characters, never the key (see `scrub`)."""
        return scrub(text, self._key)

    def _error(self, message: str) -> NhlError:
        """Every error of the client; its texts from outside went through `scrub` already."""
        return NhlError(self.hide_key(message))

    def _deadline_error(self, fault: str) -> NhlError:
        last = f"; last: {fault}" if fault else ""
        return self._error(
            f"the model server at {self.server} did not finish within --llm-deadline "
            f"({_seconds(self.deadline.seconds)} s for all requests of one build){last}"
        )

    def _status_error(self, e: Any) -> NhlError:
        status = e.status_code
        if status == 401:
            return self._error(
                f"the model server at {self.server} rejected the API key from ${self.api_key_env} "
                "(HTTP 401)"
            )
        if status == 403:
            return self._error(
                f"the model server at {self.server} refused access with the API key from "
                f"${self.api_key_env} (HTTP 403)"
            )
        if status == 404:
            return self._error(
                f"the model server at {self.server} answered 404 for model '{self.model}' "
                f"(unknown model or wrong --base-url): {self._server_message(e)}"
            )
        return self._error(
            f"the model server at {self.server} rejected the request (HTTP {status}): "
            f"{self._server_message(e)}"
        )

    def close(self) -> None:
        self._client.close()


def _read_answer(client: Any, request: dict[str, Any], seconds: float) -> bytes:
    """POST one chat completion request; its body, read up to MAX_ANSWER_BYTES (else _TooLarge)."""
    create = client.chat.completions.with_streaming_response.create
    with create(**request, timeout=seconds) as response:
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise _TooLarge
        except _TooLarge:
            raise
        except Exception as e:  # the connection failed mid-answer
            raise _BodyFailed(str(e)) from e
    return bytes(body)


def _seconds(x: float) -> str:
    return f"{round(x, 1):g}"


def _causes(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _refused(e: BaseException) -> bool:
    return any(isinstance(c, ConnectionRefusedError) for c in _causes(e)) or any(
        "connection refused" in str(c).lower() for c in _causes(e)
    )


def _root_cause(e: BaseException) -> str:
    last = _causes(e)[-1]
    return str(last) or type(last).__name__


def _retry_after(e: Any) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue
    return None
