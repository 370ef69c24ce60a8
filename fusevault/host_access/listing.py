"""A folder's entries one bounded page at a time, resumed where the last page ended.

A whole folder in one answer had no bound: 45,000 names of 255 bytes not UTF-8 (``\\udcff`` per byte
in JSON) passed the wire's cap (wire.MAX_TOTAL), the answer was refused as a broken helper's, and
the walk of the watched folder failed for good, every import with it (attack round 55c, (2)).  A page
holds at most ``PAGE_ENTRIES`` entries and about ``PAGE_BYTES`` of answer; the next page starts at
the position the kernel gave for the last entry sent (``d_off`` of ``getdents64``, as ``telldir``
and ``seekdir`` use it), so a folder of any size costs a number of pages in proportion to it, each
read once, and nothing is kept between two pages but that position, held by the caller.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable

PAGE_ENTRIES = 4096
# An entry's size in the answer: its name (6 bytes a byte at worst: ``\\udcXX``) and its lstat.
PAGE_BYTES = 8 * 1024 * 1024
_STAT_BYTES = 400
_BUFFER = 64 * 1024
_HEAD = struct.Struct("=QqHB")  # struct linux_dirent64: d_ino, d_off, d_reclen, d_type; then d_name
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_libc: ctypes.CDLL | None = None


def page(dir_fd: int, position: int, fields: Callable[[os.stat_result], list]) -> tuple[list, int | None]:
    """([name, fields(lstat)] of the entries of the folder ``dir_fd`` from ``position`` (0: the first),
    the position of the next page or None at the end).  The folder is opened again from ``dir_fd``
    (its own offset: the caller's descriptor is never moved); an entry gone meanwhile is left out."""
    folder = os.open(".", _FOLDER, dir_fd=dir_fd)
    try:
        os.lseek(folder, position, os.SEEK_SET)
        found: list = []
        size = 0
        buffer = ctypes.create_string_buffer(_BUFFER)
        while True:
            read = _getdents(folder, buffer)
            if read == 0:
                return found, None
            data = buffer.raw[:read]
            at = 0
            while at < read:
                _, after, length, _ = _HEAD.unpack_from(data, at)
                name = data[at + _HEAD.size:at + length].split(b"\0", 1)[0]
                at += length
                position = after
                if name in (b".", b".."):
                    continue
                try:
                    st = os.stat(name, dir_fd=folder, follow_symlinks=False)
                except OSError:
                    continue  # gone meanwhile
                found.append([os.fsdecode(name), fields(st)])
                size += 6 * len(name) + _STAT_BYTES
                if len(found) >= PAGE_ENTRIES or size >= PAGE_BYTES:
                    return found, position
    finally:
        os.close(folder)


def _getdents(fd: int, buffer: ctypes.Array) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    read = _libc.getdents64(fd, buffer, len(buffer))
    if read < 0:
        code = ctypes.get_errno()
        raise OSError(code or errno.EIO, os.strerror(code or errno.EIO))
    return read
