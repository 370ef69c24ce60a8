"""Crash-safe small-file writes: temporary file, (fsync), rename, (fsync dir)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` so a crash leaves the old or the new content, never a mix.

    ``durable=False`` skips the fsyncs for objects that are made durable later
    in a batch (a file's fsync() syncs its sidecar too); the rename still makes
    the write all-or-nothing against a killed process.
    """
    # Per thread too: a mount writes one file's sidecar from several tasks'
    # worker threads (a share's ACLs, a new key), and they must not share a temp.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)
