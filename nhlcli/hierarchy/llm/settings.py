"""`LLMSettings`: where and how nhl asks a chat model; one type for tree building and for cues.

`nhl build-tree --source llm|hybrid` and `nhl cutout --cue-source llm` take the same `--llm-*`
options, with the same defaults, into this one type; `LLMOptions` (the tree source) adds what only
tree building needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from nhlcli.errors import NhlError
from nhlcli.hierarchy.llm.session import BuildReport, ProgressFn, Session
from nhlcli.setting_fields import setting

DEFAULT_MODEL = "gpt-4o"


@dataclass
class LLMSettings:
    """Declared with `setting(...)`: each field with a flag is an `--llm-*` option of
    `nhl build-tree` (generated) and `nhl cutout`; the others are for library callers."""

    model: str = setting(
        DEFAULT_MODEL, "The chat model's name.", flag="--llm-model", aliases=("--model",)
    )
    base_url: str | None = setting(  # None: $OPENAI_BASE_URL, else OpenAI
        None,
        "An OpenAI-compatible server, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL, "
        "else OpenAI).",
        flag="--llm-base-url",
        aliases=("--base-url",),
    )
    api_key_env: str = setting(
        "OPENAI_API_KEY",
        "The environment variable holding the API key (never written anywhere).",
        flag="--llm-api-key-env",
        aliases=("--api-key-env",),
    )
    max_repairs: int = setting(  # times an invalid answer is sent back for repair
        3,
        "Times an invalid answer is sent back for repair.",
        flag="--llm-max-repairs",
        aliases=("--max-repairs",),
    )
    cache_dir: Path | None = setting(  # None: $NHL_CACHE_DIR, else the user cache directory
        None,
        "The answer cache (default: $NHL_CACHE_DIR, else the user cache directory).",
        flag="--llm-cache-dir",
        aliases=("--cache-dir",),
    )
    use_cache: bool = setting(  # the flag switches it off
        True,
        "Neither read nor write cached answers.",
        flag="--llm-no-cache",
        aliases=("--no-cache",),
    )
    refresh: bool = setting(  # ask again even when cached (and store the new answers)
        False,
        "Ask again and replace the cached answers.",
        flag="--llm-refresh",
        aliases=("--refresh",),
    )
    timeout: float = setting(  # seconds per request
        120.0,
        "Seconds one request may take, up to the answer's last byte (then retried).",
        flag="--llm-timeout",
        aliases=("--timeout",),
    )
    deadline: float = setting(  # seconds for all requests of one build (retries, waits included)
        1800.0,
        "Seconds all requests of the command may take together, retries included.",
        flag="--llm-deadline",
    )
    max_retries: int = 4  # per request, for timeouts, 429, 5xx, dropped connections
    retry_backoff: float = 1.0  # first wait in seconds, doubling per retry

    def problems(self) -> list[str]:
        p = []
        if not self.model.strip():
            p.append("--llm-model must not be empty")
        if self.max_repairs < 0:
            p.append("--llm-max-repairs must be 0 or more")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            p.append("--llm-timeout must be a positive number of seconds")
        if not (math.isfinite(self.deadline) and self.deadline > 0):
            p.append("--llm-deadline must be a positive number of seconds")
        if self.max_retries < 0:
            p.append("--llm-max-retries must be 0 or more")
        if not (math.isfinite(self.retry_backoff) and self.retry_backoff >= 0):
            p.append("the retry backoff must be a non-negative number")
        return p

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise NhlError("bad model options", problems)

    def session(self, progress: ProgressFn | None, report: BuildReport) -> Session:
        """A session with the model (client, cache, retries), settings checked."""
        self.check()
        return Session(self, progress, report)
