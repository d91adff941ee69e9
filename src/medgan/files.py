"""Atomic file writes and safe loads: a crash or Ctrl-C never leaves a half-written result or checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from medgan import MedganError, MedganWarning


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


CHECKSUM = "sha256"  # the key under which save_torch stores a checksum of a checkpoint's contents


def checksum(obj) -> str:
    """SHA-256 of a checkpoint's contents: every tensor's dtype, shape and bytes and every plain value, in order.
    torch's zip format checks no CRC on load, so without it a flipped bit in a weight would load silently."""
    digest = hashlib.sha256()

    def walk(x) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{t.dtype}{tuple(x.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            for key, value in x.items():
                digest.update(repr(key).encode())
                walk(value)
        elif isinstance(x, (list, tuple)):
            digest.update(f"{type(x).__name__}{len(x)}".encode())
            for value in x:
                walk(value)
        else:
            digest.update(repr(x).encode())

    walk(obj)
    return digest.hexdigest()


def save_torch(path, obj: dict) -> None:
    """Save a checkpoint atomically, with a checksum of its contents that ``load_torch`` verifies."""
    with atomic_path(path) as tmp:
        torch.save({**obj, CHECKSUM: checksum(obj)}, tmp)


def load_torch(path):
    """Load a checkpoint safely: tensors and plain containers only (``weights_only``). A truncated, corrupt or
    foreign file, or one whose contents do not match the checksum saved with them, is a MedganError naming it."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # what weights_only raises for anything but tensors and plain values
        raise MedganError(
            f"{path} holds pickled objects or code, not only tensors: it is not a medgan checkpoint and was not loaded"
        ) from None
    except (RuntimeError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise MedganError(
            f"{path} cannot be read: it is truncated or corrupt ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    if isinstance(obj, dict) and CHECKSUM in obj:  # checkpoints written before the checksum load as they are
        expected = obj.pop(CHECKSUM)
        if checksum(obj) != expected:
            raise MedganError(
                f"{path} is damaged: its contents do not match the checksum saved with them (a flipped bit, a bad "
                "copy), so it was not used. Copy it again from a good source, or delete it to start over"
            )
    return obj


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

    def __enter__(self) -> FolderLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another process
            handle.seek(0)
            holder = handle.read().strip() or "another medgan command"
            handle.close()
            raise MedganError(
                f"{self.path.parent} is in use by {holder}. Wait for it to finish or stop it, then run this again."
            ) from None
        except OSError as e:  # a filesystem without locks (some network mounts): go on, unguarded, and say so
            warnings.warn(
                f"{self.path.parent} cannot be locked ({e.strerror}): a second command on it would not be stopped",
                MedganWarning,
                stacklevel=2,
            )
        self._file, self.started = handle, time.time()
        self.update(self.what)
        return self

    def update(self, doing: str) -> None:
        """Say what the holder is doing now (shown to a second command that finds the folder in use)."""
        self._file.seek(0)
        self._file.truncate()
        self._file.write(
            f"{doing} (pid {os.getpid()} on {socket.gethostname()}, "
            f"since {time.strftime('%H:%M:%S', time.localtime(self.started))})"
        )
        self._file.flush()

    def __exit__(self, *exc) -> None:
        self._file.close()  # closing releases the lock; the file stays (removing it would race with a new holder)
