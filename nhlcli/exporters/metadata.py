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

Metadata is read as untrusted input: the class list must be non-empty with unique, non-empty ids,
and for ONNX it is checked against the graph (`check_onnx_graph`: as many classes as the output is
wide, `img_size` equal to the input's fixed height and width), so an edited file is one line naming
the mismatch before anything runs or is written.
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
from nhlcli.fileio import register_input, special_kind
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
    _check_class_ids([c["id"] for c in classes], path)
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


def _check_class_ids(ids: list[str], path: Path) -> None:
    if not ids:
        raise NhlError(f"{path}: damaged nhl metadata 'classes' (the class list is empty)")
    if not all(i.strip() for i in ids):
        raise NhlError(f"{path}: damaged nhl metadata 'classes' (a class id is empty)")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise NhlError(
                f"{path}: damaged nhl metadata 'classes' (class {i[:40]!r} is listed twice)"
            )
        seen.add(i)


def _static_dims(value_info: Any) -> list[int | None]:
    """The dimensions of a graph input or output; None where it is symbolic or unknown."""
    dims = value_info.type.tensor_type.shape.dim
    return [int(d.dim_value) if d.HasField("dim_value") else None for d in dims]


def check_onnx_graph(model: Any, info: ExportedInfo) -> None:
    """NhlError when the graph's input and output disagree with the metadata read back.

    nhl exports one input (N, 3, img_size, img_size) and one output (N, classes); a dimension that
    is symbolic in the file (the dynamic batch) is not checked here. Predicting checks the width of
    what the model really returns as well.
    """
    path = info.path
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1 or len(model.graph.output) < 1:
        raise NhlError(
            f"{path}: the graph has {len(inputs)} input(s) and {len(model.graph.output)} "
            "output(s); an nhl export has one image input and one logits output"
        )
    shape = _static_dims(inputs[0])
    size = info.img_size
    if len(shape) != 4 or shape[1] not in (None, 3):
        raise NhlError(
            f"{path}: the graph's input has shape {_shape_text(shape)}, not (N, 3, {size}, {size})"
        )
    if any(d is not None and d != size for d in shape[2:]):
        raise NhlError(
            f"{path}: nhl metadata says img_size {size} but the graph's input is "
            f"{_shape_text(shape)}; the file was altered or damaged"
        )
    out = _static_dims(model.graph.output[0])
    if len(out) != 2:
        raise NhlError(f"{path}: the graph's output has shape {_shape_text(out)}, not (N, classes)")
    if out[1] is not None and out[1] != len(info.classes):
        raise NhlError(
            f"{path}: nhl metadata lists {len(info.classes)} classes but the graph gives "
            f"{out[1]} outputs per image; the file was altered or damaged"
        )


def _shape_text(dims: list[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _format_of(export: Any) -> Any:
    return export.get("format") if isinstance(export, dict) else export


def read_onnx_info(path: str | Path) -> ExportedInfo:
    """The nhl metadata of an ONNX file (without loading its weights)."""
    import onnx

    p = Path(path)
    kind = special_kind(p)
    if kind is not None:  # never opened: reading a FIFO blocks until something writes to it
        raise NhlError(f"ONNX file {p} is {kind}, not a file")
    register_input(p)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except FileNotFoundError:
        raise NhlError(f"ONNX file not found: {p}") from None
    except Exception as e:
        raise NhlError(f"{p}: not a readable ONNX file ({type(e).__name__})") from None
    props = {m.key: m.value for m in model.metadata_props}
    entries = {k: props[v] for k, v in ONNX_KEYS.items() if v in props}
    info = _decode(entries, p, "onnx")
    check_onnx_graph(model, info)
    return info


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
