"""A file of the watched folder, reached from the folder one name at a time, never through a link.

watchfiles (inotify) watches through a folder linked into the watched one and reports the paths
under it as if they were in the watched folder (the first scan follows no link).  Looked at, read
and removed by its full path, such a path led anywhere: a link to ``~/Documents`` had her files
imported and deleted from there, a link to the vault folder had ``store.sqlite`` deleted and the
vault destroyed (tests/mount/test_trust_attack_round22b.py, hole 8).  Every look, open and removal
of the importer goes through ``parent`` now: the folder a location lies in, opened part by part from
the watched folder with ``O_NOFOLLOW | O_DIRECTORY``, and the last name, used relative to it.  A link
or a non-folder on the way is "gone" (FileNotFoundError), as for a file removed meanwhile.

The watched folder itself may be a link: it is her setting, checked by ``settings.check``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fusevault.host_access import HostAccess

# Each folder on the way: never a link (ELOOP), never anything but a folder (ENOTDIR).
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


@contextmanager
def parent(host: HostAccess, source: Path, location: str) -> Iterator[tuple[int, str]]:
    """(a descriptor of the folder ``location`` lies in, its last name), opened as ``host``'s user."""
    parts = location.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise FileNotFoundError(errno.ENOENT, "not a name in the watched folder", location)
    folder = host.open(str(source), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = host.open(part, _FOLDER, dir_fd=folder)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FileNotFoundError(errno.ENOENT, "a link or a file on the way", location) from None
                raise
            os.close(folder)
            folder = inner
        yield folder, parts[-1]
    finally:
        os.close(folder)


def lstat(host: HostAccess, source: Path, location: str) -> os.stat_result:
    with parent(host, source, location) as (folder, name):
        return host.lstat(name, dir_fd=folder)


def open_file(host: HostAccess, source: Path, location: str, flags: int) -> int:
    with parent(host, source, location) as (folder, name):
        return host.open(name, flags, dir_fd=folder)


def remove_if(host: HostAccess, source: Path, location: str, same: Callable[[os.stat_result], bool]) -> bool:
    """Remove the file if ``same(stat)`` says it is still the one meant: both through one
    descriptor of its folder, so nothing swapped on the way between the look and the removal."""
    with parent(host, source, location) as (folder, name):
        if not same(host.lstat(name, dir_fd=folder)):
            return False
        host.unlink(name, dir_fd=folder)
    return True
