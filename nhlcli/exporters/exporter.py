"""Export a model or expert to ONNX or TorchScript, checked against PyTorch before it is written.

* **ONNX.** torch 2.13's `torch.onnx.export` defaults to the torch.export-based ("dynamo")
  exporter. Both exporters handle the grouped levels (index_select, reshape, grouped convolutions)
  and give the same logits; nhl uses the TorchScript-based exporter by default
  (`exporter="legacy"`, opset 17) because it is 5–15× faster here (a 64 px N3HL: about 3 s instead
  of about 40 s), and keeps the dynamo exporter (`exporter="dynamo"`, opset 18; it needs
  onnxscript) as the option that will stay when torch removes the old one; `auto` picks legacy
  while it exists. The batch dimension is dynamic on request (`dynamic_axes` / `dynamic_shapes`),
  otherwise fixed to `batch` (1 by default).
* **TorchScript.** `torch.jit.trace` of the eval-mode model; the traced graph keeps the batch size
  and the image size symbolic (checked: a trace at batch 2 runs batch 5 and other sizes exactly).

The attention scales set on the model (e.g. by `--attend`) are constants of the graph: they are
baked in. The check: the exported file is run (onnxruntime on CPU for ONNX, `torch.jit.load` for
TorchScript) on a random batch (seeded) and its logits are compared with the PyTorch model's; the
export fails with one line when they differ by more than `atol + rtol·max|logit|`. Only then is the
file written (atomically, with the class list and preprocessing inside, see
`nhlcli.exporters.metadata`).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nhlcli.errors import NhlError
from nhlcli.exporters.metadata import (
    EXPORT_FORMAT,
    ONNX_KEYS,
    TORCHSCRIPT_FILES,
    metadata_strings,
    preprocess_spec,
)
from nhlcli.exporters.onnx_runtime import open_session, run_session
from nhlcli.fileio import write_bytes_atomic
from nhlcli.model.config import check_img_size
from nhlcli.model.network import HierNet, require_finite_logits

FORMATS = ("onnx", "torchscript")
EXPORTERS = ("auto", "legacy", "dynamo")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}  # what a default output name ends in
# what an output name's suffix says (the suffixes `nhl predict` reads)
FORMAT_OF_SUFFIX = {".onnx": "onnx"} | dict.fromkeys(
    (".pt", ".pth", ".ts", ".torchscript", ".jit"), "torchscript"
)
DEFAULT_FORMAT = "onnx"  # without --format or a telling suffix
MIN_OPSET = 17
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}
ONNX_MAX_BYTES = 1_900_000_000  # one protobuf holds at most 2 GiB
ATOL = 1e-3
RTOL = 1e-3
CHECK_SEED = 0


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    exporter: str | None  # ONNX: legacy | dynamo
    opset: int | None
    img_size: int
    dynamic_batch: bool
    batch: int | None  # the fixed batch size (None when dynamic)
    file_bytes: int
    params: int
    gmacs: float | None
    classes: int
    check_batch: int
    max_abs_diff: float
    tolerance: float
    attention: dict[str, Any] | None
    quantization: dict[str, Any] | None = None  # int8: the check against fp32 (quantize.py)
    source: dict[str, Any] | None = None  # the checkpoint folder exported (`source_info`)
    checkpoint_params: int | None = None  # the model's parameters before fusing (`fused_note`)

    @property
    def fused(self) -> str | None:
        """Why `params` differs from the checkpoint's count (`fused_note`), None if unknown."""
        if self.checkpoint_params is None:
            return None
        return fused_note(self.checkpoint_params, self.params)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["fused"] = self.fused
        return d


