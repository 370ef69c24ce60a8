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
import secrets
import shutil
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from fusevault.errors import CorruptData

FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The most read_file reads: the files written here are a few KiB (meta.inf); a bigger one planted there
# is read as absent, so the next write replaces it, never held in memory (root's shared mount reads it).
READ_LIMIT = 1 << 20
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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


def read_file(root: Path, names: Iterable[str], filename: str) -> bytes | None:
    """The bytes of ``root/names.../filename`` (None: no such folder or regular file of at most
    READ_LIMIT bytes there; a link on the way is refused)."""
    try:
        fd = open_dir(root, names)
    except FileNotFoundError:
        return None
    try:
        try:
            # O_NONBLOCK: a named pipe planted there is opened without waiting for a writer (whose bytes
            # would be read); only a regular file is read at all.
            file = os.open(_one(filename), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                           dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno == errno.ELOOP:
                return None  # replaced by the next write (a rename over the link, never through it)
            raise
        if not stat.S_ISREG(os.fstat(file).st_mode):
            os.close(file)
            return None  # a pipe, a device, a folder: none fusevault wrote (the next write replaces it)
        with os.fdopen(file, "rb") as f:
            data = f.read(READ_LIMIT + 1)
            return data if len(data) <= READ_LIMIT else None
    finally:
        os.close(fd)


def write_file(root: Path, names: Iterable[str], filename: str, data: bytes) -> None:
    """``root/names.../filename`` replaced by ``data``: a new temporary file, fsync, rename, fsync."""
    fd = open_dir(root, names, make=True)
    try:
        # A new name each time (O_EXCL): a leftover of a killed writer is never in the way.
        temp = f".{_one(filename)}.tmp{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}"
        file = os.open(temp, NEW_FILE, 0o600, dir_fd=fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(file, view):]
            os.fsync(file)
        except BaseException:
            os.close(file)
            os.unlink(temp, dir_fd=fd)
            raise
        os.close(file)
        try:
            os.replace(temp, filename, src_dir_fd=fd, dst_dir_fd=fd)
        except IsADirectoryError:
            # A folder planted at the file's name: refused as any other damage (the caller logs it).
            os.unlink(temp, dir_fd=fd)
            raise CorruptData(f"refused to write {filename} in the vault folder {root}: a folder is "
                              "in its place") from None
        os.fsync(fd)
    finally:
        os.close(fd)


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
