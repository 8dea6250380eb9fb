"""int8 ONNX exports: ONNX Runtime's static quantisation, calibrated and checked on real images.

`quantize_onnx` takes the checked fp32 ONNX file of `nhlcli.exporters.exporter` and quantises it
with `onnxruntime.quantization.quantize_static`: QDQ format (QuantizeLinear/DequantizeLinear
pairs, which ONNX Runtime fuses into int8 kernels), per-channel int8 weights, int8 activations
whose ranges come from the calibration images (MinMax). Nothing here does arithmetic on weights
itself.

Two parts stay fp32 (`nodes_to_exclude`), and the file says which:

* the first convolution (the stem): it sees the raw normalised image, three channels wide; int8
  there costs the most accuracy for the least time;
* the heads: every node after the last global pooling (a few thousand MACs, and the logits'
  range is what the check compares).

Calibration images (`calibration_batch`) are taken class-balanced (round robin over the model's
classes, seeded) from an image folder with one sub-folder per class (its `train/` when there is
one), decoded and normalised exactly like `nhl predict` and `nhl eval` (shorter side resized,
centre crop, ImageNet mean/std). The check runs the int8 and the fp32 file on the same images and
records the share of images whose top-1 class agrees and the largest difference of a softmax
probability; an agreement below `min_agreement` fails the export and writes nothing. The result is
stored in the file's `nhl.export` metadata under ``"quantization"``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nhlcli.errors import NhlError
from nhlcli.exporters.onnx_runtime import open_session, run_chunked

QUANTIZE = ("int8",)
DEFAULT_CALIBRATION_IMAGES = 300
DEFAULT_MIN_AGREEMENT = 0.9
CALIBRATION_SEED = 0
CHUNK = 16  # images per run for a dynamic-batch file


def check_quantize(quantize: str | None, fmt: str, calibration: Any) -> None:
    """One-line errors for options that cannot go together (before anything is exported)."""
    if quantize is None:
        if calibration is not None:
            raise NhlError("--calibration needs --quantize int8")
        return
    if quantize not in QUANTIZE:
        raise NhlError(f"unknown --quantize '{quantize}' (choose from {', '.join(QUANTIZE)})")
    if fmt != "onnx":
        raise NhlError("--quantize int8 needs --format onnx (ONNX Runtime quantisation)")
    if calibration is None:
        raise NhlError("--quantize int8 needs --calibration DIR (a folder of real images)")


def calibration_batch(tree: Any, folder: str | Path, n: int, img_size: int) -> torch.Tensor:
    """`n` normalised images (N, 3, S, S) of the tree's classes, class-balanced (module doc)."""
    from nhlcli.data.augment import Normalize
    from nhlcli.data.dataset import ImageFileDataset, collate_decoded
    from nhlcli.data.folders import index_image_folder, split_dir
    from nhlcli.data.loader import balanced_subset

    if n < 1:
        raise NhlError("--calibration-images must be at least 1")
    root = Path(folder)
    if not root.is_dir():
        raise NhlError(f"calibration folder not found: {root}")
    images = index_image_folder(split_dir(root, "train"), tree, allow_extra=True)
    labels = [label for _, label in images.samples]
    chosen = balanced_subset(labels, n, CALIBRATION_SEED)
    samples = [images.samples[i] for i in chosen]
    dataset = ImageFileDataset(samples, img_size, mode="eval")
    batch = collate_decoded([dataset[i] for i in range(len(dataset))])
    if not len(batch.labels):
        raise NhlError(f"{root}: none of the calibration images could be decoded")
    return Normalize()(batch.images)


def fp32_nodes(proto: Any) -> dict[str, list[str]]:
    """The nodes left in fp32: {"stem": [first Conv], "heads": [nodes after the last pooling]}."""
    nodes = list(proto.graph.node)
    stem = next((n.name for n in nodes if n.op_type == "Conv"), None)
    pools = [i for i, n in enumerate(nodes) if n.op_type in ("GlobalAveragePool", "ReduceMean")]
    heads = [n.name for n in nodes[pools[-1] + 1 :]] if pools else []
    return {"stem": [stem] if stem else [], "heads": heads}


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the calibration batch."""

    def __init__(self, name: str, x: np.ndarray, batch: int | None) -> None:
        step = batch or CHUNK
        whole = len(x) - len(x) % step if batch else len(x)
        self.feeds = iter([{name: x[i : i + step]} for i in range(0, max(whole, 0), step)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantize_onnx(
    data: bytes, calibration: torch.Tensor, min_agreement: float = DEFAULT_MIN_AGREEMENT
) -> tuple[bytes, dict[str, Any]]:
    """The int8 QDQ file for the fp32 ONNX file `data` and its check (module doc)."""
    import onnx

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise NhlError("--quantize needs onnxruntime (pip install 'nhl[export]')") from None
    x = calibration.numpy().astype(np.float32, copy=False)
    proto = onnx.load_from_string(data)
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    fixed = int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None
    if fixed and len(x) < fixed:
        raise NhlError(
            f"the file has a fixed batch of {fixed}; give at least {fixed} calibration images"
        )
    excluded = fp32_nodes(proto)
    reader = _Reader(proto.graph.input[0].name, x, fixed)
    CalibrationDataReader.register(_Reader)
    with tempfile.TemporaryDirectory(prefix="nhl-quantize-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime.quantization warns on the root logger
        try:
            quantize_static(
                str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded["stem"] + excluded["heads"],
            )  # fmt: skip
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise NhlError(f"onnxruntime could not quantise the model: {first}") from None
        finally:
            root.setLevel(level)
        qproto = onnx.load(str(dst))
    fp32, int8 = "the fp32 model", "the int8 model"
    want = _softmax(run_chunked(open_session(data, fp32), x, fp32, CHUNK))
    got = _softmax(run_chunked(open_session(qproto.SerializeToString(), int8), x, int8, CHUNK))
    agreement = float(np.mean(want.argmax(1) == got.argmax(1)))
    info: dict[str, Any] = {
        "precision": "int8",
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, int8 activations "
        "(MinMax calibration)",
        "calibration_images": len(x),
        "top1_agreement": agreement,
        "max_softmax_diff": float(np.max(np.abs(want - got))),
        "min_agreement": min_agreement,
        "fp32_nodes": {
            "stem": excluded["stem"],
            "heads": len(excluded["heads"]),
            "why": "the first convolution and the heads after the last pooling stay fp32",
        },
    }
    if not agreement >= min_agreement:
        raise NhlError(
            f"the int8 model agrees with fp32 on top-1 for only {agreement:.1%} of the "
            f"{len(x)} calibration images (< {min_agreement:.0%}); nothing was written"
        )
    for entry in qproto.metadata_props:
        if entry.key == "nhl.export":
            export = json.loads(entry.value)
            export["quantization"] = info
            entry.value = json.dumps(export, ensure_ascii=False, separators=(",", ":"))
    return bytes(qproto.SerializeToString()), info


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))
