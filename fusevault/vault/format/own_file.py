"""A file this device keeps in her state directory, read only if it is hers: never through a link,
never a FIFO or device (opened without blocking), never another user's file, never larger than the
reader's bound.

Whoever else can write her state folder, or a link planted there, gets ``Damaged``, which each reader
treats as its own damaged record: not a hang, a read of another file, or all memory.  Here, below the
vault's model, so the clear records of vault/format (marker_pins.py) read as the sealed ones of
vault/model/device_file.py do.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class Damaged(Exception):
    """A record that does not read, does not open with her key as its kind and name, or is no JSON
    object: the message says which (never a byte of it)."""


def read_own(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of this user's, not through a link, at most
    ``limit`` long.  Raises FileNotFoundError (none), ``Damaged`` (not such a file) or OSError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise Damaged("it is a link, not a file fusevault wrote") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise Damaged("it is not a file of this user's")
        if st.st_size > limit:
            raise Damaged("it is larger than any record fusevault writes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise Damaged("it is larger than any record fusevault writes")
        return data
    finally:
        os.close(fd)
