"""Atomic file writes, and the rule that a command never writes onto or into its own inputs.

* `write_bytes_atomic` / `write_text_atomic`: a failure (or a kill) never leaves a half-written
  file behind (temporary file in the same folder, fsync, rename).
* `guard_inputs` opens a scope (the CLI opens one per command); inside it, every reader registers
  the files and folders it reads (`register_input`) and every writer asks `check_output` first,
  which raises `NhlError` when the output is one of the inputs (the same file, also through a
  symlink or hard link), lies inside an input folder, or (for outputs replaced as a whole folder)
  contains an input. Outside a scope nothing is registered and nothing is refused.
* Special files are never replaced, in or outside a scope: `check_output` refuses a target that
  exists and is not a regular file (a FIFO, a device such as /dev/null, a socket; a folder unless
  the output is a folder). `special_kind` names what a path is, for readers that must not open a
  FIFO or a device either.
* Ctrl-C and SIGTERM: once `note_interrupt` has been called (the CLI's signal handler does), no
  further file is committed, and `created_outputs` lists the files and folders this scope created
  (`commit`, `note_created`), for the CLI to remove; a folder passed to `keep_outputs` (a training
  run once it has a checkpoint: the user's work) is never removed, nor anything in it.
  `interrupts_deferred` holds both signals back while a unit of work must finish whole.
"""

from __future__ import annotations

import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from nhlcli.errors import NhlError

_INPUTS: ContextVar[tuple[Path, ...] | None] = ContextVar("nhl_inputs", default=None)
_CREATED: ContextVar[list[Path] | None] = ContextVar("nhl_created", default=None)
_KEPT: ContextVar[list[Path] | None] = ContextVar("nhl_kept", default=None)
INTERRUPTS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)  # alike: stop, commit nothing more
_INTERRUPTED = threading.Event()


@contextmanager
def guard_inputs() -> Iterator[None]:
    """A scope in which registered inputs are protected from every nhl writer."""
    token = _INPUTS.set(())
    created = _CREATED.set([])
    kept = _KEPT.set([])
    _INTERRUPTED.clear()
    try:
        yield
    finally:
        _INPUTS.reset(token)
        _CREATED.reset(created)
        _KEPT.reset(kept)


def note_interrupt() -> None:
    """Ctrl-C (or SIGTERM) arrived: commit no further output."""
    _INTERRUPTED.set()


def interrupted() -> bool:
    return _INTERRUPTED.is_set()


def created_outputs() -> list[Path]:
    """Files and folders this scope created that did not exist before, except those in a kept
    folder (`keep_outputs`): what an interrupted command removes."""
    kept = _KEPT.get() or []
    return [p for p in _CREATED.get() or [] if not any(p == k or p.is_relative_to(k) for k in kept)]


def note_created(path: str | Path) -> None:
    """Record a file or folder this scope created (no-op outside `guard_inputs`)."""
    created = _CREATED.get()
    if created is not None:
        created.append(Path(os.path.abspath(path)))


def keep_outputs(folder: str | Path) -> None:
    """`folder` is the user's work from now on: an interrupt removes nothing in it."""
    kept = _KEPT.get()
    if kept is not None:
        kept.append(Path(os.path.abspath(folder)))


def commit(tmp: str | Path, path: Path) -> None:
    """Rename a finished temporary file or folder onto `path`, unless Ctrl-C was pressed.

    SIGINT and SIGTERM are held back while deciding and renaming, so an interrupt never lands
    half-way.
    """
    existed = os.path.lexists(path)
    with interrupts_deferred():
        if _INTERRUPTED.is_set():
            raise KeyboardInterrupt
        os.replace(tmp, path)
        if not existed:
            note_created(path)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back inside the block: one that arrives is handed to the handler
    that was in place (or re-sent, where that is the system's default) when the block ends.

    The handlers are swapped rather than the signals masked: a mask covers only the calling
    thread, and a signal delivered to another thread (torch's) still runs Python's handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    for signum in INTERRUPTS:
        handler = signal.getsignal(signum)
        if handler is not None:  # None: set outside Python, cannot be put back
            previous[signum] = handler
            signal.signal(signum, lambda n, frame: caught.append((n, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number, frame in caught[:1]:
            if callable(previous[number]):
                previous[number](number, frame)  # the CLI's, or Python's KeyboardInterrupt
            elif previous[number] == signal.SIG_DFL:
                os.kill(os.getpid(), number)


def register_input(*paths: str | Path) -> None:
    """Note files or folders a command reads (no-op outside `guard_inputs`)."""
    current = _INPUTS.get()
    if current is None:
        return
    new = tuple(_real(p) for p in paths if p is not None and os.path.exists(p))
    if new:
        _INPUTS.set(current + new)


def registered_inputs() -> tuple[Path, ...]:
    return _INPUTS.get() or ()


def check_output(path: str | Path, whole_dir: bool = False) -> None:
    """NhlError if writing `path` would overwrite, or write into, an input of this command.

    `whole_dir`: the output is a folder replaced as a whole, so it must not contain an input either.
    Also NhlError when the target exists and is not a regular file (a folder for `whole_dir`).
    """
    kind = special_kind(path, folder_ok=whole_dir)
    if kind is not None:
        raise NhlError(f"refusing to write {path}: it is {kind}, not a regular file")
    inputs = _INPUTS.get()
    if not inputs:
        return
    out = _real(path)
    for inp in inputs:
        if out == inp or _same_file(out, inp):
            raise NhlError(
                f"refusing to write {path}: it is an input of this command (choose another output)"
            )
        if inp.is_dir() and out.is_relative_to(inp):
            raise NhlError(
                f"refusing to write {path}: it is inside the input folder {inp} "
                "(choose an output outside it)"
            )
        if whole_dir and inp.is_relative_to(out):
            raise NhlError(
                f"refusing to write {path}: it would replace the folder holding the input {inp} "
                "(choose another output)"
            )


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: str | Path, folder_ok: bool = False) -> str | None:
    """What `path` is when it exists and is not a regular file ("a FIFO (named pipe)", "a
    character device", ...); None for a regular file, a missing path or a dangling link.

    Links are followed (`/dev/stdout` is whatever it points to); nothing is opened, so a FIFO
    never blocks. `folder_ok`: a folder counts as fine too.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # unreadable: the open or write that follows reports it
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; the usual mode
        commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back): what a temporary file or
    folder made private by mkstemp/mkdtemp is chmod-ed with before it is published."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