def export_format(fmt: str | None, output: str | Path | None) -> str:
    """The format to write: `fmt`, else the one `output`'s suffix says, else onnx; NhlError for
    an unknown format, a suffix that says none, or a suffix that says another one."""
    if fmt is not None and fmt not in FORMATS:
        raise NhlError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    if output is None:
        return fmt or DEFAULT_FORMAT
    suffix = Path(output).suffix.lower()
    said = FORMAT_OF_SUFFIX.get(suffix)
    if fmt is not None and said is not None and said != fmt:
        raise NhlError(
            f"--format {fmt} does not match {Path(output).name} (a {said} suffix): "
            f"name the file {SUFFIX[fmt]} or leave --format out"
        )
    if fmt is None and said is None:
        names = ", ".join(FORMAT_OF_SUFFIX)
        raise NhlError(
            f"cannot tell the export format of {Path(output).name}: end it in one of {names}, "
            f"or give --format ({', '.join(FORMATS)})"
        )
    return fmt or said  # type: ignore[return-value]


def fused_note(checkpoint_params: int, exported_params: int) -> str:
    """The exported file is fused (batch norms folded into the convolutions), so it counts fewer
    parameters than the checkpoint, `nhl cutout` and `nhl profile`: say how many."""
    fewer = checkpoint_params - exported_params
    if fewer == 0:
        return f"fused: batch norms folded, the checkpoint's {checkpoint_params:,} parameters"
    return (
        f"fused: batch norms folded, {fewer:,} fewer parameters than the checkpoint's "
        f"{checkpoint_params:,}"
    )


def default_output(source: Path, fmt: str) -> Path:
    """`experts/cats` -> `experts/cats.onnx`: next to the checkpoint folder, so a training run
    (`runs/train/six`, which stands for its best/) gets `runs/train/six/best.onnx`."""
    name = source.name or source.resolve().name
    return source.parent / f"{name}{SUFFIX[fmt]}"


def source_info(folder: Path, given: str | Path) -> dict[str, Any]:
    """Which checkpoint an export came from: its folder, whether `given` was a training run that
    stands for it (best/, else last/), and the training epoch and val top-1 it records."""
    from nhlcli.checkpoint_dirs import RUN_TAGS, read_config_json

    training = read_config_json(folder).get("extra", {}) or {}
    training = training.get("training") if isinstance(training, dict) else None
    info: dict[str, Any] = {"path": str(folder), "run_checkpoint": None}
    if Path(given).resolve() == folder.parent.resolve() and folder.name in RUN_TAGS:
        info["run_checkpoint"] = folder.name
    if isinstance(training, dict):
        info["epoch"] = training.get("epoch")
        info["val_top1"] = training.get("val_top1")
    return info


