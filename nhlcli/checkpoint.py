"""Checkpoints and experts on disk: a DIRECTORY with ``model.safetensors`` and ``config.json``.

* ``config.json``: `HierNet.config()` (format ``nhl-model/1``: preset with its widths, the tree with
  the class list, image size, attention settings, where a cutout was cut from) plus an optional
  ``extra`` object (e.g. training metadata).
* ``model.safetensors``: the state dict (parameters and BN statistics; attention scales live in the
  config). Loading never executes code from a file.
* Other files are ignored (training adds ``train_state.pt`` next to these).

A checkpoint is written into a temporary directory beside the target and renamed into place, so a
failure leaves nothing half-written (a write the disk refuses is one NhlError naming the path and
the system's reason); an existing checkpoint directory at the target is replaced as a whole (other
files in it, such as a stale ``train_state.pt``, do not survive).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nhlcli.checkpoint_dirs import CONFIG_FILE, WEIGHTS_FILE, read_config_json, resolve_checkpoint
from nhlcli.errors import NhlError, write_reason
from nhlcli.fileio import check_output, commit, current_umask
from nhlcli.model.config import MODEL_FORMAT, ModelConfig, read_model_config
from nhlcli.model.network import HierNet
from nhlcli.model.rebuild import model_from_config

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "load_model",
    "read_config",
    "read_saved_config",
    "save_model",
    "write_model_files",
]


def save_model(model: HierNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` as a checkpoint directory at `path` (atomically); returns the path.

    A failed write (a read-only place, a full disk, a parent that is a file) is one NhlError
    naming the path and the system's reason, and leaves nothing behind."""
    from safetensors import SafetensorError

    target = Path(path)
    check_output(target, whole_dir=True)
    if target.exists() and not target.is_dir():
        raise NhlError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise NhlError(
            f"{target} is a non-empty directory that is not an nhl checkpoint; not overwriting"
        )
    blocker = next((p for p in target.parents if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise NhlError(f"cannot write {target}: {blocker} is a file, not a folder")
    tmp: Path | None = None
    old: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        write_model_files(model, tmp, extra)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        commit(tmp, target)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old, target)
        if isinstance(e, OSError | SafetensorError):
            raise NhlError(f"cannot write {target}: {write_reason(e)}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def write_model_files(model: HierNet, folder: Path, extra: dict[str, Any] | None = None) -> None:
    """`model.safetensors` and `config.json` into the existing (temporary) `folder`, fsynced, with
    the usual umask modes; OSError or SafetensorError when the disk refuses."""
    from safetensors.torch import save_file

    config = model.config()
    if extra:
        config["extra"] = extra
    text = json.dumps(config, indent=1, ensure_ascii=False) + "\n"
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    umask = current_umask()
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": MODEL_FORMAT})
    (folder / CONFIG_FILE).write_text(text, encoding="utf-8")
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        with open(folder / f, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(folder / f, 0o666 & ~umask)
    os.chmod(folder, 0o777 & ~umask)  # mkdtemp made it private


def read_config(path: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json (format checked), without loading weights."""
    f = resolve_checkpoint(path) / CONFIG_FILE
    config = read_config_json(path)
    if config.get("format") != MODEL_FORMAT:
        found = config.get("format")
        raise NhlError(
            f"{f}: not an nhl model config (format {found!r}, expected {MODEL_FORMAT!r})"
        )
    return config


def read_saved_config(path: str | Path) -> ModelConfig:
    """The checked config (preset, tree, image size) of the model at `path` (any form
    `resolve_checkpoint` takes), without reading its weights: what `nhl profile MODEL` needs."""
    folder = resolve_checkpoint(path)
    return read_model_config(read_config(folder), str(folder / CONFIG_FILE))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> HierNet:
    """Load a model in one call: a checkpoint or expert directory, or a training run directory
    (its best, else last, checkpoint); NhlError on any unusable file. Returned in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = resolve_checkpoint(path)
    config = read_config(d)
    model = model_from_config(config, meta=True, origin=str(d / CONFIG_FILE))
    weights = d / WEIGHTS_FILE
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NhlError(
            f"{weights}: not a readable safetensors file (truncated or wrong kind: {msg})"
        ) from None
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, config needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems += [
        f"{k} has dtype {state[k].dtype}, expected {v.dtype}"
        for k, v in expected.items()
        if k in state and state[k].dtype != v.dtype and tuple(state[k].shape) == tuple(v.shape)
    ]
    if problems:
        shown = problems[:3] + ([f"{len(problems) - 3} more"] if len(problems) > 3 else [])
        raise NhlError(f"{weights} does not match {CONFIG_FILE}", shown)
    # Fresh, normally aligned memory: tensors viewing the file's buffer can give last-bit-different
    # CPU results from the same weights (which broke exact resume).
    state = {k: v.clone() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return model.to(device)
