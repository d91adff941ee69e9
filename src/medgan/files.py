"""Atomic file writes and safe loads: a crash or Ctrl-C never leaves a half-written result or checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from medgan import MedganError


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results should read like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(path, obj) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path):
    """Load a checkpoint safely: tensors and plain containers only (``weights_only``). A truncated, corrupt or
    foreign file is a MedganError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # what weights_only raises for anything but tensors and plain values
        raise MedganError(f"{path} holds pickled objects or code, not only tensors: it is not a medgan checkpoint and was not loaded") from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise MedganError(f"{path} cannot be read: it is truncated or corrupt ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def save_npz(path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


class FolderLock:
    """An exclusive hold on a folder (``FOLDER/.lock``) for one process: a second medgan command on the same
    run or study folder stops with a MedganError saying what holds it, instead of training the same run twice.

    An ``fcntl`` lock, so the kernel lets go when the holder dies (kill -9 included): no stale locks to clean up.
    The file's text says who holds it and what it is doing (``update``)."""

    def __init__(self, folder: str | os.PathLike, what: str):
        self.path, self.what, self._file = Path(folder) / ".lock", what, None

    def __enter__(self) -> "FolderLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another medgan command"
            handle.close()
            raise MedganError(f"{self.path.parent} is in use by {holder}. Wait for it to finish or stop it, then run this again.") from None
        self._file, self.started = handle, time.time()
        self.update(self.what)
        return self

    def update(self, doing: str) -> None:
        """Say what the holder is doing now (shown to a second command that finds the folder in use)."""
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{doing} (pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S', time.localtime(self.started))})")
        self._file.flush()

    def __exit__(self, *exc) -> None:
        self._file.close()  # closing releases the lock; the file stays (removing it would race with a new holder)
