"""One trainer per run folder: an exclusive lock for as long as a run trains.

Two trainers writing one folder would interleave checkpoints and pointers; the second is refused
with the first one's process id and host. The lock is an ``fcntl`` lock on ``<run>/.lock``, so it
is released by the operating system when the process dies (a crash or a kill leaves no stale
lock). Holding it also makes it safe to remove the temporary folders that a kill in the middle of
a checkpoint write leaves behind (``checkpoints/.step-*``)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from darec.errors import CheckpointError

__all__ = ["run_lock", "lock_holder"]

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock
    fcntl = None  # type: ignore[assignment]


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock (creating the folder); raise :class:`CheckpointError` if another
    process holds it. Leftover temporary checkpoint folders are removed once it is held."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 - held below
    except OSError as exc:
        raise CheckpointError(f"cannot write the run folder {run_dir}: {exc.strerror}") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise CheckpointError(
                    f"{run_dir} is being trained by {holder}; wait for it to finish, or train "
                    "into another --output folder"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        for leftover in (run_dir / "checkpoints").glob(".step-*"):
            shutil.rmtree(leftover, ignore_errors=True)  # a write cut by a kill
        yield
    finally:
        handle.close()  # releases the lock


def lock_holder(run_dir: Path) -> str | None:
    """Who trains ``run_dir`` now (``pid N on HOST``), or None when no process holds its lock."""
    path = run_dir / ".lock"
    if fcntl is None or not path.exists():
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
    return None  # closing the file released the lock just taken
