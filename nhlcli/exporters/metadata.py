"""What an exported model carries besides its weights, and reading it back.

An exported file is self-describing, so `nhl predict` (or any other program) can use it alone:

* the class list in logit order (`classes`: [{"id": wnid, "name": ...}]),
* the preprocessing its input expects (`preprocess`: shorter side resized to `resize`, centre crop
  of `img_size`, RGB, scaled to [0, 1], normalised with the ImageNet `mean`/`std`; NCHW float32),
* the nhl model config (`config`: preset, tree, attention scales baked in, where it was cut from),
* how it was exported and checked (`export`: format version, exporter, opset, dynamic batch, the
  largest logit difference measured against the PyTorch model).

ONNX keeps them as `metadata_props` (string values, JSON where structured) under the keys
`nhl.classes`, `nhl.preprocess`, `nhl.config`, `nhl.export`; TorchScript keeps them as extra files
in the archive (`classes.json`, `preprocess.json`, `nhl_config.json`, `nhl_export.json`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nhlcli.data.augment import IMAGENET_MEAN, IMAGENET_STD
from nhlcli.data.dataset import eval_resize_size
from nhlcli.errors import NhlError
from nhlcli.fileio import register_input
from nhlcli.model.config import check_img_size
from nhlcli.textio import parse_json

EXPORT_FORMAT = "nhl-export/1"
ONNX_KEYS = {
    "classes": "nhl.classes",
    "preprocess": "nhl.preprocess",
    "config": "nhl.config",
    "export": "nhl.export",
}
TORCHSCRIPT_FILES = {
    "classes": "classes.json",
    "preprocess": "preprocess.json",
    "config": "nhl_config.json",
    "export": "nhl_export.json",
}


def preprocess_spec(img_size: int) -> dict[str, Any]:
    """The evaluation transform of `nhlcli.data` (resize, centre crop, normalise) as data."""
    return {
        "img_size": img_size,
        "resize": eval_resize_size(img_size),
        "crop": img_size,
        "color": "RGB",
        "scale": "1/255",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "layout": "NCHW float32",
    }


@dataclass(frozen=True)
class ExportedInfo:
    """The metadata read back from an exported file."""

    path: Path
    format: str  # onnx | torchscript
    classes: list[dict[str, str]]
    preprocess: dict[str, Any]
    config: dict[str, Any] | None
    export: dict[str, Any]

    @property
    def class_ids(self) -> list[str]:
        return [c["id"] for c in self.classes]

    @property
    def img_size(self) -> int:
        return int(self.preprocess["img_size"])


def metadata_strings(
    classes: list[dict[str, str]],
    preprocess: dict[str, Any],
    config: dict[str, Any],
    export: dict[str, Any],
) -> dict[str, str]:
    """The four metadata entries as JSON strings (keys: classes, preprocess, config, export)."""
    values = {"classes": classes, "preprocess": preprocess, "config": config, "export": export}
    return {k: json.dumps(v, ensure_ascii=False, separators=(",", ":")) for k, v in values.items()}


def _decode(entries: dict[str, str], path: Path, fmt: str) -> ExportedInfo:
    parsed: dict[str, Any] = {}
    for key in ("classes", "preprocess", "export"):
        if key not in entries:
            raise NhlError(
                f"{path}: this {fmt} file was not exported by nhl (no '{key}' metadata); "
                "export it with `nhl export`"
            )
    for key, text in entries.items():
        try:
            parsed[key] = parse_json(text, f"{path}: nhl metadata '{key}'", "value")
        except NhlError as e:
            raise NhlError(f"{path}: damaged nhl metadata '{key}' ({e})") from None
    classes = parsed["classes"]
    if not isinstance(classes, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) for c in classes
    ):
        raise NhlError(f"{path}: damaged nhl metadata 'classes' (expected a list of ids)")
    export = parsed["export"]
    if not isinstance(export, dict) or export.get("format") != EXPORT_FORMAT:
        raise NhlError(
            f"{path}: unknown nhl export format {_format_of(export)!r}"
            f" (this nhl reads {EXPORT_FORMAT!r})"
        )
    prep = parsed["preprocess"]
    if not isinstance(prep, dict) or not isinstance(prep.get("img_size"), int):
        raise NhlError(f"{path}: damaged nhl metadata 'preprocess'")
    try:
        check_img_size(prep["img_size"])
    except NhlError as e:
        raise NhlError(f"{path}: damaged nhl metadata 'preprocess' ({e})") from None
    classes = [{"id": c["id"], "name": str(c.get("name", c["id"]))} for c in classes]
    return ExportedInfo(path, fmt, classes, prep, parsed.get("config"), export)


def _format_of(export: Any) -> Any:
    return export.get("format") if isinstance(export, dict) else export


def read_onnx_info(path: str | Path) -> ExportedInfo:
    """The nhl metadata of an ONNX file (without loading its weights)."""
    import onnx

    p = Path(path)
    register_input(p)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except FileNotFoundError:
        raise NhlError(f"ONNX file not found: {p}") from None
    except Exception as e:
        raise NhlError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    props = {m.key: m.value for m in model.metadata_props}
    entries = {k: props[v] for k, v in ONNX_KEYS.items() if v in props}
    return _decode(entries, p, "onnx")


TORCHSCRIPT_RISK = (
    "loading a TorchScript file runs code stored in it (it can do anything your account can)"
)


def read_torchscript_info(path: str | Path, *, trusted: bool = False) -> tuple[ExportedInfo, Any]:
    """The nhl metadata of a TorchScript file and the loaded module (CPU, eval mode).

    TorchScript can execute arbitrary code while it loads (a scripted ``__setstate__``), so the
    file is only opened when the caller says it is `trusted`; otherwise NhlError before anything
    of it is read.
    """
    import torch

    p = Path(path)
    register_input(p)
    if not trusted:
        raise NhlError(
            f"{p}: refusing to load TorchScript without --trust-torchscript: {TORCHSCRIPT_RISK}; "
            "pass it only for files you exported yourself, or predict with the ONNX export or "
            "the model folder"
        )
    if not p.is_file():
        raise NhlError(f"TorchScript file not found: {p}")
    extra = {name: "" for name in TORCHSCRIPT_FILES.values()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit
            module = torch.jit.load(str(p), map_location="cpu", _extra_files=extra)
    except FileNotFoundError:
        raise NhlError(f"TorchScript file not found: {p}") from None
    except Exception as e:  # torch raises many kinds for damaged archives
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise NhlError(f"{p}: not a readable TorchScript file ({first})") from None
    entries = {}
    for key, name in TORCHSCRIPT_FILES.items():
        raw = extra.get(name)
        if raw:
            entries[key] = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    module.eval()
    return _decode(entries, p, "torchscript"), module
