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

DEFAULT_MODEL = "gpt-4o"


@dataclass
class LLMSettings:
    model: str = DEFAULT_MODEL
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI
    api_key_env: str = "OPENAI_API_KEY"
    max_repairs: int = 3  # times an invalid answer is sent back for repair
    cache_dir: Path | None = None  # None: $NHL_CACHE_DIR, else the user cache directory
    use_cache: bool = True
    refresh: bool = False  # ask again even when cached (and store the new answers)
    timeout: float = 120.0  # seconds per request, from sending it to the answer's last byte
    deadline: float = 1800.0  # seconds for all requests of one build (retries and waits included)
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
