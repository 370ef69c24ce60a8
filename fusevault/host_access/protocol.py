"""What may be asked of the host with one user's rights: the ``HostAccess`` protocol."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Protocol


class HostAccess(Protocol):
    """Operations on host paths, with one user's rights (sync: call from a worker thread).

    Errors are ``OSError`` with the errno the kernel gave the user.  ``dir_fd``
    (a descriptor this object opened) makes ``path`` relative to that folder,
    as ``openat(2)`` and its family do, so a path cannot be swapped under
    the caller between two steps."""

    uid: int
    gid: int
    # True when this process acts for another user (a shared mount, run by
    # root): what cannot be done with that user's rights is refused.
    on_behalf: bool

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        """A descriptor of ``path`` (O_CLOEXEC added), as the user opened it."""

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None: ...

    def rename(self, src: str, dst: str, *, dir_fd: int | None = None, noreplace: bool = False) -> None:
        """``noreplace``: FileExistsError rather than replacing ``dst`` (RENAME_NOREPLACE)."""

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None: ...

    def symlink(self, target: str, path: str, *, dir_fd: int | None = None) -> None: ...

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        """Set access and modification times of ``path`` itself (not a link's target)."""

    def chmod(self, path: str, mode: int) -> None:
        """Mode bits of ``path``; never setuid, setgid or sticky (they are dropped)."""

    def lstat(self, path: str, *, dir_fd: int | None = None) -> os.stat_result: ...

    def listdir(self, path: str) -> list[str]: ...

    def scan(self, path: str, *, dir_fd: int | None = None) -> list[tuple[str, os.stat_result]]:
        """Every entry of a folder with its ``lstat`` (one call for a whole folder); with ``dir_fd``,
        ``path`` is opened from it without following a link ("." lists that folder itself); read
        in pages (``scan_page``), so a folder of any size is listed, in the caller's memory."""

    def scan_page(self, dir_fd: int, position: int) -> tuple[list[tuple[str, os.stat_result]], int | None]:
        """Entries of the folder ``dir_fd`` from ``position`` (0: the first), at most a bounded page
        (listing.py), and the position of the next page (None: the end)."""

    def access(self, path: str, mode: int) -> bool:
        """``os.access`` for the user (their real ids, which are also their effective ones)."""

    def realpath(self, path: str) -> str: ...

    def thread_as_user(self) -> AbstractContextManager[None]:
        """Inside it the calling thread writes (``pwrite``, ``ftruncate``, ``fchmod``...) through a
        descriptor this object opened with the user's fsuid, fsgid and groups and no capability,
        so the kernel's quota and reserved-block checks see the user (rights.py); nothing in it
        may start a thread (it would keep those rights)."""

    def close(self) -> None: ...
