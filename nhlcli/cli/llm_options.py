"""The `--llm-*` options of `nhl cutout --cue-source llm`, generated from `LLMSettings`.

`nhlcli.hierarchy.llm.settings.LLMSettings` declares each option once (help, default, spelling
and old spelling); `nhl build-tree --source llm|hybrid|induced` generates the same options from it
(`build_tree_cmd.py`), `nhl cutout` lists them by name below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nhlcli.cli.setting_options import option, param_name
from nhlcli.hierarchy.llm.settings import LLMSettings
from nhlcli.setting_fields import given_value, specs_of

SPECS = {s.name: s for s in specs_of(LLMSettings)}

MODEL: Any = option(SPECS["model"])
BASE_URL: Any = option(SPECS["base_url"])
API_KEY_ENV: Any = option(SPECS["api_key_env"])
TIMEOUT: Any = option(SPECS["timeout"])
DEADLINE: Any = option(SPECS["deadline"])
MAX_REPAIRS: Any = option(SPECS["max_repairs"])
CACHE_DIR: Any = option(SPECS["cache_dir"])
NO_CACHE: Any = option(SPECS["use_cache"])
REFRESH: Any = option(SPECS["refresh"])


def llm_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """The given `LLMSettings` fields (by name) from a command's `llm_*` parameters (its
    `locals()`); a field not given keeps its declared default."""
    out = {}
    for spec in SPECS.values():
        value = options.get(param_name(spec))
        if value is not None:
            out[spec.name] = given_value(spec, value)
    return out
