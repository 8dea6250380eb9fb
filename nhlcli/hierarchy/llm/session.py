"""One build's state: the chat client (made on the first cache miss), the cache, counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nhlcli.hierarchy.llm.cache import AnswerCache
from nhlcli.hierarchy.llm.client import (
    ChatClient,
    Deadline,
    RetryPolicy,
    public_url,
    resolve_base_url,
)

if TYPE_CHECKING:
    from nhlcli.hierarchy.llm.settings import LLMSettings

# progress(done, total, description): total grows as a large build discovers its sub-tasks
ProgressFn = Callable[[int, int, str], None]


@dataclass
class BuildReport:
    """What a build cost, filled in by the builders (not in the tree: it differs between runs)."""

    model: str | None = None  # the chat model asked (None: none was)
    requests: int = 0  # HTTP requests sent, retries included
    steps: int = 0  # validated answers used
    cached_steps: int = 0  # of those, taken from the cache
    repairs: int = 0  # repair prompts sent
    format_mode: str | None = None  # json_schema | json_object | text (None: nothing was sent)
    llm_classes: int = 0  # classes the model placed (hybrid: the ambiguous ones)
    exchange_hashes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things to tell the user


class Session:
    """One build's conversation with the model, under the given `LLMSettings`."""

    def __init__(
        self, settings: LLMSettings, progress: ProgressFn | None, report: BuildReport
    ) -> None:
        self.model = settings.model
        self.base_url = settings.base_url
        self.server = public_url(resolve_base_url(settings.base_url))
        self.api_key_env = settings.api_key_env
        self.timeout = settings.timeout
        self.retry = RetryPolicy(settings.max_retries, settings.retry_backoff)
        self.max_repairs = settings.max_repairs
        self.deadline = Deadline(settings.deadline)  # starts now: bounds the whole build
        self.cache = AnswerCache(settings.cache_dir) if settings.use_cache else None
        self.read_cache = settings.use_cache and not settings.refresh
        self.report = report
        report.model = settings.model
        self._progress = progress
        self._done = 0
        self._total = 0
        self._client: ChatClient | None = None

    @property
    def client(self) -> ChatClient:
        if self._client is None:
            self._client = ChatClient(
                self.model, self.base_url, self.api_key_env, self.timeout, self.retry, self.deadline
            )
        return self._client

    def plan(self, steps: int) -> None:
        """Announce `steps` more answers to come (for the progress display)."""
        self._total += steps
        self._tell("")

    def step_done(self, description: str) -> None:
        self._done += 1
        self._tell(description)

    def _tell(self, description: str) -> None:
        if self._progress is not None:
            self._progress(self._done, max(self._total, self._done), description)

    def close(self) -> None:
        if self._client is not None:
            self.report.requests = self._client.requests
            self.report.format_mode = self._client.format_mode
            self._client.close()
