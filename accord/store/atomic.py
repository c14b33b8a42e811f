"""Crash-safe file writes: a reader sees either the old file or the new one, never half of either.

Checkpoints, configs and rewritten metrics go through here, so a kill or a full disk mid-write cannot
destroy the last good copy of a run's state.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from accord.errors import RunStoreError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; apply the usual umask so shared run folders stay readable.
_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; raise RunStoreError (old file intact) on any OS error."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        reason = e.strerror or str(e)
        raise RunStoreError(f"cannot write {path}: {reason}; the previous file (if any) is unchanged") from e


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; without this a power loss can bring back the old directory entry."""
    if os.name == "nt":  # Windows cannot open a directory for fsync; its renames are journaled.
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
