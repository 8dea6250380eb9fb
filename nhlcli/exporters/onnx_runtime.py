"""ONNX Runtime sessions on the CPU, with its failures turned into one-line `NhlError`s.

onnxruntime raises its own exception types (`Fail`, `InvalidArgument`, `RuntimeException`, ...
from `onnxruntime.capi.onnxruntime_pybind11_state`, none of them a subclass of a Python built-in
error) plus `RuntimeError`/`ValueError` from its Python wrapper. Opening a session (`open_session`)
and running one (`run_session`) catch exactly these and report the first line of the message,
naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nhlcli.errors import NhlError

MESSAGE_CHARS = 160


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise NhlError("running ONNX files needs onnxruntime (pip install 'nhl[export]')") from None
    return ort


def runtime_errors() -> tuple[type[BaseException], ...]:
    """The exception types onnxruntime raises when it cannot load or run a model."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = [v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)]
    return (*own, RuntimeError, ValueError)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:MESSAGE_CHARS]


def open_session(model: Path | bytes, name: str, spinning: bool = True) -> Any:
    """A CPU `InferenceSession` for a file or serialised bytes; `name` names it in errors.

    `spinning=False` stops its threads spin-waiting after each run (for timing one run at a time
    interleaved with other work, as `nhlcli.profiling.bench` does).
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except runtime_errors() as e:
        raise NhlError(f"{name}: onnxruntime cannot load it ({_first_line(e)})") from None


def run_session(session: Any, x: np.ndarray, name: str) -> np.ndarray:
    """The first output of `session` for the float batch `x` fed to its first input."""
    try:
        return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])
    except runtime_errors() as e:
        raise NhlError(f"{name}: onnxruntime cannot run it ({_first_line(e)})") from None


def fixed_batch(session: Any) -> int | None:
    """The batch size the session's first input is fixed to; None for a dynamic batch."""
    batch = session.get_inputs()[0].shape[0]
    return batch if isinstance(batch, int) and batch > 0 else None


def run_chunked(session: Any, x: np.ndarray, name: str, step: int | None = None) -> np.ndarray:
    """`run_session` over `x` in runs of the file's fixed batch (the last one padded with zeros),
    else of `step` images (default: all at once)."""
    fixed = fixed_batch(session)
    size = fixed or step or max(len(x), 1)
    out = []
    for i in range(0, len(x), size):
        chunk = x[i : i + size]
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(run_session(session, chunk, name)[:n])
    return np.concatenate(out)
