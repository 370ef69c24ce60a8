"""What the kernel caches, dropped when something changes from inside fusevault."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pyfuse3
import trio


class Kernel:
    """Tells the kernel to drop what it caches about names and files changed
    from inside fusevault (restore, imports, another user), rather than
    through it.  ``ino_out``: a shared mount's seat maps its inode numbers."""

    def __init__(self, ino_out: Callable[[int], int] | None = None) -> None:
        self._out = ino_out or (lambda ino: ino)

    # In a thread: with writeback caching the kernel may first write dirty
    # pages back, which needs this loop free to answer (pyfuse3's warning).
    async def inode(self, ino: int) -> None:
        try:
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, self._out(ino))
        except OSError:
            pass  # the kernel holds nothing for it

    async def resized(self, ino: int, size: int, tail: bytes) -> None:
        def tell() -> None:
            pyfuse3.invalidate_inode(self._out(ino))
            if tail:
                pyfuse3.notify_store(self._out(ino), size - len(tail), tail)

        try:
            await trio.to_thread.run_sync(tell)
        except OSError:
            pass

    async def entry(self, parent_ino: int, name: bytes) -> None:
        try:
            await trio.to_thread.run_sync(pyfuse3.invalidate_entry, self._out(parent_ino), name)
        except OSError:
            pass

    async def drop_all(self, entries: list[tuple[int, bytes]], inodes: list[int]) -> None:
        entries = [(self._out(parent_ino), name) for parent_ino, name in entries]
        inodes = [self._out(ino) for ino in inodes]

        def drop() -> None:
            for parent_ino, name in entries:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_entry(parent_ino, name)
            for ino in inodes:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_inode(ino)

        await trio.to_thread.run_sync(drop)
