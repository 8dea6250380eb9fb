"""The `--llm-*` options, declared once for every command that asks a chat model.

`nhl build-tree --source llm|hybrid` and `nhl cutout --cue-source llm` both take these; their
defaults are those of `nhlcli.hierarchy.llm.settings.LLMSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from nhlcli.hierarchy.llm.settings import DEFAULT_MODEL, LLMSettings

_D = LLMSettings()

MODEL: Any = typer.Option(
    DEFAULT_MODEL, "--llm-model", "--model", help="The chat model's name (--model: old spelling)."
)
# for commands where --model names something else (build-tree: --model CKPT of --source induced)
MODEL_NO_ALIAS: Any = typer.Option(DEFAULT_MODEL, "--llm-model", help="The chat model's name.")
BASE_URL: Any = typer.Option(
    None,
    "--llm-base-url",
    "--base-url",
    help="An OpenAI-compatible server, e.g. http://localhost:11434/v1 (default: "
    "$OPENAI_BASE_URL, else OpenAI).",
)
API_KEY_ENV: Any = typer.Option(
    _D.api_key_env, "--llm-api-key-env", "--api-key-env",
    help="The environment variable holding the API key (never written anywhere).",
)  # fmt: skip
TIMEOUT: Any = typer.Option(
    _D.timeout, "--llm-timeout", "--timeout",
    help="Seconds one request may take, up to the answer's last byte (then retried).",
)  # fmt: skip
DEADLINE: Any = typer.Option(
    _D.deadline, "--llm-deadline",
    help="Seconds all requests of the command may take together, retries included.",
)  # fmt: skip
MAX_REPAIRS: Any = typer.Option(
    _D.max_repairs, "--llm-max-repairs", "--max-repairs",
    help="Times an invalid answer is sent back for repair.",
)  # fmt: skip
CACHE_DIR: Any = typer.Option(
    None, "--llm-cache-dir", "--cache-dir",
    help="The answer cache (default: $NHL_CACHE_DIR, else the user cache directory).",
)  # fmt: skip
NO_CACHE: Any = typer.Option(
    False, "--llm-no-cache", "--no-cache", help="Neither read nor write cached answers."
)
REFRESH: Any = typer.Option(
    False, "--llm-refresh", "--refresh", help="Ask again and replace the cached answers."
)


def llm_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """The `LLMSettings` fields (by name) from a command's `llm_*` parameters (its `locals()`)."""
    return {
        "model": options["llm_model"],
        "base_url": options["llm_base_url"],
        "api_key_env": options["llm_api_key_env"],
        "timeout": options["llm_timeout"],
        "deadline": options["llm_deadline"],
        "max_repairs": options["llm_max_repairs"],
        "cache_dir": options["llm_cache_dir"],
        "use_cache": not options["llm_no_cache"],
        "refresh": options["llm_refresh"],
    }
