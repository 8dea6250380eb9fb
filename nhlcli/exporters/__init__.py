"""Deployment exports: ONNX and TorchScript files that carry their class list, checked on export."""

from nhlcli.exporters.exporter import (
    ExportResult,
    default_output,
    export_format,
    export_model,
    source_info,
)
from nhlcli.exporters.metadata import ExportedInfo, read_onnx_info, read_torchscript_info

__all__ = [
    "ExportResult",
    "ExportedInfo",
    "default_output",
    "export_format",
    "export_model",
    "read_onnx_info",
    "read_torchscript_info",
    "source_info",
]
