"""Training checkpoints in a run directory, written so that a kill -9 never breaks the last one.

Layout of a run directory::

    runs/train/exp/
      last -> .checkpoints/epoch-0007    (a symlink; a plain directory without symlink support)
      best -> .checkpoints/epoch-0005
      last-ema -> .checkpoints/epoch-0007/ema   (with --ema: the averaged weights)
      best-ema -> .checkpoints/epoch-0006/ema   (the epoch whose EMA weights validated best)
      epoch-0005 -> .checkpoints/epoch-0005     (with --save-every 5)
      .checkpoints/epoch-0007/{model.safetensors, config.json, train_state.pt, ema/}

Each checkpoint is a model directory in the format of `nhlcli.checkpoint` (so `nhl eval`,
`nhl cutout`, `nhl profile` read `runs/train/exp/best` directly) plus `train_state.pt`: optimizer,
scheduler, gradient scaler, RNG states and epoch, saved with `torch.save` and read with
`weights_only=True` (tensors, numbers, strings and containers only).

Atomicity: a checkpoint is written into a temporary directory, fsynced, renamed to its final name
(`rename` is atomic), and only then is the `last`/`best` link swapped, by renaming a new symlink
over the old one (atomic too). A kill at any moment leaves `last` pointing at a complete
checkpoint; stray temporary or unreferenced directories are removed by the next save. A write the
disk refuses (full, read-only) is one NhlError naming the checkpoint and the reason, and removes the
temporary directory; the engine holds Ctrl-C and SIGTERM back while an epoch is saved.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nhlcli.errors import NhlError, first_line, write_reason

STORE = ".checkpoints"
TRAIN_STATE = "train_state.pt"
STATE_FORMAT = "nhl-train-state/1"
TAGS = ("last", "best")
EMA_DIR = "ema"  # the EMA weights inside a checkpoint directory: a model directory of its own


# ----------------------------------------------------------------------------- RNG state
def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python RNG states as tensors and ints."""
    np_state: Any = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------- writing
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_tree(path: Path) -> None:
    for entry in path.iterdir():
        if entry.is_file():
            with open(entry, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _point(run_dir: Path, tag: str, target: Path) -> None:
    """Make run_dir/tag refer to target atomically (symlink swap; a copy without symlinks)."""
    link = run_dir / tag
    rel = os.path.relpath(target, run_dir)
    tmp_link = run_dir / f".{tag}.link-{os.getpid()}"
    try:
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        os.symlink(rel, tmp_link, target_is_directory=True)
    except (OSError, NotImplementedError):
        _replace_dir_by_copy(link, target)
        return
    if link.is_dir() and not link.is_symlink():  # a plain directory from the fallback
        aside = run_dir / f".{tag}.old-{os.getpid()}"
        os.replace(link, aside)
        os.replace(tmp_link, link)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp_link, link)
    _fsync_dir(run_dir)


def _replace_dir_by_copy(link: Path, target: Path) -> None:
    """Fallback without symlinks: copy, then two renames (a tiny window without `link`)."""
    tmp = Path(tempfile.mkdtemp(dir=link.parent, prefix=f".{link.name}.copy-"))
    shutil.copytree(target, tmp, dirs_exist_ok=True)
    _fsync_tree(tmp)
    aside = link.parent / f".{link.name}.old-{os.getpid()}"
    if link.exists():
        os.replace(link, aside)
    os.replace(tmp, link)
    shutil.rmtree(aside, ignore_errors=True)


def _referenced(run_dir: Path) -> set[str]:
    """Names of the store's checkpoint directories that a link in run_dir points into."""
    store = Path(os.path.realpath(run_dir / STORE))
    out = set()
    for link in run_dir.iterdir():
        if link.is_symlink() and not link.name.startswith("."):
            target = Path(os.path.realpath(link))
            if target.is_relative_to(store) and target != store:
                out.add(target.relative_to(store).parts[0])
    return out


def prune_store(run_dir: Path) -> None:
    """Remove checkpoint directories no tag refers to, and leftovers of interrupted saves."""
    store = run_dir / STORE
    if not store.is_dir():
        return
    keep = _referenced(run_dir)
    for entry in store.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
    for entry in run_dir.iterdir():
        if entry.name.startswith(".") and any(
            m in entry.name for m in (".link-", ".old-", ".copy-")
        ):
            if entry.is_symlink() or entry.is_file():
                entry.unlink(missing_ok=True)
            else:
                shutil.rmtree(entry, ignore_errors=True)


def save_training_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    train_state: dict[str, Any],
    epoch: int,
    tags: tuple[str, ...] = ("last",),
    extra: dict[str, Any] | None = None,
    ema_model: torch.nn.Module | None = None,
    ema_tags: tuple[str, ...] = (),
) -> Path:
    """Write the checkpoint of a finished epoch and point `tags` at it; returns its directory.

    With `ema_model`, its weights go to the checkpoint's `ema/` folder and `ema_tags` point there.
    """
    from safetensors import SafetensorError

    from nhlcli.checkpoint import write_model_files

    run_dir = Path(run_dir)
    store = run_dir / STORE
    final = store / f"epoch-{epoch:04d}"
    tmp: Path | None = None
    try:
        store.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=store, prefix=f".tmp-epoch-{epoch:04d}-"))
        write_model_files(model, tmp, extra)  # type: ignore[arg-type]
        if ema_model is not None:
            (tmp / EMA_DIR).mkdir()
            write_model_files(ema_model, tmp / EMA_DIR, extra)  # type: ignore[arg-type]
            _fsync_tree(tmp / EMA_DIR)
        _save_train_state({"format": STATE_FORMAT, **train_state}, tmp / TRAIN_STATE)
        _fsync_tree(tmp)
        if final.exists():  # left over from an interrupted run; no tag refers to it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(store)
        for tag in tags:
            _point(run_dir, tag, final)
        for tag in ema_tags if ema_model is not None else ():
            _point(run_dir, tag, final / EMA_DIR)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError | SafetensorError):
            raise NhlError(f"cannot write checkpoint {final}: {write_reason(e)}") from None
        raise
    prune_store(run_dir)
    return final


def _save_train_state(state: dict[str, Any], path: Path) -> None:
    """`torch.save` to `path`, raising the OSError behind a failed write (torch reports a full
    disk as an opaque RuntimeError)."""

    class Writer:
        def __init__(self, f: Any) -> None:
            self.f = f
            self.error: OSError | None = None

        def write(self, data: Any) -> int:
            try:
                return int(self.f.write(data))
            except OSError as e:
                self.error = e
                raise

        def flush(self) -> None:
            self.f.flush()

    with open(path, "wb") as f:
        writer = Writer(f)
        try:
            torch.save(state, writer)  # type: ignore[arg-type]
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise


# ----------------------------------------------------------------------------- reading
def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """`nhlcli.checkpoint.load_model` (which copies the file's tensors into fresh memory, so a
    resumed run repeats an uninterrupted one bit for bit)."""
    from nhlcli.checkpoint import load_model

    return load_model(path, device=device)


def load_train_state(checkpoint_dir: Path) -> dict[str, Any]:
    """The training state of a checkpoint directory (NhlError when missing or unreadable)."""
    path = Path(checkpoint_dir) / TRAIN_STATE
    if not path.is_file():
        raise NhlError(f"{checkpoint_dir} has no {TRAIN_STATE}: not a training checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about unknown pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, refused globals
        raise NhlError(f"{path}: unreadable training state ({first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise NhlError(f"{path}: not an nhl training state ({STATE_FORMAT})")
    return state