def export_model(
    model: HierNet,
    out: str | Path,
    fmt: str = "onnx",
    img_size: int | None = None,
    dynamic_batch: bool = False,
    batch_size: int = 1,
    opset: int | None = None,
    exporter: str = "auto",
    gmacs: float | None = None,
    atol: float = ATOL,
    rtol: float = RTOL,
    quantize: str | None = None,
    calibration: torch.Tensor | None = None,
    min_agreement: float | None = None,
) -> ExportResult:
    """Export `model` (CPU, eval mode) to `out`, check it, write it atomically (module doc).

    `quantize="int8"` (ONNX only) quantises the checked fp32 file on the normalised `calibration`
    images and checks it against fp32 on them (`nhlcli.exporters.quantize`).
    """
    from nhlcli.exporters.quantize import DEFAULT_MIN_AGREEMENT, check_quantize, quantize_onnx

    if fmt not in FORMATS:
        raise NhlError(f"unknown export format '{fmt}' (choose from {', '.join(FORMATS)})")
    check_quantize(quantize, fmt, calibration)
    if exporter not in EXPORTERS:
        raise NhlError(f"unknown ONNX exporter '{exporter}' (choose from {', '.join(EXPORTERS)})")
    size = check_img_size(img_size if img_size is not None else model.img_size, "--img-size")
    if batch_size < 1:
        raise NhlError("--batch-size must be at least 1")
    batch = batch_size
    model = model.to("cpu").prepare_inference()
    out_path = Path(out)
    check_batch = 3 if dynamic_batch else batch  # dynamic: check a batch size not used to export
    gen = torch.Generator().manual_seed(CHECK_SEED)
    example = torch.randn(2 if dynamic_batch else batch, 3, size, size, generator=gen)
    check_x = torch.randn(check_batch, 3, size, size, generator=gen)
    with torch.no_grad():
        reference_logits = model(check_x)
    require_finite_logits(reference_logits, "the model")
    reference = reference_logits.numpy()

    classes = [{"id": c.id, "name": c.name} for c in model.tree.classes]
    config = model.config()
    export_info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "file_format": fmt,
        "dynamic_batch": dynamic_batch,
        "batch": None if dynamic_batch else batch,
        "input": "image",
        "output": "logits",
        "torch": torch.__version__,
    }
    chosen: str | None
    version: int | None
    if fmt == "onnx":
        _check_onnx_size(model)
        data, chosen, version = _onnx_with_fallback(model, example, dynamic_batch, opset, exporter)
        export_info.update(exporter=chosen, opset=version)
        data = _with_onnx_metadata(data, classes, size, config, export_info)
        output = _run_onnx(data, check_x.numpy())
    else:
        chosen, version = None, None
        data = _torchscript_bytes(model, example, classes, size, config, export_info)
        output = _run_torchscript(data, check_x)

    diff = float(np.max(np.abs(output - reference))) if reference.size else 0.0
    tolerance = atol + rtol * float(np.max(np.abs(reference))) if reference.size else atol
    if not np.isfinite(diff) or diff > tolerance:
        raise NhlError(
            f"the exported {fmt} model does not match PyTorch: largest logit difference {diff:.3g} "
            f"> tolerance {tolerance:.3g}; nothing was written"
        )
    quantization = None
    if quantize is not None and calibration is not None:
        floor = DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement
        data, quantization = quantize_onnx(data, calibration, floor)
    try:
        write_bytes_atomic(out_path, data)
    except OSError as e:
        raise NhlError(f"cannot write {out_path}: {e.strerror or e}") from None
    att = config.get("attention")
    return ExportResult(
        path=out_path,
        format=fmt,
        exporter=chosen,
        opset=version,
        img_size=size,
        dynamic_batch=dynamic_batch,
        batch=None if dynamic_batch else batch,
        file_bytes=len(data),
        params=model.num_params(),
        gmacs=gmacs,
        classes=model.num_classes,
        check_batch=check_batch,
        max_abs_diff=diff,
        tolerance=tolerance,
        attention=att,
        quantization=quantization,
    )


# -------------------------------------------------------------------------------------------- ONNX
def _onnx_with_fallback(
    model: HierNet, example: torch.Tensor, dynamic_batch: bool, opset: int | None, exporter: str
) -> tuple[bytes, str, int]:
    """Export with the chosen exporter; `auto` tries legacy, then dynamo if legacy fails."""
    order = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    errors: list[str] = []
    for name in order:
        version = int(opset) if opset is not None else DEFAULT_OPSET[name]
        if version < MIN_OPSET:
            raise NhlError(f"--opset {version} is too old: nhl exports opset {MIN_OPSET} or newer")
        newest = _newest_opset()
        if version > newest:
            raise NhlError(
                f"--opset {version} is newer than the installed onnx knows (at most {newest})"
            )
        try:
            data = _onnx_bytes(model, example, dynamic_batch, version, name)
            written = _written_opset(data)
            if written != version:
                raise NhlError(
                    f"the {name} ONNX exporter cannot write opset {version} (it wrote opset "
                    f"{written}); choose --opset {MIN_OPSET}..{max(MIN_OPSET, written)}"
                )
            return data, name, version
        except NhlError as e:
            errors.append(str(e))
    raise NhlError(errors[0] if len(errors) == 1 else " / ".join(errors))


def _newest_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _written_opset(data: bytes) -> int:
    """The default-domain opset an exported ONNX file declares."""
    import onnx

    proto = onnx.load_from_string(data)
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)


