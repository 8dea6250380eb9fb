"""`nhl predict`: the top classes of images for a checkpoint, an expert, or an exported file.

Sources (`open_predictor`):

* a model or expert folder (`config.json` + `model.safetensors`; a training run stands for its
  best, else last, checkpoint), run with PyTorch; `--attend` sets top-down attention scales on it;
* an exported ONNX file, run with onnxruntime on CPU, classes and preprocessing read from its
  metadata;
* an exported TorchScript file (`nhl export --format torchscript`), the same from its extra files.

Images are decoded exactly as evaluation does (`nhlcli.data.dataset.ImageFileDataset` in eval mode:
shorter side to img_size/0.875, centre crop, RGB; then `nhlcli.data.augment.Normalize`), so one
decoding path serves training, evaluation and prediction. Probabilities are the softmax over all
the model's classes (an expert's softmax runs over its own classes only). Unreadable files are
skipped and listed, not fatal. Every batch's logits must have one column per class and be finite: a
model with NaN/inf weights is refused at its first batch (NhlError), never reported as p = nan.
`predictions.csv` is written through `nhlcli.csvsafe` (no cell runs as a spreadsheet formula).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import SequentialSampler

from nhlcli.csvsafe import csv_text
from nhlcli.data.augment import Normalize
from nhlcli.data.dataset import ImageFileDataset, check_image_file, eval_resize_size
from nhlcli.data.folders import IMAGE_SUFFIXES, scan_images
from nhlcli.data.loader import make_loader
from nhlcli.errors import NhlError
from nhlcli.fileio import register_input, special_kind, write_text_atomic
from nhlcli.model.network import require_finite_logits

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[tuple[str, str, float], ...]  # (class id, name, probability), best first

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "top": [{"class": c, "name": n, "probability": p} for c, n, p in self.top],
        }


@dataclass
class PredictReport:
    source: str
    kind: str  # checkpoint | onnx | torchscript
    classes: int
    img_size: int
    top_k: int
    attention: dict[str, Any] | None
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. attention that changed nothing

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.source,
            "kind": self.kind,
            "classes": self.classes,
            "img_size": self.img_size,
            "top": self.top_k,
            "attention": self.attention,
            "images": len(self.predictions),
            "predictions": [p.to_dict() for p in self.predictions],
            "skipped": list(self.skipped),
            "warnings": list(self.warnings),
        }

    def csv_text(self) -> str:
        """One row per image and rank: path, rank, class, name, probability."""
        rows = (
            [p.path, rank, cid, name, f"{prob:.6f}"]
            for p in self.predictions
            for rank, (cid, name, prob) in enumerate(p.top, start=1)
        )
        return csv_text(["path", "rank", "class", "name", "probability"], rows)

    def write_csv(self, path: str | Path) -> None:
        """Write `csv_text` to `path` (atomically); `-` writes it to standard output."""
        if str(path) == "-":
            sys.stdout.write(self.csv_text())
            sys.stdout.flush()
            return
        try:
            write_text_atomic(Path(path), self.csv_text())
        except OSError as e:
            raise NhlError(f"cannot write {path}: {e.strerror or e}") from None

    def write_dir(self, project: str | Path, name: str = "exp", exist_ok: bool = False) -> Path:
        """`project/NAME` (numbered like training runs): predictions.json and predictions.csv."""
        import json

        from nhlcli.rundirs import numbered_dir

        out = numbered_dir(project, name, exist_ok)
        write_text_atomic(out / "predictions.json", json.dumps(self.to_dict(), indent=1))
        self.write_csv(out / "predictions.csv")
        return out


# -------------------------------------------------------------------------------------- predictors
class Predictor:
    """Logits for normalised float batches, with the class list and the input size."""

    kind = ""

    def __init__(self, source: str, class_ids: list[str], names: list[str], img_size: int) -> None:
        self.source = source
        self.class_ids = class_ids
        self.names = names
        self.img_size = img_size
        self.attention: dict[str, Any] | None = None

    def logits(self, x: torch.Tensor) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def attention_warning(self, x: torch.Tensor) -> str | None:
        """Why the attention set by `--attend` changes nothing on the batch `x`, or None."""
        return None


class TorchPredictor(Predictor):
    kind = "checkpoint"

    def __init__(
        self, source: str, model: Any, img_size: int, device: torch.device, precision: str = "fp32"
    ) -> None:
        super().__init__(source, model.class_ids, [c.name for c in model.tree.classes], img_size)
        self.model = model.to(device).prepare_inference()
        self.device = device
        self.precision = precision  # fp32 | bf16 (autocast, nhlcli.precision)
        if model.attention_level is not None:
            self.attention = {"level": model.attention_level, "scales": dict(model.attention)}

    def logits(self, x: torch.Tensor) -> np.ndarray:
        from nhlcli.precision import autocast

        with torch.no_grad(), autocast(self.precision, self.device):
            return self.model(x.to(self.device)).float().cpu().numpy()

    def attention_warning(self, x: torch.Tensor) -> str | None:
        from nhlcli.model.attention import attention_effect, inert_attention_warning

        if self.model.attention_level is None:
            return None
        effect = attention_effect(self.model, x.to(self.device))
        return inert_attention_warning(self.model, effect)


class OnnxPredictor(Predictor):
    kind = "onnx"

    def __init__(self, source: str, session: Any, info: Any) -> None:
        super().__init__(source, info.class_ids, [c["name"] for c in info.classes], info.img_size)
        self.session = session
        if info.config:
            self.attention = info.config.get("attention")

    def logits(self, x: torch.Tensor) -> np.ndarray:
        from nhlcli.exporters.onnx_runtime import run_chunked

        # a fixed-batch export runs in chunks, the last one padded
        return run_chunked(self.session, x.numpy().astype(np.float32, copy=False), self.source)


class TorchScriptPredictor(Predictor):
    kind = "torchscript"

    def __init__(self, source: str, module: Any, info: Any) -> None:
        super().__init__(source, info.class_ids, [c["name"] for c in info.classes], info.img_size)
        self.module = module
        if info.config:
            self.attention = info.config.get("attention")

    def logits(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), torch.jit.optimized_execution(False):
            return self.module(x).numpy()


def open_predictor(
    source: str | Path,
    attend: str | None = None,
    img_size: int | None = None,
    device: str = "auto",
    trust_torchscript: bool = False,
    precision: str = "fp32",
) -> Predictor:
    """A predictor for a model/expert folder, an .onnx file or a TorchScript file.

    Model folders (safetensors + JSON) and ONNX files are data: loading them runs no code from the
    file. A TorchScript file can run arbitrary code as it loads, so it is refused (NhlError, before
    it is opened) unless `trust_torchscript` is set.
    """
    from nhlcli.precision import check_precision

    path = Path(source)
    from nhlcli.devices import resolve_device

    on = resolve_device(device) if path.is_dir() else "cpu" if device in ("cpu", "auto") else "cuda"
    check_precision(precision, on)
    if path.is_dir():
        return _torch_predictor(path, attend, img_size, device, precision)
    if precision != "fp32":
        raise NhlError(
            f"--precision {precision} applies to model folders; an exported file runs at the "
            "precision it was exported in (nhl export --quantize int8 for int8)"
        )
    if not path.exists():
        raise NhlError(f"model not found: {path}")
    kind = special_kind(path)
    if kind is not None:  # never opened: reading a FIFO blocks until something writes to it
        raise NhlError(f"model {path} is {kind}, not a model file or folder")
    register_input(path)
    suffix = path.suffix.lower()
    if suffix not in ONNX_SUFFIXES + TORCHSCRIPT_SUFFIXES:
        raise NhlError(
            f"{path}: not a model folder, .onnx file or TorchScript file (.pt); "
            "pass a checkpoint/expert folder or a file from `nhl export`"
        )
    if attend:
        raise NhlError(
            "--attend cannot change an exported file: its attention scales were baked in at "
            "export; "
            "export again with `nhl export ... --attend`, or predict with the model folder"
        )
    if device not in ("cpu", "auto"):
        raise NhlError(
            "exported files are run on the CPU here (onnxruntime / TorchScript): drop --device"
        )
    if suffix in ONNX_SUFFIXES:
        from nhlcli.exporters.metadata import read_onnx_info

        info = read_onnx_info(path)
        _check_size(path, info.img_size, img_size)
        from nhlcli.exporters.onnx_runtime import open_session

        return OnnxPredictor(str(path), open_session(path, str(path)), info)
    from nhlcli.exporters.metadata import read_torchscript_info

    info, module = read_torchscript_info(path, trusted=trust_torchscript)
    _check_size(path, info.img_size, img_size)
    return TorchScriptPredictor(str(path), module, info)


def _check_size(path: Path, exported: int, wanted: int | None) -> None:
    if wanted is not None and wanted != exported:
        raise NhlError(
            f"{path} was exported for {exported} px images; --img-size {wanted} needs a new export "
            f"(nhl export ... --img-size {wanted})"
        )


def _torch_predictor(
    path: Path, attend: str | None, img_size: int | None, device: str, precision: str = "fp32"
) -> Predictor:
    from nhlcli.checkpoint import load_model
    from nhlcli.checkpoint_dirs import resolve_checkpoint
    from nhlcli.model.attention import apply_attend
    from nhlcli.model.config import check_img_size

    folder = resolve_checkpoint(path)
    model = load_model(folder)
    apply_attend(model, attend)
    size = check_img_size(img_size if img_size is not None else model.img_size, "--img-size")
    from nhlcli.devices import resolve_device

    return TorchPredictor(str(path), model, size, resolve_device(device), precision)


# ------------------------------------------------------------------------------------------ images
def list_images(inputs: Sequence[str | Path], img_size: int | None = None) -> list[str]:
    """Image files named directly or found in folders (recursively, sorted), duplicates dropped.

    A file named directly that nhl will not decode (a FIFO, a device, more pixels than the bound,
    counted for a JPEG at the size it decodes to for `img_size`) is one NhlError."""
    if not inputs:
        raise NhlError("no images given")
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = scan_images(p)
            if not found:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise NhlError(f"no images in folder {p} (looked for {suffixes})")
            out.extend(found)
        elif p.exists():
            register_input(p)
            shorter = eval_resize_size(img_size) if img_size else None
            check_image_file(str(p), shorter)
            out.append(str(p))
        else:
            raise NhlError(f"image or folder not found: {p}")
    return list(dict.fromkeys(out))


def check_options(top: int, batch_size: int) -> None:
    if top < 1:
        raise NhlError("--top must be at least 1")
    if batch_size < 1:
        raise NhlError("--batch-size must be at least 1")


def predict_images(
    predictor: Predictor,
    images: Sequence[str],
    top: int = 5,
    batch_size: int = 16,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    distances: np.ndarray | None = None,
) -> PredictReport:
    """Top-`top` classes (softmax probabilities, best first) for every decodable image.

    With `distances` (k x k tree distances between the classes), the classes are ranked by CRM
    risk, least first (`nhlcli.evaluation.hierarchical_distance`), not by probability. Attention
    that changes no probability on the first batch is a line in `report.warnings`, with why."""
    check_options(top, batch_size)
    k = min(top, len(predictor.class_ids))
    report = PredictReport(
        predictor.source,
        predictor.kind,
        len(predictor.class_ids),
        predictor.img_size,
        k,
        predictor.attention,
    )
    samples = [(path, i) for i, path in enumerate(images)]  # the label carries the image's index
    dataset = ImageFileDataset(samples, predictor.img_size, mode="eval")
    if workers is None:
        workers = 0 if len(samples) <= 4 * batch_size else 2
    loader = make_loader(
        dataset, batch_size, SequentialSampler(range(len(samples))), workers, False
    )
    normalize = Normalize()
    done = 0
    for batch in loader:
        report.skipped.extend(batch.bad_paths)
        done += len(batch.labels) + len(batch.bad_paths)
        if len(batch.labels):
            x = normalize(batch.images)
            logits = _checked_logits(predictor, predictor.logits(x))
            if not report.predictions:  # the first batch: does --attend change anything?
                warning = predictor.attention_warning(x)
                report.warnings += [warning] if warning else []
            probs = _softmax(logits)
            key = -probs if distances is None else probs @ distances.T
            order = np.argsort(key, axis=1, kind="stable")[:, :k]
            for row, idx in enumerate(batch.labels.tolist()):
                ranked = tuple(
                    (predictor.class_ids[j], predictor.names[j], float(probs[row, j]))
                    for j in order[row]
                )
                report.predictions.append(Prediction(images[idx], ranked))
        if progress is not None:
            progress(done, len(samples))
    if not report.predictions:
        raise NhlError(f"none of the {len(images)} image file(s) could be decoded")
    return report


def _checked_logits(predictor: Predictor, logits: np.ndarray) -> np.ndarray:
    """`logits` when they have one finite value per class of the model; NhlError otherwise."""
    width = logits.shape[1] if logits.ndim == 2 else None
    if width != len(predictor.class_ids):
        shape = "x".join(map(str, logits.shape))
        raise NhlError(
            f"{predictor.source}: the model gives outputs of shape {shape} per batch but lists "
            f"{len(predictor.class_ids)} classes; the file was altered or damaged"
        )
    require_finite_logits(torch.from_numpy(logits), predictor.source)
    return logits


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
