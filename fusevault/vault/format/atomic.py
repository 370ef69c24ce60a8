"""Crash-safe small-file writes: a new temporary file, (fsync), rename, (fsync dir).

The temporary file gets a random name and is made with O_EXCL | O_NOFOLLOW
relative to its folder's fd: whatever another party put in the folder (a
symbolic link or a named pipe at a name it guessed, the leftover of a killed
writer) is never opened, so a write never goes through it (attack round 16 (4)).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from fusevault.errors import CorruptData

NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER_FD = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def fsync_dir(path: Path) -> None:
    fd = os.open(path, FOLDER_FD)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def datasync_file(path: str | Path) -> None:
    """fdatasync the regular file at ``path``; nothing there, or anything else (a link, a named pipe, a
    socket, a device: put there by whoever may write the vault folder), is skipped, never followed,
    waited on or opened as a device: there is nothing of ours to make durable."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO):
            return  # swapped after the lstat
        raise
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fdatasync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` so a crash leaves the old or the new content, never a mix.

    ``durable=False`` skips the fsyncs for objects that are made durable later
    in a batch (a file's fsync() syncs its sidecar too); the rename still makes
    the write all-or-nothing against a killed process.
    """
    fd = os.open(path.parent, FOLDER_FD)
    try:
        write_in(fd, path.name, data, durable)
    finally:
        os.close(fd)


def write_aside(folder: int, name: str, data: bytes, durable: bool = True) -> str:
    """A new file holding ``data`` beside ``name`` in the folder ``folder`` (an fd), under a fresh
    random name (returned), for the caller to rename or link into place."""
    # Random, and made with O_EXCL: several threads (a shared mount's users)
    # write one name at once, and nothing planted at a guessed name is opened.
    temp = f".{name}.tmp{os.getpid()}.{secrets.token_hex(8)}"
    file = os.open(temp, NEW_FILE, 0o600, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(file, view):]
        if durable:
            os.fsync(file)
    except BaseException:
        os.close(file)
        os.unlink(temp, dir_fd=folder)
        raise
    os.close(file)
    return temp


def write_in(folder: int, name: str, data: bytes, durable: bool = True) -> None:
    """``name`` in the folder ``folder`` (an fd) replaced by ``data`` (see ``atomic_write``)."""
    temp = write_aside(folder, name, data, durable)
    try:
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except IsADirectoryError:
        # A folder planted at the file's name: refused as any other damage (the caller logs it).
        os.unlink(temp, dir_fd=folder)
        raise CorruptData(f"refused to write {name}: a folder is in its place") from None
    except BaseException:
        os.unlink(temp, dir_fd=folder)
        raise
    if durable:
        os.fsync(folder)