def _check_onnx_size(model: HierNet) -> None:
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    size += sum(b.numel() * b.element_size() for b in model.buffers())
    if size > ONNX_MAX_BYTES:
        raise NhlError(
            f"the model's weights take {size / 1e9:.1f} GB, more than one ONNX file can hold "
            "(2 GB): cut out an expert first (nhl cutout) or export --format torchscript"
        )


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters warn about deprecations and print progress; keep the CLI output clean."""
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        _quiet_fd(1),  # torch's C++ side prints graphs and traces straight to the terminal
        _quiet_fd(2),
    ):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _quiet_fd(fd: int) -> Any:
    """Send what is written to file descriptor `fd` to a discarded temporary file meanwhile."""
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (an embedding host): nothing to silence
        yield
        return
    try:
        with tempfile.TemporaryFile() as sink:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                with contextlib.suppress(Exception):
                    stream.flush()  # type: ignore[union-attr]
            os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                os.dup2(saved, fd)
    finally:
        os.close(saved)


def _onnx_bytes(
    model: HierNet, example: torch.Tensor, dynamic_batch: bool, opset: int, exporter: str
) -> bytes:
    with tempfile.TemporaryDirectory(prefix="nhl-export-") as tmp:
        target = Path(tmp) / "model.onnx"
        try:
            with _quiet(), torch.no_grad():
                if exporter == "legacy":
                    axes = (
                        {"image": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
                    )
                    torch.onnx.export(
                        model, (example,), str(target), dynamo=False, opset_version=opset,
                        input_names=["image"], output_names=["logits"], dynamic_axes=axes,
                        do_constant_folding=True,
                    )  # fmt: skip
                else:
                    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
                    program = torch.onnx.export(
                        model, (example,), None, dynamo=True, opset_version=opset,
                        input_names=["image"], output_names=["logits"], dynamic_shapes=shapes,
                        verbose=False,
                    )  # fmt: skip
                    if program is None:  # pragma: no cover - torch always returns a program here
                        raise NhlError("the dynamo ONNX exporter returned nothing")
                    program.save(str(target), external_data=False)
        except NhlError:
            raise
        except ImportError as e:
            raise NhlError(
                f"ONNX export needs the optional packages onnx, onnxscript and onnxruntime "
                f"(pip install 'nhl[export]'): {e}"
            ) from None
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise NhlError(f"ONNX export ({exporter}, opset {opset}) failed: {first}") from None
        return target.read_bytes()


def _with_onnx_metadata(
    data: bytes,
    classes: list[dict[str, str]],
    img_size: int,
    config: dict[str, Any],
    export_info: dict[str, Any],
) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    strings = metadata_strings(classes, preprocess_spec(img_size), config, export_info)
    for key, name in ONNX_KEYS.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = name, strings[key]
    proto.producer_name = "nhl"
    proto.doc_string = (
        f"nhl {config.get('arch')} with {len(classes)} classes; input 'image' (N, 3, {img_size}, "
        f"{img_size}) normalised RGB, output 'logits' (N, {len(classes)}) in nhl.classes order"
    )
    return bytes(proto.SerializeToString())


def _run_onnx(data: bytes, x: np.ndarray) -> np.ndarray:
    session = open_session(data, "the exported ONNX model")
    return run_session(session, x, "the exported ONNX model")


# ------------------------------------------------------------------------------------- TorchScript
def _torchscript_bytes(
    model: HierNet,
    example: torch.Tensor,
    classes: list[dict[str, str]],
    img_size: int,
    config: dict[str, Any],
    export_info: dict[str, Any],
) -> bytes:
    strings = metadata_strings(classes, preprocess_spec(img_size), config, export_info)
    extra = {TORCHSCRIPT_FILES[k]: v for k, v in strings.items()}
    try:
        buf = io.BytesIO()
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
            torch.jit.save(traced, buf, _extra_files=extra)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise NhlError(f"TorchScript export failed: {first}") from None
    return buf.getvalue()


def _run_torchscript(data: bytes, x: torch.Tensor) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    module.eval()
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return module(x).numpy()
