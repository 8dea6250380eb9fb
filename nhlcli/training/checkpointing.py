"""Training checkpoints in a run directory, written so that a kill -9 never breaks the last one.

Layout of a run directory (every checkpoint a real folder of real files, to copy, zip or upload)::

    runs/train/exp/
      last/        model.safetensors, config.json, train_state.pt, ema/ (with --ema)
      best/        the same files of the best epoch
      last-ema/    (with --ema: the averaged weights of the last epoch, a model folder)
      best-ema/    (the epoch whose EMA weights validated best)
      epoch-0005/  (with --save-every 5: kept, never replaced)

Each checkpoint is a model directory in the format of `nhlcli.checkpoint` (so `nhl eval`,
`nhl cutout`, `nhl profile` read `runs/train/exp/best` directly) plus `train_state.pt`: optimizer,
scheduler, gradient scaler, RNG states and epoch, saved with `torch.save` and read with
`weights_only=True` (tensors, numbers, strings and containers only).

Written once, published under several names: an epoch is written into a temporary folder
(`.tmp-epoch-NNNN-…`) and fsynced; each of its names (`last`, `best`, …) is then built as a new
folder of hard links to those files (copies where the file system has no hard links) and switched
in atomically: swapped with the old folder in one step (Linux `renameat2(RENAME_EXCHANGE)`), or,
where that is not available, in two renames (old folder to `.last.old`, new one in). Between those
two renames a crash leaves `.last.old` and no `last`; the next save, and `--resume`, rename it back
(`recover_tags`). So a kill at any moment leaves `last` a complete checkpoint; leftovers of an
interrupted save are removed by the next one. Nothing is ever written into a published folder, so
names that share files (hard links) never see each other change. A write the disk refuses (full,
read-only) is one NhlError naming the checkpoint and the reason, and removes the temporary folders;
the engine holds Ctrl-C and SIGTERM back while an epoch is saved.

Runs written before this layout had `last`, `best`, … as symlinks into a hidden `.checkpoints/`:
they load and resume as they are, and their first new save turns every link into a folder and
removes `.checkpoints/`.
"""

from __future__ import annotations

import ctypes
import errno
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
from nhlcli.fileio import current_umask

OLD_STORE = ".checkpoints"  # where runs before real checkpoint folders kept them (read, converted)
TRAIN_STATE = "train_state.pt"
STATE_FORMAT = "nhl-train-state/1"
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


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def link_tree(source: Path, dest: Path) -> None:
    """Fill the existing folder `dest` with hard links to the files under `source` (a copy of
    each file the file system cannot link: another file system, FAT, some network shares)."""
    for entry in source.iterdir():
        target = dest / entry.name
        if entry.is_dir():
            target.mkdir()
            link_tree(entry, target)
            continue
        try:
            os.link(entry, target)
        except OSError:
            shutil.copy2(entry, target)
    _fsync_dir(dest)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2`); False where the system
    or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not Linux/glibc
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):  # EPERM: seccomp
        return False
    raise OSError(err, os.strerror(err), str(b))


def _aside(run_dir: Path, tag: str) -> Path:
    return run_dir / f".{tag}.old"


def _publish(run_dir: Path, tag: str, source: Path) -> None:
    """Make run_dir/tag a folder of the files of `source`, switched in atomically."""
    new = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".{tag}.new-"))
    try:
        link_tree(source, new)
        os.chmod(new, 0o777 & ~current_umask())  # mkdtemp made it private
        dest = run_dir / tag
        if not os.path.lexists(dest):
            os.rename(new, dest)
        elif _exchange(new, dest):
            _remove(new)  # now the old folder
        else:  # two renames; a crash between them leaves the aside, put back by recover_tags
            aside = _aside(run_dir, tag)
            _remove(aside)
            os.rename(dest, aside)
            os.rename(new, dest)
            _remove(aside)
    except BaseException:
        _remove(new)
        raise
    _fsync_dir(run_dir)


def recover_tags(run_dir: Path) -> None:
    """Finish what a save killed between its two renames left: a checkpoint moved aside and not
    replaced gets its name back; temporary folders of interrupted saves are removed."""
    run_dir = Path(run_dir)
    for entry in run_dir.iterdir():
        name = entry.name
        if not name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        if name.endswith(".old") and (entry / "config.json").is_file():
            tag = run_dir / name[1:-4]
            if os.path.lexists(tag):
                _remove(entry)
            else:
                os.rename(entry, tag)
        elif name.startswith(".tmp-epoch-") or ".new-" in name:
            _remove(entry)


def _convert_old_links(run_dir: Path) -> None:
    """A run from before real folders: turn every link into the hidden store into a folder of
    the same files, then remove the store and what that layout's interrupted saves left."""
    store = run_dir / OLD_STORE
    if not store.is_dir():
        return
    real_store = Path(os.path.realpath(store))
    for entry in sorted(run_dir.iterdir()):
        if entry.is_symlink() and not entry.name.startswith("."):
            target = Path(os.path.realpath(entry))
            if target.is_relative_to(real_store) and target.is_dir():
                _publish(run_dir, entry.name, target)
        elif entry.name.startswith(".") and any(
            m in entry.name for m in (".link-", ".old-", ".copy-")
        ):
            _remove(entry)
    shutil.rmtree(store, ignore_errors=True)


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
    """Write the checkpoint of a finished epoch as the folders `tags` (the first one named in
    errors); returns the first. With `ema_model`, its weights go to each folder's `ema/` too, and
    `ema_tags` are folders of those weights alone."""
    from safetensors import SafetensorError

    from nhlcli.checkpoint import write_model_files

    run_dir = Path(run_dir)
    named = run_dir / tags[0]
    tmp: Path | None = None
    try:
        recover_tags(run_dir)
        tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".tmp-epoch-{epoch:04d}-"))
        write_model_files(model, tmp, extra)  # type: ignore[arg-type]
        if ema_model is not None:
            (tmp / EMA_DIR).mkdir()
            write_model_files(ema_model, tmp / EMA_DIR, extra)  # type: ignore[arg-type]
            _fsync_dir(tmp / EMA_DIR)  # write_model_files fsyncs the files, not their folder
        _save_train_state({"format": STATE_FORMAT, **train_state}, tmp / TRAIN_STATE)
        _fsync_dir(tmp)
        for tag in tags:
            _publish(run_dir, tag, tmp)
        for tag in ema_tags if ema_model is not None else ():
            _publish(run_dir, tag, tmp / EMA_DIR)
        _convert_old_links(run_dir)
    except (OSError, SafetensorError) as e:
        raise NhlError(f"cannot write checkpoint {named}: {write_reason(e)}") from None
    finally:
        if tmp is not None:
            _remove(tmp)
    return named


def _save_train_state(state: dict[str, Any], path: Path) -> None:
    """`torch.save` to `path`, fsynced, raising the OSError behind a failed write (torch reports a
    full disk as an opaque RuntimeError)."""

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
        f.flush()
        os.fsync(f.fileno())


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
