"""On-disk cache of validated model answers, so rebuilding a tree is free and reproducible.

Where: `--cache-dir`, else `$NHL_CACHE_DIR`, else the user cache directory (`$XDG_CACHE_HOME/nhl` or
`~/.cache/nhl` on Linux, `~/Library/Caches/nhl` on macOS, `%LOCALAPPDATA%\\nhl\\cache` on Windows);
entries live under `llm/` in it. The key is the sha256 of the server URL (without credentials), the
model, the prompt version, the request messages, the response schema and the sampling parameters;
the API key is never part of a key or an entry. Only answers that passed validation are stored. An
entry that cannot be read is ignored (and replaced on the next store).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError
from nhlcli.fileio import write_text_atomic

ENTRY_FORMAT = "nhl-llm-cache/1"


def default_cache_dir() -> Path:
    env = os.environ.get("NHL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "nhl" / "cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "nhl"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "nhl"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


class AnswerCache:
    """Validated answers by request key, one JSON file each (`llm/<k[:2]>/<k>.json`)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.dir = self.root / "llm"

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if (
            not isinstance(entry, dict)
            or entry.get("format") != ENTRY_FORMAT
            or "answer" not in entry
        ):
            return None
        return entry

    def put(self, key: str, answer: Any, meta: dict[str, Any]) -> None:
        entry = {
            "format": ENTRY_FORMAT,
            **meta,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "answer": answer,
        }
        try:
            write_text_atomic(
                self.path(key), json.dumps(entry, indent=1, ensure_ascii=False) + "\n"
            )
        except OSError as e:
            raise NhlError(
                f"cannot write the answer cache in {self.dir} ({e.strerror or e}); "
                "use --cache-dir DIR or --no-cache"
            ) from None
