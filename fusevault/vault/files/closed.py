"""Closed files whose records may not be on disk yet, flushed in small batches as they close.

A close commits its version without flushing the ``.vf`` (``kill -9`` keeps the
page cache; only fsync(2) promises the disk).  What was left unflushed is kept
by ``.vf`` path, with whether the sidecar and directory entries are new too:
an fsync through a later handle must flush it, as fsync(2) does for what any
descriptor wrote (``take`` hands it to the next Content of the file).

So that this stays small, every ``FLUSH_BATCH`` closed files are flushed
together in one worker thread of their own (one batch at a time: it never
holds a token of the tree's limiter, which sealing needs), while the closes go
on.  Before, 4,096 waited and were flushed file by file in one go, which
landed inside whatever the user did next (``ls -lR`` after a create:
docs/PERFORMANCE.md).  A batch costs one ``syncfs`` of the file system the
vault is on instead of an ``fdatasync`` per file and an ``fsync`` per folder:
one journal commit for the batch.  Nothing here changes what a close or an
fsync promises; a batch only makes records durable sooner than the kernel's
writeback would.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import trio

from fusevault.vault.format.atomic import datasync_file, fsync_dir

FLUSH_BATCH = 1024  # closed files flushed together, as they close
# Past this many waiting (the batch before still being flushed), another batch starts anyway.
UNFLUSHED_LIMIT = 4096
# From this many files on, one syncfs is cheaper than a flush per file and per folder.
SYNCFS_FROM = 16

_libc = ctypes.CDLL(None, use_errno=True)


class ClosedFiles:
    def __init__(self) -> None:
        self.waiting: dict[str, bool] = {}  # .vf path -> whether its sidecar and entries are new
        # Batches a worker thread is flushing now, each with the event set once it is done.
        self.in_flight: list[tuple[dict[str, bool], trio.Event]] = []
        self.limiter = trio.CapacityLimiter(1)

    def __len__(self) -> int:
        return len(self.waiting)

    def add(self, path: str, new: bool) -> None:
        self.waiting[path] = self.waiting.get(path, False) or new

    def take(self, path: str) -> bool | None:
        """For a Content opening ``path``: None when nothing of it is known to
        wait for a flush, else whether its sidecar and entries are new.  A file
        of a batch being flushed counts as waiting: its fsync must not return
        before its records are on disk, whatever that batch's thread has done so far."""
        new = self.waiting.pop(path, None)
        for batch, _ in self.in_flight:
            if path in batch:
                new = bool(new) or batch[path]
        return new

    async def flush_some(self) -> None:
        """Flush the waiting files once a batch of them is there (after a close)."""
        if len(self.waiting) < FLUSH_BATCH or (self.in_flight and len(self.waiting) < UNFLUSHED_LIMIT):
            return
        await self._flush_batch()

    async def flush_all(self) -> None:
        """Flush every waiting file now, and wait for the batches under way (unmount
        and lock, before the store's log): when it returns, every file closed before
        is on disk, or it raised."""
        while self.waiting or self.in_flight:
            if self.waiting:
                await self._flush_batch()
            else:  # a batch that fails puts its files back in ``waiting``: flushed (or raised) here
                await self.in_flight[0][1].wait()

    async def _flush_batch(self) -> None:
        batch, self.waiting = self.waiting, {}
        done = trio.Event()
        self.in_flight.append((batch, done))
        try:
            await trio.to_thread.run_sync(flush_paths, batch, limiter=self.limiter)
        except BaseException:
            # Not known to be on disk: they wait again, so that a later fsync of
            # one of them (or the unmount) flushes it and reports what fails,
            # never returns over records a power cut could still take.  (A
            # release that triggered the batch gets the error, which the kernel drops.)
            for path, new in batch.items():
                self.add(path, new)
            raise
        finally:
            self.in_flight[:] = [entry for entry in self.in_flight if entry[0] is not batch]
            done.set()


def flush_paths(paths: dict[str, bool]) -> None:
    """Flush each .vf still there (gc or an unlink may have removed one), the
    sidecars of new ones (same name, ``.vfmeta``) and their folders' entries:
    with one ``syncfs`` per file system for a batch, else file by file."""
    folders = {os.path.dirname(path) for path, new in paths.items() if new}
    if len(paths) >= SYNCFS_FROM and sync_file_systems({os.path.dirname(path) for path in paths}):
        return
    for path, new in paths.items():
        for name in (path, path + "meta") if new else (path,):
            datasync_file(name)
    for folder in folders:
        try:
            fsync_dir(Path(folder))
        except FileNotFoundError:
            continue


def sync_file_systems(folders: set[str]) -> bool:
    """``syncfs`` the file system of each folder once: everything written to it
    before, data and metadata (the folders' entries too), is on disk when it
    returns (Linux reports writeback errors from syncfs since 5.8).  False when
    the system has no syncfs: the caller flushes file by file."""
    done: set[int] = set()
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its files went with it
        try:
            dev = os.fstat(fd).st_dev
            if dev in done:
                continue
            if _libc.syncfs(fd) != 0:
                code = ctypes.get_errno()
                if code == errno.ENOSYS:
                    return False
                raise OSError(code, os.strerror(code), folder)
            done.add(dev)
        finally:
            os.close(fd)
    return True
