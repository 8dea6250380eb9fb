"""Talking to an OpenAI-compatible chat completions server with the `openai` client.

- The API key comes from an environment variable (`OPENAI_API_KEY` unless told otherwise); it is
  given to the client and to nothing else: it never appears in an error message, a cache entry or a
  tree.
- The server is `--base-url`, else `OPENAI_BASE_URL`, else OpenAI.
- Timeouts, rate limits (408/409/429), server errors (5xx) and dropped connections are retried with
  exponential backoff (honouring `Retry-After`); the client's own timeout is used, its own retries
  are switched off so the backoff is ours to set (and tiny in tests).
- A refused connection, a rejected key, an unknown model: one-line `NhlError`s naming the URL.
- Structured answers: JSON-schema `response_format` first; when the server rejects it (HTTP
  400/422), `{"type": "json_object"}`; when that is rejected too, plain text (parsed by
  `answer_text`).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nhlcli.errors import NhlError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
SEED = 20240229
FORMAT_MODES = ("json_schema", "json_object", "text")
RETRY_STATUS = {408, 409, 429}
MAX_BACKOFF_S = 60.0

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
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise NhlError(
            f"no API key: the environment variable {env_name} is not set (a local server that "
            f"ignores keys accepts any value, e.g. {env_name}=local)"
        )
    return key


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


class ChatClient:
    """One server and model; counts the HTTP requests it makes (retries included)."""

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str,
        timeout: float,
        retry: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import openai

        self.model = model
        self.url = resolve_base_url(base_url)
        self.server = public_url(self.url)
        self.api_key_env = api_key_env
        self._key = resolve_api_key(api_key_env)
        self.timeout = timeout
        self.retry = retry
        self._sleep = sleep
        self.format_mode = FORMAT_MODES[0]
        self.requests = 0
        self._client = openai.OpenAI(
            api_key=self._key, base_url=self.url, timeout=timeout, max_retries=0
        )

    # ------------------------------------------------------------------ one chat completion
    def complete(
        self, messages: Sequence[Message], schema_name: str, schema: dict[str, Any]
    ) -> ChatReply:
        """Ask once (retrying transient faults), in the best JSON mode the server accepts."""
        import openai

        retries = 0
        while True:
            try:
                self.requests += 1
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=list(messages),  # type: ignore[arg-type]
                    temperature=0,
                    seed=SEED,
                    **self._format_kwargs(schema_name, schema),
                )
            except openai.APITimeoutError:
                fault, retry_after = f"no answer within {self.timeout:g} s", None
            except openai.APIConnectionError as e:
                if _refused(e):
                    raise NhlError(
                        f"cannot connect to the model server at {self.server}: connection refused "
                        "(is it running? check --base-url / OPENAI_BASE_URL)"
                    ) from None
                fault, retry_after = f"connection failed ({_root_cause(e)})", None
            except (openai.APIResponseValidationError, ValueError) as e:  # 200, but not JSON
                fault = f"an answer that is not a chat completion ({type(e).__name__})"
                retry_after = None
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
                if isinstance(getattr(response, "choices", None), list):
                    return self._reply(response)
                fault, retry_after = "an answer that is not a chat completion", None
            if retries >= self.retry.max_retries:
                raise NhlError(
                    f"the model server at {self.server} failed {retries + 1} time(s), "
                    f"last: {fault}; try again later or raise --timeout"
                )
            self._sleep(self.retry.wait(retries, retry_after))
            retries += 1

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

    def _reply(self, response: Any) -> ChatReply:
        choices = getattr(response, "choices", None) or []
        if not choices:
            return ChatReply("", None, None, self.format_mode)
        message = choices[0].message
        refusal = getattr(message, "refusal", None)
        return ChatReply(  # an answer echoing the key never reaches a message, cache or tree
            text=self.hide_key((message.content or "") if message is not None else ""),
            finish_reason=choices[0].finish_reason,
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
        """`text` with the API key (in any letter case) replaced by ***."""
        if not self._key:
            return text
        return re.sub(re.escape(self._key), "***", text, flags=re.IGNORECASE)

    def scrub(self, text: str) -> str:
        """One line, at most 300 characters, never the key."""
        text = " ".join(self.hide_key(text).split())
        return text if len(text) <= 300 else text[:297] + "..."

    def _status_error(self, e: Any) -> NhlError:
        status = e.status_code
        if status == 401:
            return NhlError(
                f"the model server at {self.server} rejected the API key from ${self.api_key_env} "
                "(HTTP 401)"
            )
        if status == 403:
            return NhlError(
                f"the model server at {self.server} refused access with the API key from "
                f"${self.api_key_env} (HTTP 403)"
            )
        if status == 404:
            return NhlError(
                f"the model server at {self.server} answered 404 for model '{self.model}' "
                f"(unknown model or wrong --base-url): {self._server_message(e)}"
            )
        return NhlError(
            f"the model server at {self.server} rejected the request (HTTP {status}): "
            f"{self._server_message(e)}"
        )

    def close(self) -> None:
        self._client.close()


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
    text = " ".join(str(last).split()) or type(last).__name__
    return text[:120]


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
