"""The `--llm-*` options, declared once for every command that asks a chat model.

`nhl build-tree --source llm|hybrid` and `nhl cutout --cue-source llm` both take these; their
defaults are those of `nhlcli.hierarchy.llm.settings.LLMSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from nhlcli.hierarchy.llm.settings import DEFAULT_MODEL, LLMSettings

_D = LLMSettings()

LLM_MODEL: Any = typer.Option(
    DEFAULT_MODEL, "--llm-model", "--model", help="The chat model's name (--model: old spelling)."
)
LLM_BASE_URL: Any = typer.Option(
    None,
    "--llm-base-url",
    "--base-url",
    help="An OpenAI-compatible server, e.g. http://localhost:11434/v1 (default: "
    "$OPENAI_BASE_URL, else OpenAI).",
)
LLM_API_KEY_ENV: Any = typer.Option(
    _D.api_key_env, "--llm-api-key-env", "--api-key-env",
    help="The environment variable holding the API key (never written anywhere).",
)  # fmt: skip
LLM_TIMEOUT: Any = typer.Option(
    _D.timeout, "--llm-timeout", "--timeout", help="Seconds to wait for one answer (then retried)."
)
LLM_MAX_REPAIRS: Any = typer.Option(
    _D.max_repairs, "--llm-max-repairs", "--max-repairs",
    help="Times an invalid answer is sent back for repair.",
)  # fmt: skip
LLM_CACHE_DIR: Any = typer.Option(
    None, "--llm-cache-dir", "--cache-dir",
    help="The answer cache (default: $NHL_CACHE_DIR, else the user cache directory).",
)  # fmt: skip
LLM_NO_CACHE: Any = typer.Option(
    False, "--llm-no-cache", "--no-cache", help="Neither read nor write cached answers."
)
LLM_REFRESH: Any = typer.Option(
    False, "--llm-refresh", "--refresh", help="Ask again and replace the cached answers."
)


def llm_values(
    model: str,
    base_url: str | None,
    api_key_env: str,
    timeout: float,
    max_repairs: int,
    cache_dir: Path | None,
    no_cache: bool,
    refresh: bool,
) -> dict[str, Any]:
    """The `LLMSettings` fields of the options above (by field name)."""
    return {
        "model": model,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "timeout": timeout,
        "max_repairs": max_repairs,
        "cache_dir": cache_dir,
        "use_cache": not no_cache,
        "refresh": refresh,
    }
