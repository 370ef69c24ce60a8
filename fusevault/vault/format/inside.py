"""Folders made, files written and places removed in the vault folder, never outside it.

Whoever may write the vault folder (a user of a shared vault, no key) can put a symbolic link where
fusevault keeps a folder (``users/<uid> -> /etc``) or make ``users`` itself one; root's shared mount
writes meta.inf files and removes empty places as root.  So each folder on the way is opened from the
vault root with O_NOFOLLOW (as export does, services/exporting.py), the file is written and the place
removed relative to it (``dir_fd``), and a link met on the way is refused (CorruptData), never followed.
Each name is one path component: the caller checked it (layout.py ``checked_id``).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from fusevault.errors import CorruptData
from fusevault.vault.format.atomic import write_in

FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The most read_file reads: the files written here are a few KiB (meta.inf); a bigger one planted there
# is read as absent, so the next write replaces it, never held in memory (root's shared mount reads it).
READ_LIMIT = 1 << 20
# What opening something that is no regular file fails with: a link (O_NOFOLLOW), a socket, a device
# with no driver, a folder opened for writing.
NOT_A_FILE = (errno.ELOOP, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP, errno.EISDIR)


def _one(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise CorruptData(f"refused the name {name[:80]!r} in the vault folder: not one plain name")
    return name


def open_dir(root: Path, names: Iterable[str], make: bool = False) -> int:
    """An fd of ``root/names...`` (made, 0700, if ``make``), no link followed below ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = []
    try:
        for name in names:
            walked.append(_one(name))
            if make:
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                below = os.open(name, FOLDER, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise CorruptData(f"refused {'/'.join(walked)} in the vault folder {root}: not a folder "
                                      "(a symbolic link?), which fusevault never follows") from None
                raise
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_dirs(root: Path, names: list[str], subs: Iterable[str] = ()) -> None:
    """``root/names...`` and each of ``subs`` in it made (0700) where missing; a link on the way refused."""
    for sub in [*subs] or [None]:
        os.close(open_dir(root, names if sub is None else [*names, sub], make=True))


def read_file(root: Path, names: Iterable[str], filename: str, limit: int = READ_LIMIT) -> bytes | None:
    """The bytes of ``root/names.../filename`` (None: no such folder or regular file of at most
    ``limit`` bytes there; a link on the way is refused)."""
    try:
        fd = open_dir(root, names)
    except FileNotFoundError:
        return None
    try:
        return read_in(fd, _one(filename), limit)
    finally:
        os.close(fd)


def read_in(folder: int, name: str, limit: int = READ_LIMIT) -> bytes | None:
    """The bytes of the regular file ``name`` in the folder ``folder`` (an fd), at most ``limit``;
    None for anything else there: nothing, a link, a pipe, a socket, a device, a folder, a bigger file.
    Only a regular file is ever opened: a socket or a device is not even tried (ENXIO, or a device's
    open, as root), a pipe is not waited on."""
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            return None  # none fusevault wrote (the next write renames a file over it)
        # O_NOFOLLOW | O_NONBLOCK: what was swapped in after the lstat is refused, never waited on.
        file = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in NOT_A_FILE:
            return None
        raise
    with os.fdopen(file, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(limit + 1)
        return data if len(data) <= limit else None


def write_file(root: Path, names: Iterable[str], filename: str, data: bytes, durable: bool = True) -> None:
    """``root/names.../filename`` replaced by ``data``: a new temporary file, fsync, rename, fsync
    (format/atomic.py; ``durable=False``: no fsyncs)."""
    fd = open_dir(root, names, make=True)
    try:
        write_in(fd, _one(filename), data, durable)
    finally:
        os.close(fd)


def open_file(root: Path, names: Iterable[str], filename: str, flags: int, make: bool = False) -> int:
    """An fd of the regular file ``root/names.../filename`` (see ``open_in``), no link followed below
    ``root``.  ``make``: the folders on the way are made (0700)."""
    fd = open_dir(root, names, make=make)
    try:
        return open_in(fd, filename, flags)
    finally:
        os.close(fd)


def open_in(folder: int, name: str, flags: int) -> int:
    """An fd of the regular file ``name`` in the folder ``folder`` (an fd) opened with ``flags``
    (O_CREAT only with O_EXCL: a new file).  Anything else at the name (a link, a folder, a socket, a
    pipe, a device) is refused (CorruptData), never opened through; a device is not opened at all."""
    assert not flags & os.O_CREAT or flags & os.O_EXCL, "a file is made new, never opened through"
    try:
        if not flags & os.O_CREAT and not stat.S_ISREG(
                os.stat(_one(name), dir_fd=folder, follow_symlinks=False).st_mode):
            raise OSError(errno.ENXIO, "not a regular file")
        # O_NOFOLLOW | O_NONBLOCK: what was swapped in after the lstat is refused, never waited on.
        file = os.open(_one(name), flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600,
                       dir_fd=folder)
    except OSError as err:
        if err.errno in NOT_A_FILE:
            raise CorruptData(f"refused {name} in the vault folder: not a file fusevault wrote (a link, "
                              "a folder, a socket or a device)") from None
        raise
    if not stat.S_ISREG(os.fstat(file).st_mode):
        os.close(file)
        raise CorruptData(f"refused {name} in the vault folder: not a regular file")
    return file


def places(root: Path, kind: str) -> list[str]:
    """The real folders (no links) in ``root/kind``."""
    fd = open_dir(root, [kind])
    try:
        return [name for name in os.listdir(fd)
                if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)]
    finally:
        os.close(fd)


def holds_files(root: Path, names: Iterable[str]) -> bool:
    """Whether the folder ``root/names...`` holds anything (False: none there)."""
    try:
        fd = open_dir(root, names)
    except FileNotFoundError:
        return False
    try:
        return bool(os.listdir(fd))
    finally:
        os.close(fd)


def remove_tree(root: Path, names: Iterable[str], name: str) -> None:
    """``root/names.../name`` and all below it; a link there (or on the way) is refused, never followed."""
    fd = open_dir(root, names)
    try:
        if stat.S_ISLNK(os.stat(_one(name), dir_fd=fd, follow_symlinks=False).st_mode):
            raise CorruptData(f"refused to remove {name} in the vault folder {root}: a symbolic link")
        shutil.rmtree(name, dir_fd=fd)  # fd-based: nothing below is followed either
    finally:
        os.close(fd)
